"""Activation range observers for W8A8 calibration: they watch a layer's inputs over N batches.

MinMax keeps the extreme values (every outlier stretches the scale); Percentile clips at the p-th percentile
of |x| per batch, averaged over batches (a few outliers saturate, the rest keep resolution).
Both are symmetric (range [-a, a]), so the int8 activations have zero point 0 and the int32 matmul needs no
zero-point correction terms.
"""

from __future__ import annotations

import torch


class MinMaxObserver:
    def __init__(self) -> None:
        self.amax = torch.tensor(0.0)

    def observe(self, x: torch.Tensor) -> None:
        self.amax = torch.maximum(self.amax, x.detach().abs().amax().float().cpu())

    def bound(self) -> torch.Tensor:
        return self.amax


class PercentileObserver:
    def __init__(self, percentile: float = 99.99) -> None:
        self.percentile, self.values = percentile, []

    def observe(self, x: torch.Tensor) -> None:
        flat = x.detach().abs().flatten().float().cpu()
        k = max(1, min(flat.numel(), round(flat.numel() * self.percentile / 100)))
        self.values.append(flat.kthvalue(k).values)  # kthvalue: exact, and no size limit unlike torch.quantile

    def bound(self) -> torch.Tensor:
        return torch.stack(self.values).mean() if self.values else torch.tensor(0.0)


OBSERVERS = {"minmax": MinMaxObserver, "percentile": PercentileObserver}

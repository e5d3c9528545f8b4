"""Layer 2 of 3: quantized linear modules built ``from_float`` an ``nn.Linear`` or GPT-2's ``Conv1D``.

GPT-2's Conv1D stores its weight as (in, out) and computes x @ W + b; nn.Linear stores (out, in) and computes
x @ W.T + b. :func:`linear_weight` brings both to (out, in), so the quantized modules see one layout.

Dimension legend: M rows of activations (batch x seq), K in_features, N out_features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .int8 import choose_qparams, dequantize, int8_matmul, quantize


def linear_weight(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight (N, K), bias (N,) or None) of an nn.Linear or a transformers Conv1D."""
    if isinstance(module, nn.Linear):
        return module.weight.detach(), None if module.bias is None else module.bias.detach()
    if type(module).__name__ == "Conv1D":  # transformers.pytorch_utils.Conv1D: weight is (K, N)
        return module.weight.detach().t(), module.bias.detach()
    raise TypeError(f"expected nn.Linear or Conv1D, got {type(module).__name__}")


def is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


class Int8WeightOnlyLinear(nn.Module):
    """int8 weights in memory, dequantized to the activation dtype on the fly; activations stay float.

    Saves ~4x weight memory; on CPU it is usually *slower* than fp32 (the dequantize is extra work).
    """

    def __init__(self, in_features: int, out_features: int, *, per_channel: bool, symmetric: bool, bias: bool):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.per_channel, self.symmetric = per_channel, symmetric
        shape = (out_features, 1) if per_channel else ()
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))  # (N, K)
        self.register_buffer("scale", torch.ones(shape))
        # symmetric grids have zero point 0 everywhere: nothing to store
        self.register_buffer("zero_point", None if symmetric else torch.zeros(shape, dtype=torch.int32))
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    def from_float(cls, module: nn.Module, *, per_channel: bool = True, symmetric: bool = True):
        weight, bias = linear_weight(module)
        q = cls(weight.shape[1], weight.shape[0], per_channel=per_channel, symmetric=symmetric,
                bias=bias is not None)
        scale, zero_point = choose_qparams(weight, symmetric=symmetric, axis=0 if per_channel else None)
        q.weight_int8.copy_(quantize(weight, scale, zero_point))
        q.scale.copy_(scale)
        if not symmetric:
            q.zero_point.copy_(zero_point)
        if bias is not None:
            q.bias.data.copy_(bias.float())
        return q.to(weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero_point = self.zero_point if self.zero_point is not None else torch.zeros((), dtype=torch.int32)
        w = dequantize(self.weight_int8, self.scale, zero_point.to(self.scale.device)).to(x.dtype)  # (N, K)
        return F.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        kind = "per_channel" if self.per_channel else "per_tensor"
        return f"{self.in_features}, {self.out_features}, {kind}, {'sym' if self.symmetric else 'asym'}"


class W8A8Linear(nn.Module):
    """int8 weights (per output channel) x int8 activations (one calibrated scale) -> int32 -> fp32.

    y = (q_x @ q_w.T) * (s_x * s_w) + b, the integer product done by ``torch._int_mm``. Activation
    quantization and output dequantization are part of every call, so timings include them.
    """

    tile_rows = 512  # rows of activations per quantize -> int matmul -> dequantize tile

    def __init__(self, in_features: int, out_features: int, *, bias: bool):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8_t", torch.zeros(in_features, out_features, dtype=torch.int8))  # (K, N)
        self.register_buffer("weight_scale", torch.ones(out_features))  # (N,)
        self.register_buffer("act_scale", torch.ones(()))  # calibrated, symmetric
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    def from_float(cls, module: nn.Module, act_bound: torch.Tensor):
        """``act_bound``: calibrated max |activation| (from an observer)."""
        weight, bias = linear_weight(module)
        q = cls(weight.shape[1], weight.shape[0], bias=bias is not None)
        w_scale, w_zp = choose_qparams(weight, symmetric=True, axis=0)  # (N, 1)
        q.weight_int8_t.copy_(quantize(weight, w_scale, w_zp).t())
        q.weight_scale.copy_(w_scale.flatten())
        q.act_scale.copy_(choose_qparams(act_bound.reshape(1), symmetric=True)[0])
        if bias is not None:
            q.bias.data.copy_(bias.float())
        return q.to(weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])  # (M, K)
        scale = self.act_scale * self.weight_scale  # (N,)
        out = torch.empty(x2.shape[0], self.out_features, dtype=torch.float32, device=x.device)  # (M, N)
        # Row tiles: the int8 input, the int32 accumulator and the output of one tile stay in cache between
        # quantize -> matmul -> dequantize. Untiled, those elementwise passes stream (M, N) tensors through
        # memory; on the 2-core benchmark machine that ate most of what the integer matmul saved.
        for start in range(0, x2.shape[0], self.tile_rows):
            rows = slice(start, start + self.tile_rows)
            acc = int8_matmul(quantize(x2[rows], self.act_scale), self.weight_int8_t)  # (tile, N) int32
            if self.bias is None:
                torch.mul(acc, scale, out=out[rows])
            else:
                torch.addcmul(self.bias, acc, scale, out=out[rows])  # int32 promoted to fp32 in the same pass
        return out.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, act_scale={float(self.act_scale):.4g}"

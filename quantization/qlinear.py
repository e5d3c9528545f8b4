"""Layer 2 of 3: quantized linear modules built ``from_float`` an ``nn.Linear`` or GPT-2's ``Conv1D``.

GPT-2's Conv1D stores its weight as (in, out) and computes x @ W + b; nn.Linear stores (out, in) and computes
x @ W.T + b. :func:`linear_weight` brings both to (out, in), so the quantized modules see one layout.

Dimension legend: M rows of activations (batch x seq), K in_features, N out_features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import int8_kernels
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
    """int8 weights (per output channel) x int8 activations -> int32 -> fp32.

    y = (q_x @ q_w.T) * (s_x * s_w) + b, the integer product done by ``torch._int_mm``. The activation scale
    s_x is one calibrated number (static), or each row's own max|x| / 127 computed on the fly (``dynamic``: a
    scale per token, no calibration). Activation quantization and output dequantization are part of every
    call, so timings include them; on the CPU each is one fused pass (``int8_kernels.py``), elsewhere the eager ops.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool, dynamic: bool = False):
        super().__init__()
        self.in_features, self.out_features, self.dynamic = in_features, out_features, dynamic
        self.register_buffer("weight_int8_t", torch.zeros(in_features, out_features, dtype=torch.int8))  # (K, N)
        self.register_buffer("weight_scale", torch.ones(out_features))  # (N,)
        self.register_buffer("act_scale", torch.ones(()))  # calibrated, symmetric (unused when dynamic)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None
        self._packed: tuple[tuple[int, int], torch.Tensor] | None = None  # see packed_weight

    @classmethod
    def from_float(cls, module: nn.Module, act_bound: torch.Tensor | None):
        """``act_bound``: calibrated max |activation| (from an observer); None for the dynamic mode."""
        weight, bias = linear_weight(module)
        q = cls(weight.shape[1], weight.shape[0], bias=bias is not None, dynamic=act_bound is None)
        w_scale, w_zp = choose_qparams(weight, symmetric=True, axis=0)  # (N, 1)
        q.weight_int8_t.copy_(quantize(weight, w_scale, w_zp).t())
        q.weight_scale.copy_(w_scale.flatten())
        if act_bound is not None:
            q.act_scale.copy_(choose_qparams(act_bound.reshape(1), symmetric=True)[0])
        if bias is not None:
            q.bias.data.copy_(bias.float())
        return q.to(weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()  # (M, K)
        # one integer matmul over all rows: row tiles kept an eager dequantize in cache, but slowed the matmul by
        # half; the fused dequantize is one pass and needs no tiles
        out = fused_forward(self, x2) if int8_kernels.fused(x2) else self.eager_forward(x2)  # (M, N)
        return out.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def activation_scale(self, x: torch.Tensor) -> torch.Tensor:
        """The calibrated scale (), or with ``dynamic`` each row's own max|x| / 127: (M, 1)."""
        return choose_qparams(x, symmetric=True, axis=0)[0] if self.dynamic else self.act_scale

    def eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reference: quantize, integer matmul, dequantize (+ bias) with torch's own ops; x (M, K) fp32."""
        s_x = self.activation_scale(x)
        acc = int8_matmul(quantize(x, s_x), self.weight_int8_t)  # (M, N) int32
        scale = s_x * self.weight_scale  # (N,) or (M, N)
        if self.bias is None:
            return acc * scale
        return torch.addcmul(self.bias, acc, scale)  # int32 promoted to fp32 in the same pass

    def packed_weight(self) -> torch.Tensor:
        """The weight in the AVX2 GEMM's layout (``int8_kernels.pack_int8_b``), packed on first use and kept until
        the weight changes (a new tensor, or an in-place write such as ``load_state_dict``); derived, so never
        saved."""
        key = (self.weight_int8_t.data_ptr(), self.weight_int8_t._version)
        if self._packed is None or self._packed[0] != key:
            self._packed = (key, int8_kernels.pack_int8_b(self.weight_int8_t))
        return self._packed[1]

    def extra_repr(self) -> str:
        scale = "dynamic per-row" if self.dynamic else f"{float(self.act_scale):.4g}"
        return f"{self.in_features}, {self.out_features}, act_scale={scale}"


def fused_forward(layer: W8A8Linear, x: torch.Tensor) -> torch.Tensor:
    """The same with the fused in-place dequantize (a test checks it equals :meth:`W8A8Linear.eager_forward`)."""
    q, s_x = int8_kernels.quantize_rows(x, None if layer.dynamic else layer.act_scale)  # (M, K) int8, (M,)
    acc = integer_product(layer, q)  # (M, N) int32, becomes the float output
    return int8_kernels.dequantize_rows_(acc, s_x, layer.weight_scale, layer.bias)


def integer_product(layer: W8A8Linear, q: torch.Tensor) -> torch.Tensor:
    """q (M, K) int8 @ the layer's int8 weight -> (M, N) int32 on the CPU: ``int8.int8_matmul``'s integers, with
    the AVX2 GEMM's packed weight kept on the layer where that GEMM serves."""
    if int8_kernels.own_int8_gemm():
        return int8_kernels.int8_gemm(q, layer.weight_int8_t, layer.packed_weight())
    return int8_matmul(q, layer.weight_int8_t)

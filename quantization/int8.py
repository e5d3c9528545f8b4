"""Layer 1 of 3: pure INT8 quantization primitives (no modules, no state).

    scale, zero_point = choose_qparams(x, symmetric=True, axis=0)   # per output channel
    q = quantize(x, scale, zero_point)                               # int8
    x_hat = dequantize(q, scale, zero_point)                         # |x - x_hat| <= scale / 2

Affine mapping q = clamp(round(x / scale) + zero_point, qmin, qmax), x_hat = (q - zero_point) * scale.

Worked example, symmetric per-tensor: x = [-1.0, 0.5, 2.54]; scale = max|x| / 127 = 0.02;
q = round([-50, 25, 127]) = [-50, 25, 127]; x_hat = [-1.0, 0.5, 2.54].
Asymmetric maps [min, max] onto all 256 levels [-128, 127]: x in [0, 2.55] gives scale 0.01 and zero_point -128,
so no level is wasted on negative values that never occur (ReLU/GELU outputs, attention probabilities).
"""

from __future__ import annotations

import torch

from . import int8_kernels

QMIN, QMAX = -128, 127


def _reduce_dims(x: torch.Tensor, axis: int | None) -> tuple[int, ...]:
    """All dims except ``axis`` (per-channel) or all dims (per-tensor)."""
    if axis is None:
        return tuple(range(x.dim()))
    axis = axis % x.dim()
    return tuple(d for d in range(x.dim()) if d != axis)


def _keep_shape(stat: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Reshape a per-channel statistic so it broadcasts against x."""
    if axis is None:
        return stat.reshape(())
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return stat.reshape(shape)


def choose_qparams(x: torch.Tensor, *, symmetric: bool = True, axis: int | None = None,
                   lo: torch.Tensor | None = None, hi: torch.Tensor | None = None,
                   eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale (fp32) and zero point (int32) for int8, per tensor (``axis=None``) or per channel along ``axis``.

    ``lo``/``hi`` override the observed range (observers pass calibrated ranges). Symmetric uses
    scale = max|x| / 127 and zero point 0 (the -128 level is unused, so negation stays exact); asymmetric
    stretches [min(lo, 0), max(hi, 0)] over [-128, 127] (zero must be representable exactly for padding).
    """
    dims = _reduce_dims(x, axis)
    lo = x.detach().float().amin(dim=dims) if lo is None else lo.float()
    hi = x.detach().float().amax(dim=dims) if hi is None else hi.float()
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))
    if symmetric:
        scale = (torch.maximum(-lo, hi) / QMAX).clamp_min(eps)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = ((hi - lo) / (QMAX - QMIN)).clamp_min(eps)
        zero_point = (QMIN - torch.round(lo / scale)).clamp(QMIN, QMAX).to(torch.int32)
    return _keep_shape(scale, x, axis), _keep_shape(zero_point, x, axis)


def quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor | None = None) -> torch.Tensor:
    """Round to the int8 grid; scale/zero_point broadcast against x (as returned by choose_qparams).

    ``zero_point=None`` means symmetric (all zeros) and skips a pass over x: this sits on W8A8's hot path.
    """
    q = x.float() / scale  # a fresh tensor, so every step below works in place
    q.round_()  # half to even, like torch.round
    if zero_point is not None:
        q.add_(zero_point)
    return q.clamp_(QMIN, QMAX).to(torch.int8)


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """Back to fp32: (q - zero_point) * scale."""
    return (q.to(torch.int32) - zero_point).float() * scale


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int8 x int8 -> int32 matmul: (M, K) @ (K, N) -> (M, N).

    Fast path ``torch._int_mm`` (oneDNN VNNI/AMX on CPU, cuBLASLt on GPU, which needs M > 16 and K, N
    multiples of 8); on CPUs with AVX2 but no AVX-512 VNNI, where torch's is a scalar loop, the AVX2 GEMM of
    ``int8_kernels.py``; otherwise a float64 matmul, exact because every partial sum |q_a * q_b| * K stays far
    below 2**53.
    """
    m, k = a.shape
    n = b.shape[1]
    if a.device.type == "cpu" and int8_kernels.own_int8_gemm():
        return int8_kernels.int8_gemm(a, b)
    if a.device.type == "cpu" or (m > 16 and k % 8 == 0 and n % 8 == 0):
        return torch._int_mm(a.contiguous(), b.contiguous())
    return int8_matmul_reference(a, b)


def int8_matmul_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The slow exact reference: float64 accumulation, rounded back to int32."""
    return (a.double() @ b.double()).round().to(torch.int32)

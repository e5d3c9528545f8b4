"""W8A8's CPU kernels, written in C++ and compiled on first use: its two elementwise passes, fused, and an int8
GEMM for CPUs where torch has no fast one.

Around the integer matmul (``torch._int_mm``), a W8A8 linear layer quantizes its input and turns its int32
output back into floats, y = acc * (s_x * s_w) + b. In eager torch the first is four passes over memory
(divide, round, clamp, cast) and the second, ``addcmul`` on an int32 tensor, ran at half the speed of a float
pass; on this CPU together they cost as much as the matmul. Here each is one pass:

    q[i, j] = round_half_even(clamp(x[i, j] / s_i, -128, 127))   s_i: one scale, or each row's max|x| / 127

    y[i, j] = fma(float(acc[i, j]), r_i * c_j, b[j])      r_i: the activation scale (one, or per row), c_j: weight

written over ``acc`` itself (int32 and float32 have the same size), so the output needs no second allocation:
for a 4,096 x 1,536 layer that is 25 MB less to page in on every call.

``torch._int_mm`` runs oneDNN's int8 kernels only on CPUs with AVX-512 VNNI; on others (AMD before Zen 4, most
Intel laptops) it is a scalar loop: on an AVX2 EPYC one block's integer products took 9.5 s through it against
fp32's 0.24 s (``results/bench_avx2.json``). There the integer product takes ``int8_gemm_packed``: each int8
widened to int16, ``_mm256_madd_epi16`` adding two exact products per int32 lane (16 per instruction, twice fp32
FMA's 8, though with its int32 add it ran at 1.56x fp32 FMA's products per ns on that EPYC, measured by the
probes below), a 6 x 16 tile of the output in twelve registers, the weight packed once per layer into the order the
kernel reads it.

The eager ops of ``int8.py`` remain the reference; tests check these give the same integers and outputs.
The kernels, in ``int8_kernels.cpp``, build with ``torch.utils.cpp_extension.load`` (gcc, ninja; about a
minute once, then cached, one build per CPU instruction set: ``-march=native`` code built on an AVX-512 machine
dies with an illegal instruction on an AVX2 one sharing the same home directory, and the reverse runs the slow
path) and with OpenMP: ``at::parallel_for`` splits rows over torch's threads only where ``_OPENMP`` is defined;
without it every pass ran on one thread. The module links the libgomp torch has already loaded. Without a
compiler the kernels are skipped with one warning and the eager ops run; on a GPU the eager ops always run.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path

import torch

from shared_utils.runtime import read_cpuinfo


def cpu_flags() -> set[str]:
    return set(read_cpuinfo().get("flags", "").split())


def has_avx2() -> bool:
    return "avx2" in cpu_flags()


def build_name(cpuinfo: dict[str, str]) -> str:
    """The extension's name, and so its cache folder: one per set of CPU flags, since ``-march=native`` code
    is only valid on the instruction sets it was built for."""
    return "w8a8_kernels_" + hashlib.sha256(cpuinfo.get("flags", "").encode()).hexdigest()[:12]


SOURCE = Path(__file__).with_suffix(".cpp")  # the C++ (its AVX2 functions are bound only where __AVX2__ is set)


@functools.cache
def cpu_kernels():
    """The compiled module, or None (with one warning) where it cannot be built."""
    try:
        from torch.utils.cpp_extension import load

        return load(build_name(read_cpuinfo()), sources=[str(SOURCE)],
                    extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"], verbose=False)
    except Exception as exc:  # no compiler or ninja: the eager ops are the same computation, slower
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"warning: W8A8's fused CPU kernels could not be built ({first[:120]}); using the eager ops",
              file=sys.stderr)
        return None


def fused(x: torch.Tensor) -> bool:
    """Whether the fused kernels serve this input: float32 on the CPU, and the kernels build."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and cpu_kernels() is not None


def quantize_rows(x: torch.Tensor, scale: torch.Tensor | None, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K) fp32 -> (int8 (M, K), scales (M,)) in one pass: the integers of ``int8.quantize`` exactly.
    ``scale`` None: each row's own max|x| / 127 (the dynamic mode), as ``choose_qparams(x, axis=0)``."""
    return tuple(cpu_kernels().quantize_rows(x.contiguous(), 0.0 if scale is None else float(scale), eps))


def dequantize_rows_(acc: torch.Tensor, row_scale: torch.Tensor, col_scale: torch.Tensor,
                     bias: torch.Tensor | None) -> torch.Tensor:
    """acc (M, N) int32 -> acc * row_scale[:, None] * col_scale[None, :] + bias as float32 (M, N), in one pass
    and in place: the returned tensor is ``acc``'s memory, which must not be used as int32 afterwards."""
    empty = torch.empty(0)
    cpu_kernels().dequantize_rows_(acc, row_scale.contiguous(), col_scale.contiguous(),
                                   empty if bias is None else bias.contiguous())
    return acc.view(torch.float32)


def torch_int_mm_is_fast() -> bool:
    """Whether ``torch._int_mm`` has a fast CPU kernel here: oneDNN's, on CPUs with AVX-512 VNNI (7x faster than
    fp32 on an AVX-512 Xeon). Elsewhere it is a scalar loop (on an AVX2 EPYC, 9.5 s for one block's integer
    products against fp32's 0.24 s)."""
    return "avx512_vnni" in cpu_flags()


@functools.cache
def own_int8_gemm() -> bool:
    """Whether int8 matmuls on the CPU take this module's AVX2 GEMM instead of ``torch._int_mm``: where the CPU
    has AVX2 and torch's kernel is the scalar loop."""
    return has_avx2() and not torch_int_mm_is_fast() and cpu_kernels() is not None


# products per iteration of each probe loop: twelve chains of eight fp32 lanes, or of eight int32 lanes summing
# two int16 products each
PROBE_PRODUCTS = {"fp32_fma": 12 * 8, "int16_madd": 12 * 16}


def pack_int8_b(b: torch.Tensor) -> torch.Tensor:
    """b (K, N) int8 in the AVX2 GEMM's layout: (N / 16 panels, K / 2 pairs, 32) int16 (see the C++ source)."""
    return cpu_kernels().pack_int8_b(b.contiguous())


def int8_gemm(a: torch.Tensor, b: torch.Tensor, packed: torch.Tensor | None = None) -> torch.Tensor:
    """a (M, K) int8 @ b (K, N) int8 -> (M, N) int32, exactly, with the AVX2 kernel; ``packed`` is
    :func:`pack_int8_b` of ``b`` where the caller keeps it (packing a 1,536 x 384 weight on every call cost
    10 ms against the product's 44 ms)."""
    return cpu_kernels().int8_gemm_packed(a.contiguous(), pack_int8_b(b) if packed is None else packed, b.shape[1])


"""Fused CPU kernels for W8A8's two elementwise passes, written in C++ and compiled on first use.

Around the integer matmul (``torch._int_mm``), a W8A8 linear layer quantizes its input and turns its int32
output back into floats, y = acc * (s_x * s_w) + b. In eager torch the first is four passes over memory
(divide, round, clamp, cast) and the second, ``addcmul`` on an int32 tensor, ran at half the speed of a float
pass; on this CPU together they cost as much as the matmul. Here each is one pass:

    q[i, j] = round_half_even(clamp(x[i, j] / s_i, -128, 127))   s_i: one scale, or each row's max|x| / 127

    y[i, j] = fma(float(acc[i, j]), r_i * c_j, b[j])      r_i: the activation scale (one, or per row), c_j: weight

written over ``acc`` itself (int32 and float32 have the same size), so the output needs no second allocation:
for a 4,096 x 1,536 layer that is 25 MB less to page in on every call.

The eager ops of ``int8.py`` remain the reference; tests check these give the same integers and outputs.
The kernels build with ``torch.utils.cpp_extension.load_inline`` (gcc, ninja; about a minute once, then
cached, one build per CPU instruction set: ``-march=native`` code built on an AVX-512 machine dies with an
illegal instruction on an AVX2 one sharing the same home directory, and the reverse runs the slow path) and with
OpenMP: ``at::parallel_for`` splits rows over torch's threads only where ``_OPENMP`` is defined;
without it every pass ran on one thread. The module links the libgomp torch has already loaded. Without a
compiler the kernels are skipped with one warning and the eager ops run; on a GPU the eager ops always run.
"""

from __future__ import annotations

import functools
import hashlib
import sys

import torch

from shared_utils.runtime import read_cpuinfo

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// one row: out = round_half_even(clamp(row / s, -128, 127)). With AVX-512, 16 lanes per step: divide, clamp,
// convert with round-to-nearest-even and narrow to int8, four instructions; gcc's vectorization of the scalar
// loop (int32 then int8 casts) took about 1.5x as long here. Clamping first gives the round-then-clamp integers.
static inline void quantize_row(const float* __restrict row, int8_t* __restrict out, int64_t K, float s) {
  int64_t j = 0;
#if defined(__AVX512F__)
  const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-128.f), hi = _mm512_set1_ps(127.f);
  for (; j + 16 <= K; j += 16) {
    __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(_mm512_loadu_ps(row + j), vs), lo), hi);
    __m512i r = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), _mm512_cvtsepi32_epi8(r));  // in range: no saturation
  }
#endif
  const float magic = 12582912.f;  // 1.5 * 2**23: adding and subtracting it rounds half to even below 2**22
  for (; j < K; ++j) {
    float v = row[j] / s;
    v = v < -128.f ? -128.f : v;
    v = v > 127.f ? 127.f : v;
    out[j] = static_cast<int8_t>(static_cast<int32_t>((v + magic) - magic));
  }
}

// max |row[j]|, 16 lanes per step with AVX-512 (max is exact in any order). gcc's vectorization of the scalar
// loop with `omp simd reduction(max)` took as long as the whole quantize pass here.
static inline float abs_max(const float* __restrict row, int64_t K) {
  float m = 0.f;
  int64_t j = 0;
#if defined(__AVX512F__)
  __m512 acc = _mm512_setzero_ps();
  for (; j + 16 <= K; j += 16) acc = _mm512_max_ps(acc, _mm512_abs_ps(_mm512_loadu_ps(row + j)));
  m = _mm512_reduce_max_ps(acc);
#endif
  for (; j < K; ++j) m = std::max(m, std::fabs(row[j]));
  return m;
}

// x (M, K) float32 -> (q (M, K) int8, scale (M,)): q = round_half_even(clamp(x / s, -128, 127)), one pass; s is
// `scale` for every row, or (scale <= 0) each row's own max|x| / 127, at least eps. Rows split across threads.
std::vector<torch::Tensor> quantize_rows(torch::Tensor x, double scale, double eps) {
  const int64_t M = x.size(0), K = x.size(1);
  auto q = torch::empty({M, K}, x.options().dtype(torch::kInt8));
  auto scales = torch::empty({M}, x.options());
  const float* xs = x.data_ptr<float>();
  int8_t* qs = q.data_ptr<int8_t>();
  float* ss = scales.data_ptr<float>();
  at::parallel_for(0, M, std::max<int64_t>(1, 32768 / std::max<int64_t>(K, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const float* __restrict row = xs + i * K;
      float s = static_cast<float>(scale);
      if (s <= 0.f) {
        s = std::max(abs_max(row, K) / 127.f, static_cast<float>(eps));
      }
      ss[i] = s;
      quantize_row(row, qs + i * K, K, s);
    }
  });
  return {q, scales};
}

// acc (M, N) int32 -> the same memory as float32 (M, N): acc * row_scale (M,) * col_scale (N,) + bias (N,) or
// none. In place, so the layer's output is the matmul's own buffer: no second (M, N) allocation to page in.
void dequantize_rows_(torch::Tensor acc, torch::Tensor row_scale, torch::Tensor col_scale, torch::Tensor bias) {
  const int64_t M = acc.size(0), N = acc.size(1);
  int32_t* a = acc.data_ptr<int32_t>();
  float* o = reinterpret_cast<float*>(a);
  const float* r = row_scale.data_ptr<float>();
  const float* c = col_scale.data_ptr<float>();
  const float* b = bias.numel() ? bias.data_ptr<float>() : nullptr;
  at::parallel_for(0, M, 8, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      int32_t* arow = a + i * N;
      float* orow = o + i * N;
      const float ri = r[i];
      if (b) {
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) orow[j] = std::fma(static_cast<float>(arow[j]), ri * c[j], b[j]);
      } else {
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) orow[j] = static_cast<float>(arow[j]) * (ri * c[j]);
      }
    }
  });
}
"""


def build_name(cpuinfo: dict[str, str]) -> str:
    """The extension's name, and so its cache folder: one per set of CPU flags, since ``-march=native`` code
    is only valid on the instruction sets it was built for."""
    return "w8a8_kernels_" + hashlib.sha256(cpuinfo.get("flags", "").encode()).hexdigest()[:12]


@functools.cache
def cpu_kernels():
    """The compiled module, or None (with one warning) where it cannot be built."""
    try:
        from torch.utils.cpp_extension import load_inline

        return load_inline(build_name(read_cpuinfo()), cpp_sources=_SOURCE,
                           functions=["quantize_rows", "dequantize_rows_"],
                           extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"],
                           verbose=False)
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

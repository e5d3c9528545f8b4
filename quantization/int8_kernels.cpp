// W8A8's CPU kernels (int8_kernels.py loads them with torch.utils.cpp_extension.load): the quantize pass, the
// in-place dequantize (+ bias) over the int32 accumulator, and an exact int8 GEMM for AVX2 CPUs without AVX-512
// VNNI, with the probes that measure its instruction ceiling. int8.py's eager ops are the reference.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

// one row: out = round_half_even(clamp(row / s, -128, 127)). Vector lanes, then a scalar tail; clamping first
// gives the round-then-clamp integers. With AVX-512, 16 lanes per step: divide, clamp, convert with
// round-to-nearest-even and narrow to int8, four instructions; gcc's vectorization of the scalar loop (int32 then
// int8 casts) took about 1.5x as long. With AVX2 (no narrowing convert), 16 lanes as two halves: divide, clamp,
// round half to even, convert the (already integral) floats to int32, and narrow with two saturating packs and one
// lane permute; the scalar loop was 14% of W8A8's time on one block's linear layers on an AVX2 EPYC.
static inline void quantize_row(const float* __restrict row, int8_t* __restrict out, int64_t K, float s) {
  int64_t j = 0;
#if defined(__AVX512F__)
  const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps(-128.f), hi = _mm512_set1_ps(127.f);
  for (; j + 16 <= K; j += 16) {
    __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(_mm512_loadu_ps(row + j), vs), lo), hi);
    __m512i r = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), _mm512_cvtsepi32_epi8(r));  // in range: no saturation
  }
#elif defined(__AVX2__)
  const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps(-128.f), hi = _mm256_set1_ps(127.f);
  for (; j + 16 <= K; j += 16) {
    __m256i r[2];
    for (int h = 0; h < 2; ++h) {
      __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(_mm256_loadu_ps(row + j + 8 * h), vs), lo), hi);
      v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      r[h] = _mm256_cvttps_epi32(v);  // integral already: truncation is exact
    }
    // int32 -> int16 packs within 128-bit lanes: [r0 0-3, r1 0-3 | r0 4-7, r1 4-7]; the permute restores order
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(r[0], r[1]), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j),
                     _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
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

// max |row[j]|, 16 lanes per step with AVX-512, 8 with AVX2 (max is exact in any order). gcc's vectorization of
// the scalar loop with `omp simd reduction(max)` took as long as the whole quantize pass.
static inline float abs_max(const float* __restrict row, int64_t K) {
  float m = 0.f;
  int64_t j = 0;
#if defined(__AVX512F__)
  __m512 acc = _mm512_setzero_ps();
  for (; j + 16 <= K; j += 16) acc = _mm512_max_ps(acc, _mm512_abs_ps(_mm512_loadu_ps(row + j)));
  m = _mm512_reduce_max_ps(acc);
#elif defined(__AVX2__)
  const __m256 sign = _mm256_set1_ps(-0.f);
  __m256 acc = _mm256_setzero_ps();
  for (; j + 8 <= K; j += 8) acc = _mm256_max_ps(acc, _mm256_andnot_ps(sign, _mm256_loadu_ps(row + j)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  for (float v : lanes) m = std::max(m, v);
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

#if defined(__AVX2__)
// int8 x int8 -> int32 GEMM with AVX2, for CPUs where torch._int_mm has no fast kernel (without AVX-512 VNNI it
// runs a scalar loop: 39x fp32's time on an AVX2 EPYC). Exact: each int8 is widened to int16 and
// _mm256_madd_epi16 adds two int16 x int16 products into an int32 lane, 16 products per instruction against
// fp32 FMA's 8, with no saturation (|product| <= 16384; vpmaddubsw, 32 per instruction, saturates int16).
//
// Layouts: B (K, N) is packed into panels of 16 columns; in panel p, k-pair t holds 32 int16,
// [b[2t][n], b[2t+1][n]] for n = 16p .. 16p+15 (zeros past K and N). A is packed per block of MC rows into
// k-pair words (a[i][2t], a[i][2t+1]) as int16 pairs, so one 32-bit broadcast times a panel's two registers
// gives 16 columns' partial sums. The micro-kernel keeps a 6 x 16 int32 tile in 12 registers.
static constexpr int64_t MR = 6, NR = 16, MC = 96;

static inline void micro_kernel(const int32_t* __restrict ap, const int16_t* __restrict bp, int64_t KP,
                                int32_t* __restrict c, int64_t ldc, int64_t rows, int64_t cols) {
  // twelve named accumulators: held in an array, gcc kept them on the stack (a load and a store per add)
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
          c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t t = 0; t < KP; ++t, ap += MR, bp += 2 * NR) {
    const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp));  // columns 0-7
    const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + NR));  // columns 8-15
    __m256i a;
#define W8A8_ROW(r) a = _mm256_set1_epi32(ap[r]); \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(a, b0)); \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(a, b1));
    W8A8_ROW(0) W8A8_ROW(1) W8A8_ROW(2) W8A8_ROW(3) W8A8_ROW(4) W8A8_ROW(5)
#undef W8A8_ROW
  }
  alignas(32) int32_t tile[MR][NR];
  const __m256i acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int64_t r = 0; r < rows; ++r) {
    if (cols == NR) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc), acc[r][0]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 8), acc[r][1]);
    } else {
      _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r]), acc[r][0]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(tile[r] + 8), acc[r][1]);
      std::copy(tile[r], tile[r] + cols, c + r * ldc);
    }
  }
}

// The ceiling these instructions set for this GEMM against fp32's: register-only loops of what each inner loop
// issues, one fp32 FMA per 8 products and one int16 multiply-add plus one int32 add per 16, in twelve independent
// chains (a chain's latency is 4 cycles: twelve keep three instructions in flight per cycle, more than either
// issues).
// Their products per second bound how much faster than fp32's GEMM one built on these instructions can run.
// The arguments come from Python so the compiler cannot fold the loops; the returned sum of every lane is
// checked by a test against the closed form.
// Each probe names its twelve chains f0..f11 or c0..c11 (held in an array, gcc kept the GEMM micro-kernel's
// accumulators on the stack) and stores them one by one: summed in registers instead, gcc kept three chains on
// the stack inside the loop.
#define W8A8_TWELVE(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

template <class Total, class Lane>
static Total sum_lanes(const Lane (&lanes)[12][8]) {
  Total total = 0;
  for (const auto& chain : lanes)
    for (Lane v : chain) total += v;
  return total;
}

double probe_fp32_fma(int64_t iters, double a, double b) {  // f = f * a + b, f starting at the chain's index
  const __m256 va = _mm256_set1_ps(static_cast<float>(a)), vb = _mm256_set1_ps(static_cast<float>(b));
#define W8A8_INIT(r) __m256 f##r = _mm256_set1_ps(static_cast<float>(r));
#define W8A8_STEP(r) f##r = _mm256_fmadd_ps(f##r, va, vb);
#define W8A8_STORE(r) _mm256_store_ps(lanes[r], f##r);
  W8A8_TWELVE(W8A8_INIT)
  for (int64_t n = 0; n < iters; ++n) {
    W8A8_TWELVE(W8A8_STEP)
  }
  alignas(32) float lanes[12][8];
  W8A8_TWELVE(W8A8_STORE)
#undef W8A8_INIT
#undef W8A8_STEP
#undef W8A8_STORE
  return sum_lanes<double>(lanes);
}

int64_t probe_int16_madd(int64_t iters, int64_t b) {  // c = c + madd(c, b), c's int32 lanes starting at the index
  const __m256i vb = _mm256_set1_epi16(static_cast<int16_t>(b));
#define W8A8_INIT(r) __m256i c##r = _mm256_set1_epi32(r);
#define W8A8_STEP(r) c##r = _mm256_add_epi32(c##r, _mm256_madd_epi16(c##r, vb));
#define W8A8_STORE(r) _mm256_store_si256(reinterpret_cast<__m256i*>(lanes[r]), c##r);
  W8A8_TWELVE(W8A8_INIT)
  for (int64_t n = 0; n < iters; ++n) {
    W8A8_TWELVE(W8A8_STEP)
  }
  alignas(32) int32_t lanes[12][8];
  W8A8_TWELVE(W8A8_STORE)
#undef W8A8_INIT
#undef W8A8_STEP
#undef W8A8_STORE
  return sum_lanes<int64_t>(lanes);
}
#undef W8A8_TWELVE

// b (K, N) int8 -> (N / 16 panels, K / 2 pairs, 32) int16, padded with zeros (see above); 32-byte aligned rows.
torch::Tensor pack_int8_b(torch::Tensor b) {
  const int64_t K = b.size(0), N = b.size(1), KP = (K + 1) / 2, NP = (N + NR - 1) / NR;
  auto packed = torch::zeros({NP, KP, 2 * NR}, b.options().dtype(torch::kInt16));
  const int8_t* bs = b.data_ptr<int8_t>();
  int16_t* out = packed.data_ptr<int16_t>();
  at::parallel_for(0, NP, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p)
      for (int64_t t = 0; t < KP; ++t)
        for (int64_t j = 0; j < NR && p * NR + j < N; ++j)
          for (int64_t h = 0; h < 2 && 2 * t + h < K; ++h)
            out[(p * KP + t) * 2 * NR + 2 * j + h] = bs[(2 * t + h) * N + p * NR + j];
  });
  return packed;
}

// a (M, K) int8 @ b (K, N) int8 -> (M, N) int32, b given packed by pack_int8_b. Row blocks of MC rows split
// across threads; each packs its rows once (MC x K int16 stays in L2) and sweeps every column panel over them.
torch::Tensor int8_gemm_packed(torch::Tensor a, torch::Tensor packed, int64_t N) {
  const int64_t M = a.size(0), K = a.size(1), KP = packed.size(1), NP = packed.size(0);
  TORCH_CHECK((K + 1) / 2 == KP, "packed B has ", KP, " k-pairs, A has K = ", K);
  auto c = torch::empty({M, N}, a.options().dtype(torch::kInt32));
  const int8_t* as = a.data_ptr<int8_t>();
  const int16_t* bp = packed.data_ptr<int16_t>();
  int32_t* cs = c.data_ptr<int32_t>();
  const int64_t blocks = (M + MC - 1) / MC;
  at::parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
    std::vector<int32_t> ap(MC * KP);  // (MC / MR micro-blocks, KP, MR) pair words
    for (int64_t blk = lo; blk < hi; ++blk) {
      const int64_t m0 = blk * MC, mb = std::min(MC, M - m0);
      const int64_t micro = (mb + MR - 1) / MR;
      for (int64_t u = 0; u < micro; ++u)
        for (int64_t r = 0; r < MR; ++r) {
          const int64_t i = m0 + u * MR + r;
          int32_t* dst = ap.data() + u * KP * MR + r;
          for (int64_t t = 0; t < KP; ++t) {
            const int16_t lo16 = i < M ? as[i * K + 2 * t] : 0;
            const int16_t hi16 = (i < M && 2 * t + 1 < K) ? as[i * K + 2 * t + 1] : 0;
            dst[t * MR] = static_cast<int32_t>(static_cast<uint16_t>(lo16)) |
                          (static_cast<int32_t>(static_cast<uint16_t>(hi16)) << 16);
          }
        }
      for (int64_t p = 0; p < NP; ++p) {
        const int64_t cols = std::min(NR, N - p * NR);
        for (int64_t u = 0; u < micro; ++u)
          micro_kernel(ap.data() + u * KP * MR, bp + p * KP * 2 * NR, KP, cs + (m0 + u * MR) * N + p * NR, N,
                       std::min(MR, mb - u * MR), cols);
      }
    }
  });
  return c;
}
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("quantize_rows", &quantize_rows);
  m.def("dequantize_rows_", &dequantize_rows_);
#if defined(__AVX2__)
  m.def("pack_int8_b", &pack_int8_b);
  m.def("int8_gemm_packed", &int8_gemm_packed);
  m.def("probe_fp32_fma", &probe_fp32_fma);
  m.def("probe_int16_madd", &probe_int16_madd);
#endif
}

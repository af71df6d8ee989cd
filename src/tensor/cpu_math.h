// Internal to src/tensor/: vectorised f32 building blocks for the CPU kernels (exp, dot, axpy, max,
// softmax pieces). AVX2+FMA when the build targets it (SEQIT_NATIVE, the default, compiles for the
// build machine: AVX2 or AVX-512 machines both have AVX2); a portable scalar path otherwise, which
// computes the same functions.
//
// exp: glibc's expf does not vectorise without -ffast-math, and the block's SwiGLU, attention
// softmax and cross-entropy over a 32k vocabulary call it millions of times per step, so seqit has
// its own: x = n·ln2 + r with |r| <= ln2/2, e^r by its degree-7 Taylor polynomial (truncation error
// < 6e-9 relative), 2^n through the exponent bits. Max relative error ~2 ulp over [-87, 88];
// below -87.3 the result is 0 (exp(-inf) = 0 exactly, which masked softmax needs).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tensor/dtype.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SEQIT_AVX2 1
#endif

namespace seqit::tensor::detail {

// Copies / zeroes n floats in line. The attention tiles and per-row ops move rows of a few dozen
// floats, where a call to libc's memmove / memset cost more than the move (15% of a small model's
// attention time). 8 floats at a time, like the kernels that write the rows: a wider load of
// values just stored by narrower stores would wait for them instead of forwarding. Larger ranges
// go to libc.
inline void copy_f32(float* dst, const float* src, int64_t n) {
  if (n > 256) {
    __builtin_memmove(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  int64_t i = 0;
#ifdef SEQIT_AVX2
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
  if (i < n) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(dst + i, mask, _mm256_maskload_ps(src + i, mask));
  }
#else
  for (; i < n; ++i) dst[i] = src[i];
#endif
}
inline void zero_f32(float* dst, int64_t n) {
  if (n > 256) {
    __builtin_memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  int64_t i = 0;
#ifdef SEQIT_AVX2
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_setzero_ps());
#endif
  for (; i < n; ++i) dst[i] = 0.0f;
}

constexpr float kExpLow = -87.3f;
constexpr float kExpHigh = 88.7f;

inline float exp_scalar(float x) {
  if (!(x >= kExpLow)) return std::isnan(x) ? x : 0.0f;
  if (x > kExpHigh) return INFINITY;
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = std::fma(n, -0.693145751953125f, x) - n * 1.42860682030941723212e-6f;
  float p = 1.0f / 5040.0f;
  p = std::fma(p, r, 1.0f / 720.0f);
  p = std::fma(p, r, 1.0f / 120.0f);
  p = std::fma(p, r, 1.0f / 24.0f);
  p = std::fma(p, r, 1.0f / 6.0f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  return std::ldexp(p, static_cast<int>(n));
}

#ifdef SEQIT_AVX2
// Eight consecutive values as f32: f32 as is, bf16 widened by a shift, f16 through F16C.
inline __m256 load8_f32(const float* p) {
  return _mm256_loadu_ps(p);
}
inline __m256 load8_f32(const bf16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 load8_f32(const f16* p) {
#ifdef __F16C__
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
  alignas(32) float f[8];
  for (int i = 0; i < 8; ++i) f[i] = f16_to_f32(p[i]);
  return _mm256_load_ps(f);
#endif
}

inline __m256 exp8(__m256 x) {
  const __m256 too_low = _mm256_cmp_ps(x, _mm256_set1_ps(kExpLow), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpLow)), _mm256_set1_ps(kExpHigh));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723212e-6f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n: n in [-126, 128]; build it in two halves so n = 128 (x near 88.7) does not overflow early.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256 s1 =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const __m256 s2 = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
  p = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  return _mm256_andnot_ps(too_low, p);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

// y[i] = exp(x[i] - shift); returns Σ y[i] (y may alias x).
inline float exp_shift_sum(const float* x, float shift, float* y, int64_t n) {
  int64_t i = 0;
  float sum = 0;
#ifdef SEQIT_AVX2
  __m256 acc = _mm256_setzero_ps();
  const __m256 s = _mm256_set1_ps(shift);
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(y + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  sum = hsum(acc);
#endif
  for (; i < n; ++i) {
    y[i] = exp_scalar(x[i] - shift);
    sum += y[i];
  }
  return sum;
}

inline float max_of(const float* x, int64_t n) {
  int64_t i = 0;
  float m = -INFINITY;
#ifdef SEQIT_AVX2
  if (n >= 8) {
    __m256 acc = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) acc = _mm256_max_ps(acc, _mm256_loadu_ps(x + i));
    m = hmax(acc);
  }
#endif
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float sum = 0;
#ifdef SEQIT_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8)
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  sum = hsum(_mm256_add_ps(acc0, acc1));
#endif
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y += alpha · x
inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  int64_t i = 0;
#ifdef SEQIT_AVX2
  const __m256 a = _mm256_set1_ps(alpha);
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// x *= alpha
inline void scale(float* x, float alpha, int64_t n) {
  int64_t i = 0;
#ifdef SEQIT_AVX2
  const __m256 a = _mm256_set1_ps(alpha);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(a, _mm256_loadu_ps(x + i)));
#endif
  for (; i < n; ++i) x[i] *= alpha;
}

// σ(x) = 1 / (1 + e^-x), computed without overflow for large |x|.
inline float sigmoid_scalar(float x) {
  return 1.0f / (1.0f + exp_scalar(-x));
}

// Σ of per-element terms in f64, summed in f32 lanes over blocks of 1024 (the last one shorter)
// and folded into f64: error stays ~1e-7 relative per block. `fma8(i, acc)` adds the terms of
// elements i..i+7 onto an 8-lane accumulator; `term(i)` is element i's term in f64 (the tail).
template <class Fma8, class Term>
inline double blocked_sum(int64_t n, [[maybe_unused]] Fma8 fma8, Term term) {
  double total = 0;
  int64_t i = 0;
#ifdef SEQIT_AVX2
  while (n - i >= 16) {
    const int64_t end = std::min(n, i + 1024);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= end; i += 16) {
      acc0 = fma8(i, acc0);
      acc1 = fma8(i + 8, acc1);
    }
    total += hsum(_mm256_add_ps(acc0, acc1));
  }
#endif
  for (; i < n; ++i) total += term(i);
  return total;
}

// Σ x² in f64 (norms: gradients of a billion elements must not lose their small entries). A short
// row (e.g. a norm over 64 values) goes through the lanes too: one f64 add after another waits ~4
// cycles each, which made rmsnorm over small widths latency-bound.
inline double sum_squares(const float* x, int64_t n) {
  return blocked_sum(
      n,
      [x](int64_t i, auto acc) {
#ifdef SEQIT_AVX2
        const __m256 v = _mm256_loadu_ps(x + i);
        return _mm256_fmadd_ps(v, v, acc);
#else
        return acc;
#endif
      },
      [x](int64_t i) { return static_cast<double>(x[i]) * x[i]; });
}

// Σ a·b·c over n values, summed like sum_squares.
inline double dot3(const float* a, const float* b, const float* c, int64_t n) {
  return blocked_sum(
      n,
      [a, b, c](int64_t i, auto acc) {
#ifdef SEQIT_AVX2
        return _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)),
                               _mm256_loadu_ps(c + i), acc);
#else
        return acc;
#endif
      },
      [a, b, c](int64_t i) { return static_cast<double>(a[i]) * b[i] * c[i]; });
}

}  // namespace seqit::tensor::detail

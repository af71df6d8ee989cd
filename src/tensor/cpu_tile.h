// Internal to src/tensor/: the small dense tile product the attention kernels are built from.
#pragma once

#include <cstdint>

#include "tensor/cpu_math.h"

namespace seqit::tensor::detail {

inline int64_t round_up8(int64_t n) {
  return (n + 7) / 8 * 8;
}

#ifdef SEQIT_AVX2
// R rows of C, NV vectors (8 floats) of columns starting at column j.
template <int R, int NV>
inline void tile_gemm_block(const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                            int64_t ldc, int64_t k, int64_t j, bool accumulate) {
  __m256 acc[R][NV];
#pragma GCC unroll 2
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? _mm256_loadu_ps(C + r * ldc + j + 8 * v) : _mm256_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    __m256 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm256_loadu_ps(B + kk * ldb + j + 8 * v);
#pragma GCC unroll 2
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + kk);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 2
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(C + r * ldc + j + 8 * v, acc[r][v]);
}

template <int R>
inline void tile_gemm_rows(const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                           int64_t ldc, int64_t k, int64_t n, bool accumulate) {
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) tile_gemm_block<R, 4>(A, lda, B, ldb, C, ldc, k, j, accumulate);
  switch ((n - j) / 8) {
    case 3:
      tile_gemm_block<R, 3>(A, lda, B, ldb, C, ldc, k, j, accumulate);
      break;
    case 2:
      tile_gemm_block<R, 2>(A, lda, B, ldb, C, ldc, k, j, accumulate);
      break;
    case 1:
      tile_gemm_block<R, 1>(A, lda, B, ldb, C, ldc, k, j, accumulate);
      break;
    default:
      break;
  }
}
#endif

// C[m][n] (= or +=) A[m][k] · B[k][n], all f32 row-major with the given row strides; n must be a
// multiple of 8 (callers pad their tiles with zeros). The building block of the attention kernels:
// S = Q·Kᵀ (B = Kᵀ tile), O += P·V, dQ += dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO.
inline void tile_gemm(const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                      int64_t ldc, int64_t m, int64_t k, int64_t n, bool accumulate) {
#ifdef SEQIT_AVX2
  int64_t i = 0;
  for (; i + 2 <= m; i += 2)
    tile_gemm_rows<2>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, k, n, accumulate);
  if (i < m) tile_gemm_rows<1>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, k, n, accumulate);
#else
  for (int64_t i = 0; i < m; ++i) {
    float* c = C + i * ldc;
    if (!accumulate)
      for (int64_t j = 0; j < n; ++j) c[j] = 0;
    for (int64_t kk = 0; kk < k; ++kk) {
      const float a = A[i * lda + kk];
      const float* b = B + kk * ldb;
      for (int64_t j = 0; j < n; ++j) c[j] += a * b[j];
    }
  }
#endif
}

}  // namespace seqit::tensor::detail

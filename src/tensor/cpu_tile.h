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
[[gnu::noinline]] void tile_gemm_block(const float* A, int64_t a_rs, int64_t a_cs, const float* B,
                                       int64_t ldb, float* C, int64_t ldc, int64_t k, int64_t j,
                                       bool accumulate) {
  __m256 acc[R][NV];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? _mm256_loadu_ps(C + r * ldc + j + 8 * v) : _mm256_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    __m256 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      b[v] = _mm256_loadu_ps(B + kk * ldb + j + 8 * v);
      asm("" : "+x"(b[v]));  // in a register, not folded into each row's FMA (see the 16-wide form)
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * a_rs + kk * a_cs);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(C + r * ldc + j + 8 * v, acc[r][v]);
}

template <int R>
inline void tile_gemm_rows(const float* A, int64_t a_rs, int64_t a_cs, const float* B, int64_t ldb,
                           float* C, int64_t ldc, int64_t k, int64_t n, bool accumulate) {
  int64_t j = 0;
  for (; j + 32 <= n; j += 32)
    tile_gemm_block<R, 4>(A, a_rs, a_cs, B, ldb, C, ldc, k, j, accumulate);
  switch ((n - j) / 8) {
    case 3:
      tile_gemm_block<R, 3>(A, a_rs, a_cs, B, ldb, C, ldc, k, j, accumulate);
      break;
    case 2:
      tile_gemm_block<R, 2>(A, a_rs, a_cs, B, ldb, C, ldc, k, j, accumulate);
      break;
    case 1:
      tile_gemm_block<R, 1>(A, a_rs, a_cs, B, ldb, C, ldc, k, j, accumulate);
      break;
    default:
      break;
  }
}
#endif

#if defined(SEQIT_AVX2) && defined(__AVX512F__)
// The AVX-512 form of tile_gemm_block: R rows of C, NV vectors of 16 floats from column j. With
// R = 4, NV = 4 it keeps 16 accumulators in registers (of 32) and issues 4 loads and 4 broadcasts
// per 16 FMAs: on a CPU with full-width 512-bit FMA units (Zen 5, Intel server cores) this runs at
// twice the 8-wide block's FLOP rate, which is bounded by its 256-bit vectors.
// Not inlined: inside the attention kernels GCC kept b[] on the stack (a store and a reload per
// step).
template <int R, int NV>
[[gnu::noinline]] void tile_gemm_block16(const float* A, int64_t a_rs, int64_t a_cs, const float* B,
                                         int64_t ldb, float* C, int64_t ldc, int64_t k, int64_t j,
                                         bool accumulate) {
  __m512 acc[R][NV];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? _mm512_loadu_ps(C + r * ldc + j + 16 * v) : _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      b[v] = _mm512_loadu_ps(B + kk * ldb + j + 16 * v);
      // Keep b in a register: GCC otherwise folds the load into each row's FMA, R loads of it per
      // step, and with 2 loads per cycle a CPU with full-width FMA units (Zen 5) waited on loads.
      asm("" : "+v"(b[v]));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * a_rs + kk * a_cs]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + r * ldc + j + 16 * v, acc[r][v]);
}

template <int R>
inline void tile_gemm_rows16(const float* A, int64_t a_rs, int64_t a_cs, const float* B,
                             int64_t ldb, float* C, int64_t ldc, int64_t k, int64_t n,
                             bool accumulate) {
  int64_t j = 0;
  for (; j + 64 <= n; j += 64)
    tile_gemm_block16<R, 4>(A, a_rs, a_cs, B, ldb, C, ldc, k, j, accumulate);
  switch ((n - j) / 16) {
    case 3:
      tile_gemm_block16<R, 3>(A, a_rs, a_cs, B, ldb, C, ldc, k, j, accumulate);
      break;
    case 2:
      tile_gemm_block16<R, 2>(A, a_rs, a_cs, B, ldb, C, ldc, k, j, accumulate);
      break;
    case 1:
      tile_gemm_block16<R, 1>(A, a_rs, a_cs, B, ldb, C, ldc, k, j, accumulate);
      break;
    default:
      break;
  }
  j += (n - j) / 16 * 16;
  if (j < n) tile_gemm_block<R, 1>(A, a_rs, a_cs, B, ldb, C, ldc, k, j, accumulate);  // 8 left
}
#endif

// C[m][n] (= or +=) A[m][k] · B[k][n], f32; A's element (r, c) is at A[r·a_rs + c·a_cs] (a
// transposed operand is just a_rs = 1), B and C row-major with row strides ldb, ldc; n must be a
// multiple of 8 (callers pad their tiles with zeros). The building block of the attention kernels:
// S = Q·Kᵀ (B = Kᵀ tile), O += P·V, dQ += dS·K, and with a transposed A, dK += dSᵀ·Q, dV += Pᵀ·dO.
inline void tile_gemm(const float* A, int64_t a_rs, int64_t a_cs, const float* B, int64_t ldb,
                      float* C, int64_t ldc, int64_t m, int64_t k, int64_t n, bool accumulate) {
#if defined(SEQIT_AVX2) && defined(__AVX512F__)
  int64_t i = 0;
  for (; i + 4 <= m; i += 4)
    tile_gemm_rows16<4>(A + i * a_rs, a_rs, a_cs, B, ldb, C + i * ldc, ldc, k, n, accumulate);
  for (; i < m; ++i)
    tile_gemm_rows16<1>(A + i * a_rs, a_rs, a_cs, B, ldb, C + i * ldc, ldc, k, n, accumulate);
#elif defined(SEQIT_AVX2)
  int64_t i = 0;
  for (; i + 2 <= m; i += 2) {
    tile_gemm_rows<2>(A + i * a_rs, a_rs, a_cs, B, ldb, C + i * ldc, ldc, k, n, accumulate);
  }
  if (i < m)
    tile_gemm_rows<1>(A + i * a_rs, a_rs, a_cs, B, ldb, C + i * ldc, ldc, k, n, accumulate);
#else
  for (int64_t i = 0; i < m; ++i) {
    float* c = C + i * ldc;
    if (!accumulate)
      for (int64_t j = 0; j < n; ++j) c[j] = 0;
    for (int64_t kk = 0; kk < k; ++kk) {
      const float a = A[i * a_rs + kk * a_cs];
      const float* b = B + kk * ldb;
      for (int64_t j = 0; j < n; ++j) c[j] += a * b[j];
    }
  }
#endif
}

#if defined(SEQIT_AVX2) && defined(__AVX512F__)
// The bf16 form of tile_gemm for CPUs with AVX512_BF16 (run-time checked by the caller): operands
// are bf16 pairs, a uint32 holding elements 2p (low half) and 2p + 1 (high) of the reduction, and
// each vdpbf16ps adds the products of both to 16 f32 accumulators — twice tile_gemm_block16's
// multiply-adds per instruction, the same f32 accumulation. A2 [m][kp] (row stride lda), B2 [kp][n]
// (row stride ldb), C [m][n] f32.
#define SEQIT_BF16_TILE_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
template <int R, int NV>
[[gnu::noinline]] SEQIT_BF16_TILE_TARGET void tile_dp_block(const uint32_t* A, int64_t lda,
                                                            const uint32_t* B, int64_t ldb,
                                                            float* C, int64_t ldc, int64_t kp,
                                                            int64_t j, bool accumulate) {
  __m512 acc[R][NV];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? _mm512_loadu_ps(C + r * ldc + j + 16 * v) : _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    __m512i b[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      b[v] = _mm512_loadu_si512(B + p * ldb + j + 16 * v);
      asm("" : "+v"(b[v]));  // in a register, not folded into each row's instruction
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512i a = _mm512_set1_epi32(static_cast<int>(A[r * lda + p]));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        acc[r][v] = _mm512_dpbf16_ps(acc[r][v], reinterpret_cast<__m512bh>(a),
                                     reinterpret_cast<__m512bh>(b[v]));
      }
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + r * ldc + j + 16 * v, acc[r][v]);
}

template <int R>
inline void tile_dp_rows(const uint32_t* A, int64_t lda, const uint32_t* B, int64_t ldb, float* C,
                         int64_t ldc, int64_t kp, int64_t n, bool accumulate) {
  int64_t j = 0;
  for (; j + 64 <= n; j += 64) tile_dp_block<R, 4>(A, lda, B, ldb, C, ldc, kp, j, accumulate);
  switch ((n - j) / 16) {
    case 3:
      tile_dp_block<R, 3>(A, lda, B, ldb, C, ldc, kp, j, accumulate);
      break;
    case 2:
      tile_dp_block<R, 2>(A, lda, B, ldb, C, ldc, kp, j, accumulate);
      break;
    case 1:
      tile_dp_block<R, 1>(A, lda, B, ldb, C, ldc, kp, j, accumulate);
      break;
    default:
      break;
  }
}

// C[m][n] (= or +=) A2 · B2 over kp pairs; n must be a multiple of 16 (callers pad with zeros).
inline void tile_dp(const uint32_t* A, int64_t lda, const uint32_t* B, int64_t ldb, float* C,
                    int64_t ldc, int64_t m, int64_t kp, int64_t n, bool accumulate) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4)
    tile_dp_rows<4>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, kp, n, accumulate);
  for (; i < m; ++i) tile_dp_rows<1>(A + i * lda, lda, B, ldb, C + i * ldc, ldc, kp, n, accumulate);
}
#endif

}  // namespace seqit::tensor::detail

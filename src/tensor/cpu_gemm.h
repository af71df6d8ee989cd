// Internal to src/tensor/: the f32 GEMM over oneDNN (cached primitives) and the GEMV kernels, as
// plain pointer+stride routines that the ops compose.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace seqit::tensor::detail {

// One (batched) matrix operand: element (b, r, c) is at data + b*batch_stride + r*row_stride +
// c*col_stride. One of row_stride / col_stride must be 1 (row-major or transposed).
struct MatrixRef {
  const void* data = nullptr;
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0, col_stride = 1, batch_stride = 0;
};
struct MutableMatrixRef {
  void* data = nullptr;
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0, col_stride = 1, batch_stride = 0;
};

// c[b] = alpha · a[b] · b[b] (+ c[b] when accumulate) (+ bias[N] broadcast over rows), for b <
// batch. Every operand f32 (bias f32 or null). Runs a cached oneDNN matmul primitive.
void gemm_f32(int64_t batch, const MatrixRef& a, const MatrixRef& b, const MutableMatrixRef& c,
              const float* bias, float alpha, bool accumulate);

// The same for operands of any float dtype: bf16/f16 operands go to oneDNN natively when it has a
// fast (non-reference) kernel for them on this CPU; otherwise they are converted to f32 in blocks
// (a block of weight rows at a time, so a bf16 weight matrix never has a full f32 copy) and run
// through gemm_f32 — bf16 weights then cost f32 GEMM time plus a conversion pass over the weights.
// c may be f32 or bf16/f16 (accumulated in f32 scratch, rounded once).
void gemm_any(int64_t batch, const MatrixRef& a, const MatrixRef& b, const MutableMatrixRef& c,
              const float* bias, float alpha, bool accumulate);

// Weight-streaming GEMV for few rows (decoding): y[m, o] = Σ_i x[m, i] · w[o, i] (+ bias[o]) for
// m < rows <= kGemvMaxRows; x f32 with row stride ldx, w f32/bf16/f16 rows of stride ldw, y f32.
// Multithreaded over o. `isa` picks a kernel (for tests); kAuto = the best this CPU runs.
// Up to kGemvFixedRows rows a kernel specialised for the row count runs; above, 4 x 3 register
// tiles (see cpu_gemm.cpp). Measured against oneDNN's GEMM on the decode shapes
// (bench_tensor_gemm), streaming wins up to kGemvMaxRows rows.
constexpr int64_t kGemvFixedRows = 4;
constexpr int64_t kGemvMaxRows = 32;
enum class GemvIsa { kAuto, kScalar, kAvx2, kAvx512 };
void gemv(int64_t rows, int64_t in, int64_t out, const float* x, int64_t ldx, const void* w,
          DType w_dtype, int64_t ldw, const float* bias, float* y, int64_t ldy,
          GemvIsa isa = GemvIsa::kAuto);
// The ISAs this CPU can run, best last (tests run each).
std::vector<GemvIsa> available_gemv_isas();
const char* gemv_isa_name(GemvIsa isa);

// ---- weights packed into panels for few-row products (PackedWeight in ops.h)
// Panel p holds output rows [p·kPanel, (p+1)·kPanel) stored input-major: element (o, i) of w at
// panels + (o / kPanel)·in·kPanel + i·kPanel + o % kPanel, zero-padded to whole panels.
constexpr int64_t kPanel = 24;
// Up to this many rows the packed kernel runs; above, blocks of panels are unpacked to f32 rows and
// multiplied by oneDNN's GEMM (the unpacking is then a small part of the work).
constexpr int64_t kPackedMaxRows = 64;
int64_t panel_count(int64_t out);
// w [out, in] (row stride ldw, f32/bf16/f16) -> panels (same dtype, panel_count(out)·in·kPanel).
void pack_panels(const void* w, DType dtype, int64_t out, int64_t in, int64_t ldw, void* panels);
// Output rows [o0, o1) of packed panels as f32 rows: dst[(o - o0)·in + i] = w[o, i].
void unpack_panels_f32(const void* panels, DType dtype, int64_t in, int64_t o0, int64_t o1,
                       float* dst);
// The same rows in the panels' own dtype (unpack_weight: all of them). 16-bit panels go two rows
// at a time with AVX-512BW where the CPU has it; `vector` false forces the scalar copy (tests).
void unpack_panels(const void* panels, DType dtype, int64_t in, int64_t o0, int64_t o1, void* dst,
                   bool vector = true);
// y[m, o] = Σ_i x[m, i] · w[o, i] (+ bias[o]) for m < rows <= kPackedMaxRows, w packed; x, y f32.
// Multithreaded over panels. `isa` kScalar forces the portable kernel (tests); otherwise AVX2 when
// this CPU has it.
void packed_gemv(int64_t rows, int64_t in, int64_t out, const float* x, int64_t ldx,
                 const void* panels, DType dtype, const float* bias, float* y, int64_t ldy,
                 GemvIsa isa = GemvIsa::kAuto);

// The same product with bf16 panels and bf16 activations (x f32, rounded to bf16 here, or bf16; row
// stride ldx), accumulated in f32 with AVX512_BF16 dot products: twice the multiply-adds of the f32
// kernels per instruction. Only where cpu_has_avx512_bf16() and `in` is even (throws otherwise).
void packed_gemv_bf16(int64_t rows, int64_t in, int64_t out, const void* x, DType x_dtype,
                      int64_t ldx, const void* panels, const float* bias, float* y, int64_t ldy);
bool cpu_has_avx512_bf16();

// B operands [k, n] (a frozen weight) packed once into the blocked layout oneDNN's matmul reads
// without copying (its kernels copy a plain B into that layout inside every product). f32 or bf16.
// packed_b_bytes is 0 where oneDNN has no such kernel for (k, n, dtype) here: nothing to gain.
size_t packed_b_bytes(int64_t k, int64_t n, DType dtype);
// b [k, n] (a unit stride in one dim) into dst (packed_b_bytes(b.rows, b.cols, b.dtype) bytes).
void pack_b(const MatrixRef& b, void* dst);
// c [m, n] (= or +=) alpha · a [m, k] · B (+ bias [n]), B packed by pack_b with dtype b_dtype, k =
// a.cols, n = c.cols; a must have b's dtype.
void gemm_packed_b(const MatrixRef& a, const void* b, DType b_dtype, const MutableMatrixRef& c,
                   const float* bias, float alpha, bool accumulate);

// Whether oneDNN runs bf16 matmul with an optimised kernel here (AVX-512 BF16 / AMX), and the name
// of the implementation it picks for f32 (for benchmark tables).
bool onednn_has_fast_bf16();
std::string onednn_f32_implementation();

// A per-thread, grow-only f32 buffer, `slot` 0..kScratchSlots-1 (reused across calls: no page
// faults per op). Slots 0-2 belong to gemm_any; linear_forward's GEMV path uses 2 and 3; row
// kernels use 0..5 for their own rows (never while a GEMM of the same thread is running).
constexpr int kScratchSlots = 8;
float* scratch_f32(int slot, size_t count);

}  // namespace seqit::tensor::detail

// Internal to src/tensor/ (not for other modules): helpers shared by the CPU kernels.
#pragma once

#include <cpuid.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/cpu_math.h"
#include "tensor/tensor.h"
#include "tensor/threading.h"

namespace seqit::tensor::detail {

// Applies num_threads() to the calling thread's OpenMP ICV (see threading.cpp).
void apply_threads();

// CPU features that __builtin_cpu_supports cannot name under every compiler seqit is built with
// (clang before 16 lacks "f16c" and "amx-bf16"; the fuzz build uses clang 14): read from CPUID.
inline bool cpu_has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
}
inline bool cpu_has_amx_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 22)) != 0;
}

// Work below this many elements runs on one thread: a parallel region costs more than it saves.
// 256K elements is ~0.1-0.5 ms of one core's element-wise work. A parallel region costs a few
// microseconds on idle cores, but on a machine shared with other processes each one can wait a
// scheduler slice for its second thread: at the former 32K, a small model (stories260K, dim 64,
// 4x256-token batches, every op 65K-350K elements) trained at 6.7K tokens/s on 2 threads against
// 16.8K with every op on one.
constexpr int64_t kParallelThreshold = 1 << 18;

// Throws seqit::Error("<op>: <what>") — the op name leads every message so the user knows which
// call.
[[noreturn]] void fail(const char* op, const std::string& what);
// Checks, each naming the op and the argument on failure.
void check_defined(const char* op, const char* arg, const Tensor& t);
void check_dtype(const char* op, const char* arg, const Tensor& t, DType want);
void check_float(const char* op, const char* arg, const Tensor& t);
void check_shape(const char* op, const char* arg, const Tensor& t, const Shape& want);
void check_dim(const char* op, const char* arg, const Tensor& t, int dims);
void check_cpu(const char* op, const char* arg, const Tensor& t);
// Row-major contiguous, or at least a unit stride on the last dim with any row stride (2-D views).
void check_contiguous(const char* op, const char* arg, const Tensor& t);
void check_last_dim_unit_stride(const char* op, const char* arg, const Tensor& t);

// LoRA dropout over one row of n values, serial (call from inside parallel regions):
// dst[i] = (accumulate ? dst[i] : 0) + (kept ? src[i] · keep_scale : 0), where value i is dropped
// when the high 32 bits of mix64(seed ^ mix64(first + i)) are below threshold (mix64: splitmix64's
// finaliser, a pure function of the index, so a backward recomputes the forward's mask). src may be
// dst. Hashes 16 values per step with AVX-512 where the CPU has AVX512DQ, else one at a time: the
// same bits. `vector` false forces the scalar loop (tests).
void dropout_row(const float* src, float* dst, int64_t n, uint64_t seed, uint64_t first,
                 uint32_t threshold, float keep_scale, bool accumulate, bool vector = true);

// Whether attention_forward/backward run bf16 q, k, v (head dim a multiple of 16) on the bf16 tile
// path here: an AVX-512 build on a CPU with AVX512_BF16.
bool attention_has_bf16_tiles();

// The bf16 <-> f32 bulk conversions on one instruction set: the ops use the best the CPU has
// (AVX-512 with AVX512_BF16's vcvtneps2bf16, 16 values per instruction; else AVX2; else scalar),
// tests run every one the CPU has. All give the bits of the scalar f32_to_bf16 / bf16_to_f32.
enum class ConvertIsa { scalar, avx2, avx512 };
std::vector<ConvertIsa> available_convert_isas();
void f32_to_bf16_on(ConvertIsa isa, const float* src, bf16* dst, size_t n);
void bf16_to_f32_on(ConvertIsa isa, const bf16* src, float* dst, size_t n);

// Serial (call from inside parallel regions) conversions of n contiguous elements to/from f32.
// load_f32 returns src itself when it already holds f32, else converts into `buffer`.
// f32 takes the inline path; 16-bit types the converting ones.
const float* load_f32_converted(const void* src, DType dtype, float* buffer, int64_t n);
void store_f32_converted(const float* src, void* dst, DType dtype, int64_t n);
inline const float* load_f32(const void* src, DType dtype, float* buffer, int64_t n) {
  if (dtype == DType::f32) return static_cast<const float*>(src);
  return load_f32_converted(src, dtype, buffer, n);
}
inline void store_f32(const float* src, void* dst, DType dtype, int64_t n) {
  if (dtype != DType::f32) return store_f32_converted(src, dst, dtype, n);
  if (src != dst) copy_f32(static_cast<float*>(dst), src, n);
}

// A 2-D [rows, cols] view of a float tensor (leading dims folded), unit stride in cols.
struct RowsRef {
  std::byte* base = nullptr;
  int64_t rows = 0, cols = 0;
  int64_t row_stride = 0;  // elements
  DType dtype = DType::f32;
  void* row(int64_t r) const {
    return base + r * row_stride * static_cast<int64_t>(dtype_size(dtype));
  }
};
// Folds `t` to rows (throws naming op/arg when the layout does not fold). `mutate` checks
// writability.
RowsRef rows_of(const char* op, const char* arg, const Tensor& t, bool mutate);

}  // namespace seqit::tensor::detail

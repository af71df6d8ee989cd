// Internal to src/tensor/ (not for other modules): helpers shared by the CPU kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace seqit::tensor::detail {

// Applies num_threads() to the calling thread's OpenMP ICV (see threading.cpp).
void apply_threads();

// Work below this many elements runs on one thread: a parallel region costs more than it saves.
constexpr int64_t kParallelThreshold = 1 << 15;

// Throws seqit::Error("<op>: <what>") — the op name leads every message so the user knows which call.
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

}  // namespace seqit::tensor::detail

// CPU linear / matmul ops: shape checks, then the GEMM (oneDNN) or GEMV (own kernels) routines.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "tensor/cpu_backend.h"
#include "tensor/cpu_gemm.h"
#include "tensor/cpu_internal.h"

namespace seqit::tensor::detail {

std::shared_ptr<Storage> CpuBackend::allocate(size_t nbytes) {
  return Storage::allocate(nbytes, Device::cpu);
}

namespace {

MatrixRef matrix(const RowsRef& r) {
  return MatrixRef{r.base, r.dtype, r.rows, r.cols, r.row_stride, 1, 0};
}
MatrixRef transposed(const MatrixRef& m) {
  return MatrixRef{m.data, m.dtype, m.cols, m.rows, m.col_stride, m.row_stride, m.batch_stride};
}

// Bias as f32 (converted into `holder` when it is 16-bit), or null.
const float* bias_f32(const char* op, const Tensor& bias, int64_t n, std::vector<float>& holder) {
  if (!bias.defined()) return nullptr;
  check_float(op, "bias", bias);
  if (bias.dim() != 1 || bias.size(0) != n) {
    fail(op, "bias must be [" + std::to_string(n) + "], got " + bias.describe());
  }
  const Tensor c = bias.contiguous();
  if (c.dtype() == DType::f32) {
    if (c.shares_storage(bias)) return c.data<float>();
  }
  holder = to_float_vector(c);
  return holder.data();
}

// Few-row products run on f32 rows: 16-bit activations are converted up front (scratch slot 3) and
// a 16-bit output is computed in f32 scratch (slot 2), then stored by store_output.
std::pair<const float*, int64_t> f32_input(const RowsRef& X, int64_t in) {
  if (X.dtype == DType::f32) return {reinterpret_cast<const float*>(X.base), X.row_stride};
  float* buffer = scratch_f32(3, static_cast<size_t>(X.rows * in));
  for (int64_t r = 0; r < X.rows; ++r) load_f32(X.row(r), X.dtype, buffer + r * in, in);
  return {buffer, in};
}
std::pair<float*, int64_t> f32_output(const RowsRef& Y, int64_t out) {
  if (Y.dtype == DType::f32) return {reinterpret_cast<float*>(Y.base), Y.row_stride};
  return {scratch_f32(2, static_cast<size_t>(Y.rows * out)), out};
}
void store_output(const RowsRef& Y, const float* yf, int64_t out) {
  if (Y.dtype == DType::f32) return;
  for (int64_t r = 0; r < Y.rows; ++r) store_f32(yf + r * out, Y.row(r), Y.dtype, out);
}

void check_weight(const char* op, const Tensor& w) {
  check_float(op, "w", w);
  check_cpu(op, "w", w);
  check_dim(op, "w", w, 2);
  if (w.size(1) > 1 && w.stride(1) != 1)
    fail(op, "w must have a unit stride in its last dim, got " + w.describe());
}

}  // namespace

void CpuBackend::linear_forward(const Tensor& y, const Tensor& x, const Tensor& w,
                                const Tensor& bias) {
  const char* op = "linear_forward";
  check_weight(op, w);
  const int64_t out = w.size(0), in = w.size(1);
  const RowsRef X = rows_of(op, "x", x, false);
  const RowsRef Y = rows_of(op, "y", y, true);
  if (X.cols != in) fail(op, "x " + x.describe() + " does not match w " + w.describe());
  if (Y.cols != out || Y.rows != X.rows) {
    fail(op, "y " + y.describe() + " must be [" + std::to_string(X.rows) + ", " +
                 std::to_string(out) + "]");
  }
  std::vector<float> bias_holder;
  const float* b = bias_f32(op, bias, out, bias_holder);
  const int64_t n = X.rows;
  if (n == 0) return;
  const int64_t ldw = out > 1 ? w.stride(0) : in;
  if (n <= kGemvMaxRows) {
    // Decoding: stream the weights once. Activations are tiny; convert them to f32 up front.
    const auto [xf, ldx] = f32_input(X, in);
    const auto [yf, ldy] = f32_output(Y, out);
    gemv(n, in, out, xf, ldx, w.raw_data(), w.dtype(), ldw, b, yf, ldy);
    store_output(Y, yf, out);
    return;
  }
  const MatrixRef wt{w.raw_data(), w.dtype(), in, out, 1, ldw, 0};  // wᵀ [in, out]
  gemm_any(1, matrix(X), wt, MutableMatrixRef{Y.base, Y.dtype, n, out, Y.row_stride, 1, 0}, b, 1.0f,
           false);
}

GemmWeight CpuBackend::pack_gemm_weight(const Tensor& w, GemmUse use) {
  const char* op = "pack_gemm_weight";
  check_weight(op, w);
  if (w.dtype() != DType::f32 && w.dtype() != DType::bf16)
    fail(op, "w must be f32 or bf16, got " + w.describe());
  const int64_t out = w.size(0), in = w.size(1), ldw = out > 1 ? w.stride(0) : in;
  const bool forward = use == GemmUse::forward;
  // forward: B = wᵀ [in, out]; input gradient: B = w [out, in]
  const MatrixRef b = forward ? MatrixRef{w.raw_data(), w.dtype(), in, out, 1, ldw, 0}
                              : MatrixRef{w.raw_data(), w.dtype(), out, in, ldw, 1, 0};
  const size_t bytes = packed_b_bytes(b.rows, b.cols, w.dtype());
  if (bytes == 0) return {};
  GemmWeight packed;
  const size_t es = dtype_size(w.dtype());
  packed.data = Tensor::empty({static_cast<int64_t>((bytes + es - 1) / es)}, w.dtype());
  packed.k = b.rows, packed.n = b.cols, packed.use = use;
  pack_b(b, const_cast<void*>(packed.data.raw_data()));
  return packed;
}

void CpuBackend::gemm_weight_product(const Tensor& c, const Tensor& a, const GemmWeight& w,
                                     const Tensor& bias, bool accumulate) {
  const char* op = w.use == GemmUse::forward ? "linear_forward" : "linear_backward_input";
  check_cpu(op, "packed weight", w.data);
  const RowsRef A = rows_of(op, w.use == GemmUse::forward ? "x" : "dy", a, false);
  const RowsRef C = rows_of(op, w.use == GemmUse::forward ? "y" : "dx", c, true);
  if (A.cols != w.k || C.cols != w.n || C.rows != A.rows) {
    fail(op, "operands " + a.describe() + " -> " + c.describe() + " do not match the packed [" +
                 std::to_string(w.k) + " -> " + std::to_string(w.n) + "] weight");
  }
  if (A.dtype != w.dtype())
    fail(op, a.describe() + " must have the packed weight's dtype " +
                 std::string(dtype_name(w.dtype())));
  std::vector<float> bias_holder;
  const float* b = bias_f32(op, bias, w.n, bias_holder);
  gemm_packed_b(matrix(A), w.data.raw_data(), w.dtype(),
                MutableMatrixRef{C.base, C.dtype, C.rows, C.cols, C.row_stride, 1, 0}, b, 1.0f,
                accumulate);
}

static_assert(kPanel == kPackedPanel, "ops.h and cpu_gemm.h agree on the panel width");

namespace {
void check_panels(const char* op, const Tensor& panels, int64_t out) {
  check_float(op, "panels", panels);
  check_cpu(op, "panels", panels);
  check_dim(op, "panels", panels, 3);
  check_contiguous(op, "panels", panels);
  if (panels.size(2) != kPanel || panels.size(0) != panel_count(out))
    fail(op,
         "panels " + panels.describe() + " do not hold " + std::to_string(out) + " output rows");
}
}  // namespace

void CpuBackend::pack_weight(const Tensor& panels, const Tensor& w) {
  const char* op = "pack_weight";
  check_weight(op, w);
  const int64_t out = w.size(0), in = w.size(1);
  check_panels(op, panels, out);
  check_dtype(op, "panels", panels, w.dtype());
  if (panels.size(1) != in)
    fail(op, "panels " + panels.describe() + " do not match w " + w.describe());
  pack_panels(w.raw_data(), w.dtype(), out, in, out > 1 ? w.stride(0) : in,
              const_cast<void*>(panels.raw_data()));
}

void CpuBackend::unpack_weight(const Tensor& w, const Tensor& panels) {
  const char* op = "unpack_weight";
  check_dim(op, "w", w, 2);
  check_contiguous(op, "w", w);
  check_panels(op, panels, w.size(0));
  check_dtype(op, "w", w, panels.dtype());
  if (panels.size(1) != w.size(1)) fail(op, "w " + w.describe() + " does not match the panels");
  unpack_panels(panels.raw_data(), panels.dtype(), w.size(1), 0, w.size(0),
                const_cast<void*>(w.raw_data()));
}

namespace {

std::atomic<int> g_bf16_activations{-1};  // -1: not read from the environment yet

Bf16Activations initial_bf16_activations() {
  const char* env = std::getenv("SEQIT_BF16_ACTIVATIONS");
  const std::string v = env ? env : "";
  if (v.empty() || v == "auto") return Bf16Activations::kAuto;
  if (v == "f32") return Bf16Activations::kF32;
  if (v == "bf16") return Bf16Activations::kBf16;
  throw Error("SEQIT_BF16_ACTIVATIONS must be auto, f32 or bf16, got '" + v + "'");
}

// x rows (f32 or bf16) rounded to bf16, contiguous [rows, in], in scratch slot `slot`.
const bf16* bf16_rows(const RowsRef& X, int64_t in, int slot) {
  auto* dst = reinterpret_cast<bf16*>(scratch_f32(slot, static_cast<size_t>(X.rows * in + 1) / 2));
  apply_threads();
#pragma omp parallel for schedule(static) if (X.rows * in >= kParallelThreshold)
  for (int64_t r = 0; r < X.rows; ++r) {
    if (X.dtype == DType::bf16)
      std::memcpy(dst + r * in, X.row(r), static_cast<size_t>(in) * sizeof(bf16));
    else if (X.dtype == DType::f32)
      convert_f32_to_bf16(static_cast<const float*>(X.row(r)), dst + r * in,
                          static_cast<size_t>(in));
    else {
      std::vector<float> buffer(static_cast<size_t>(in));
      convert_f32_to_bf16(load_f32(X.row(r), X.dtype, buffer.data(), in), dst + r * in,
                          static_cast<size_t>(in));
    }
  }
  return dst;
}

// linear_forward with packed bf16 weights and activations rounded to bf16 (see ops.h).
void packed_bf16_activations(const RowsRef& X, const RowsRef& Y, const void* panels, int64_t in,
                             int64_t out, const float* b) {
  const int64_t n = X.rows;
  const auto [yf, ldy] = f32_output(Y, out);
  if (n <= kPackedMaxRows) {
    if (cpu_has_avx512_bf16() && in % 2 == 0 && (X.dtype == DType::f32 || X.dtype == DType::bf16)) {
      packed_gemv_bf16(n, in, out, X.base, X.dtype, X.row_stride, panels, b, yf, ldy);
    } else {
      // The same rounding through the f32 kernel (CPUs without bf16 dot products).
      const bf16* x16 = bf16_rows(X, in, 5);
      float* xf = scratch_f32(3, static_cast<size_t>(n * in));
      convert_bf16_to_f32(x16, xf, static_cast<size_t>(n * in));
      packed_gemv(n, in, out, xf, in, panels, DType::bf16, b, yf, ldy);
    }
  } else {
    // Prefill: x rounded once; blocks of whole panels unpacked to bf16 rows, each block one bf16
    // GEMM (oneDNN's native kernel where the CPU has one, else gemm_any's f32 conversion).
    const bf16* x16 = bf16_rows(X, in, 3);
    const int64_t block = std::min(out, 32 * kPanel);
    auto* wblock = reinterpret_cast<bf16*>(scratch_f32(4, static_cast<size_t>(block * in + 1) / 2));
    for (int64_t o0 = 0; o0 < out; o0 += block) {
      const int64_t rows = std::min(block, out - o0);
      unpack_panels(panels, DType::bf16, in, o0, o0 + rows, wblock);
      gemm_any(1, MatrixRef{x16, DType::bf16, n, in, in, 1, 0},
               MatrixRef{wblock, DType::bf16, in, rows, 1, in, 0},
               MutableMatrixRef{yf + o0, DType::f32, n, rows, ldy, 1, 0}, b ? b + o0 : nullptr,
               1.0f, false);
    }
  }
  store_output(Y, yf, out);
}

}  // namespace

void CpuBackend::linear_forward_packed(const Tensor& y, const Tensor& x, const Tensor& panels,
                                       int64_t out, const Tensor& bias) {
  const char* op = "linear_forward";
  check_panels(op, panels, out);
  const int64_t in = panels.size(1);
  const RowsRef X = rows_of(op, "x", x, false);
  const RowsRef Y = rows_of(op, "y", y, true);
  if (X.cols != in) {
    fail(op, "x " + x.describe() + " does not match the packed weight [" + std::to_string(out) +
                 ", " + std::to_string(in) + "]");
  }
  if (Y.cols != out || Y.rows != X.rows) {
    fail(op, "y " + y.describe() + " must be [" + std::to_string(X.rows) + ", " +
                 std::to_string(out) + "]");
  }
  std::vector<float> bias_holder;
  const float* b = bias_f32(op, bias, out, bias_holder);
  const int64_t n = X.rows;
  if (n == 0) return;
  if (panels.dtype() == DType::bf16 && bf16_activations() == Bf16Activations::kBf16)
    return packed_bf16_activations(X, Y, panels.raw_data(), in, out, b);
  // Both paths want f32 activations in and out.
  const auto [xf, ldx] = f32_input(X, in);
  const auto [yf, ldy] = f32_output(Y, out);
  if (n <= kPackedMaxRows) {
    packed_gemv(n, in, out, xf, ldx, panels.raw_data(), panels.dtype(), b, yf, ldy);
  } else {
    // Prefill: blocks of whole panels unpacked to f32 rows (one pass over the block, small next
    // to the n·2 flops per weight), each block one cached oneDNN GEMM into its columns of y.
    const int64_t block = std::min(out, 32 * kPanel);
    float* wblock = scratch_f32(4, static_cast<size_t>(block * in));
    for (int64_t o0 = 0; o0 < out; o0 += block) {
      const int64_t rows = std::min(block, out - o0);
      unpack_panels_f32(panels.raw_data(), panels.dtype(), in, o0, o0 + rows, wblock);
      gemm_f32(1, MatrixRef{xf, DType::f32, n, in, ldx, 1, 0},
               MatrixRef{wblock, DType::f32, in, rows, 1, in, 0},
               MutableMatrixRef{yf + o0, DType::f32, n, rows, ldy, 1, 0}, b ? b + o0 : nullptr,
               1.0f, false);
    }
  }
  store_output(Y, yf, out);
}

void CpuBackend::linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dbias,
                                 const Tensor& dy, const Tensor& x, const Tensor& w) {
  const char* op = "linear_backward";
  check_weight(op, w);
  const int64_t out = w.size(0), in = w.size(1);
  const RowsRef dY = rows_of(op, "dy", dy, false);
  if (dY.cols != out) fail(op, "dy " + dy.describe() + " does not match w " + w.describe());
  const int64_t n = dY.rows;
  const int64_t ldw = out > 1 ? w.stride(0) : in;
  if (dx.defined()) {
    const RowsRef dX = rows_of(op, "dx", dx, true);
    if (dX.rows != n || dX.cols != in) fail(op, "dx " + dx.describe() + " does not match dy/w");
    const MatrixRef wm{w.raw_data(), w.dtype(), out, in, ldw, 1, 0};
    gemm_any(1, matrix(dY), wm, MutableMatrixRef{dX.base, dX.dtype, n, in, dX.row_stride, 1, 0},
             nullptr, 1.0f, true);
  }
  if (dw.defined()) {
    const RowsRef X = rows_of(op, "x", x, false);
    if (X.rows != n || X.cols != in) fail(op, "x " + x.describe() + " does not match dy/w");
    check_float(op, "dw", dw);
    check_shape(op, "dw", dw, {out, in});
    const RowsRef dW = rows_of(op, "dw", dw, true);
    gemm_any(1, transposed(matrix(dY)), matrix(X),
             MutableMatrixRef{dW.base, dW.dtype, out, in, dW.row_stride, 1, 0}, nullptr, 1.0f,
             true);
  }
  if (dbias.defined()) {
    check_dtype(op, "dbias", dbias, DType::f32);
    check_shape(op, "dbias", dbias, {out});
    check_contiguous(op, "dbias", dbias);
    float* db = dbias.mutable_data<float>();
    apply_threads();
    // Column ranges per thread; rows streamed in order (dy row-major).
#pragma omp parallel if (n * out > kParallelThreshold)
    {
      const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
      const int64_t c0 = out * id / threads, c1 = out * (id + 1) / threads;
      std::vector<float> row(static_cast<size_t>(c1 - c0));
      std::vector<double> sum(static_cast<size_t>(c1 - c0), 0.0);
      for (int64_t r = 0; r < n && c0 < c1; ++r) {
        const auto* base = static_cast<const std::byte*>(dY.row(r)) +
                           c0 * static_cast<int64_t>(dtype_size(dY.dtype));
        const float* v = load_f32(base, dY.dtype, row.data(), c1 - c0);
        for (int64_t c = 0; c < c1 - c0; ++c) sum[c] += v[c];
      }
      for (int64_t c = c0; c < c1; ++c) db[c] += static_cast<float>(sum[c - c0]);
    }
  }
}

void CpuBackend::matmul(const Tensor& c, const Tensor& a, const Tensor& b, float alpha,
                        bool accumulate) {
  const char* op = "matmul";
  check_float(op, "a", a);
  check_float(op, "b", b);
  check_float(op, "c", c);
  if (a.dim() < 2 || b.dim() != a.dim() || c.dim() != a.dim()) {
    fail(op, "a, b, c need the same number (>= 2) of dims: " + a.describe() + ", " + b.describe() +
                 ", " + c.describe());
  }
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  if (b.size(-2) != k || c.size(-2) != m || c.size(-1) != n) {
    fail(op, "shapes do not chain: a " + a.describe() + " · b " + b.describe() + " -> c " +
                 c.describe());
  }
  for (int d = 0; d + 2 < a.dim(); ++d) {
    if (a.size(d) != b.size(d) || a.size(d) != c.size(d)) fail(op, "batch dims differ");
  }
  if (!c.is_writable()) fail(op, "c is read-only");
  // Fold every batch dim into one (a view: throws if a layout cannot fold).
  auto fold = [&](const Tensor& t, const char* arg) {
    try {
      return t.dim() == 2 ? t.unsqueeze(0) : t.view({-1, t.size(-2), t.size(-1)});
    } catch (const Error&) {
      fail(op, std::string(arg) + " " + t.describe() + " has batch dims that do not fold");
    }
  };
  const Tensor a3 = fold(a, "a"), b3 = fold(b, "b"), c3 = fold(c, "c");
  const int64_t batch = a3.size(0);
  auto ref = [](const Tensor& t) {
    return MatrixRef{t.raw_data(), t.dtype(),   t.size(1),  t.size(2),
                     t.stride(1),  t.stride(2), t.stride(0)};
  };
  const MatrixRef cr = ref(c3);
  gemm_any(batch, ref(a3), ref(b3),
           MutableMatrixRef{const_cast<void*>(cr.data), cr.dtype, cr.rows, cr.cols, cr.row_stride,
                            cr.col_stride, cr.batch_stride},
           nullptr, alpha, accumulate);
}

}  // namespace seqit::tensor::detail

namespace seqit::tensor {

using detail::g_bf16_activations;

void set_bf16_activations(Bf16Activations mode) {
  g_bf16_activations.store(static_cast<int>(mode));
}

Bf16Activations bf16_activations() {
  int mode = g_bf16_activations.load();
  if (mode < 0) {
    mode = static_cast<int>(detail::initial_bf16_activations());
    int expected = -1;
    g_bf16_activations.compare_exchange_strong(expected, mode);
    mode = g_bf16_activations.load();
  }
  if (static_cast<Bf16Activations>(mode) != Bf16Activations::kAuto)
    return static_cast<Bf16Activations>(mode);
  static const bool native = detail::cpu_has_avx512_bf16() && detail::onednn_has_fast_bf16();
  return native ? Bf16Activations::kBf16 : Bf16Activations::kF32;
}

}  // namespace seqit::tensor

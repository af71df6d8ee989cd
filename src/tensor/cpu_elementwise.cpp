// CPU row-wise ops: embedding, RMSNorm, SwiGLU, residual adds, scaling, RoPE, sum of squares.
// Every kernel walks rows in parallel, loads a row to f32 (converting 16-bit rows), computes in f32
// (f64 where a reduction needs it) and stores once.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tensor/cpu_backend.h"
#include "tensor/cpu_gemm.h"
#include "tensor/cpu_internal.h"
#include "tensor/cpu_math.h"

namespace seqit::tensor::detail {

namespace {

void same_rows(const char* op, const char* what, const RowsRef& a, const RowsRef& b) {
  if (a.rows != b.rows || a.cols != b.cols) {
    fail(op, std::string(what) + ": [" + std::to_string(a.rows) + ", " + std::to_string(a.cols) +
                 "] vs [" + std::to_string(b.rows) + ", " + std::to_string(b.cols) + "]");
  }
}

const int32_t* ids_of(const char* op, const Tensor& ids, int64_t n) {
  check_dtype(op, "ids", ids, DType::i32);
  check_cpu(op, "ids", ids);
  check_contiguous(op, "ids", ids);
  if (ids.numel() != n)
    fail(op,
         "ids has " + std::to_string(ids.numel()) + " entries for " + std::to_string(n) + " rows");
  return ids.data<int32_t>();
}

void check_ids_in_range(const char* op, const int32_t* ids, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      fail(op, "ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                   " is outside the table [0, " + std::to_string(vocab) + ")");
    }
  }
}

// Row-parallel loop: body(r, thread_buffers) with `slots` f32 buffers of `cols` floats per thread.
template <typename F>
void for_rows(int64_t rows, int64_t cols, int slots, F&& body) {
  apply_threads();
  const bool parallel = rows > 1 && rows * cols >= kParallelThreshold;
#pragma omp parallel if (parallel)
  {
    float* buffers[4] = {nullptr, nullptr, nullptr, nullptr};
    for (int s = 0; s < slots; ++s)
      buffers[s] = scratch_f32(s, static_cast<size_t>(std::max<int64_t>(cols, 1)));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) body(r, buffers);
  }
}

}  // namespace

// ---- embedding
// -----------------------------------------------------------------------------------

void CpuBackend::embedding_forward(const Tensor& out, const Tensor& ids, const Tensor& table) {
  const char* op = "embedding_forward";
  const RowsRef O = rows_of(op, "out", out, true);
  check_dim(op, "table", table, 2);
  const RowsRef W = rows_of(op, "table", table, false);
  if (W.cols != O.cols)
    fail(op, "out " + out.describe() + " and table " + table.describe() + " differ in width");
  const int32_t* id = ids_of(op, ids, O.rows);
  check_ids_in_range(op, id, O.rows, W.rows);
  for_rows(O.rows, O.cols, 1, [&](int64_t r, float** buf) {
    const float* row = load_f32(W.row(id[r]), W.dtype, buf[0], W.cols);
    store_f32(row, O.row(r), O.dtype, O.cols);
  });
}

void CpuBackend::embedding_backward(const Tensor& dtable, const Tensor& dout, const Tensor& ids) {
  const char* op = "embedding_backward";
  check_dtype(op, "dtable", dtable, DType::f32);
  check_dim(op, "dtable", dtable, 2);
  const RowsRef dT = rows_of(op, "dtable", dtable, true);
  const RowsRef dO = rows_of(op, "dout", dout, false);
  if (dT.cols != dO.cols) fail(op, "dout and dtable differ in width");
  const int32_t* id = ids_of(op, ids, dO.rows);
  check_ids_in_range(op, id, dO.rows, dT.rows);
  // Repeated ids would race if rows were split across threads; split columns instead (each thread
  // owns a column range of every row): no atomics, and the sum order is fixed (deterministic).
  apply_threads();
  const int64_t cols = dT.cols;
#pragma omp parallel if (dO.rows * cols >= kParallelThreshold)
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t c0 = cols * t / threads, c1 = cols * (t + 1) / threads;
    float* buffer = scratch_f32(0, static_cast<size_t>(std::max<int64_t>(cols, 1)));
    const size_t es = dtype_size(dO.dtype);
    for (int64_t r = 0; r < dO.rows && c0 < c1; ++r) {
      const float* g = load_f32(static_cast<std::byte*>(dO.row(r)) + c0 * static_cast<int64_t>(es),
                                dO.dtype, buffer, c1 - c0);
      float* dst = static_cast<float*>(dT.row(id[r])) + c0;
      axpy(1.0f, g, dst, c1 - c0);
    }
  }
}

// ---- RMSNorm
// -------------------------------------------------------------------------------------

namespace {
const float* weight_f32(const char* op, const Tensor& weight, int64_t c,
                        std::vector<float>& holder) {
  check_float(op, "weight", weight);
  check_shape(op, "weight", weight, {c});
  if (weight.dtype() == DType::f32 && weight.is_contiguous()) return weight.data<float>();
  holder = to_float_vector(weight);
  return holder.data();
}
float* rstd_ptr(const char* op, const Tensor& rstd, int64_t rows) {
  if (!rstd.defined()) return nullptr;
  check_dtype(op, "rstd", rstd, DType::f32);
  check_contiguous(op, "rstd", rstd);
  if (rstd.numel() != rows)
    fail(op, "rstd must hold " + std::to_string(rows) + " values, got " + rstd.describe());
  return rstd.mutable_data<float>();
}
}  // namespace

void CpuBackend::rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& x,
                                 const Tensor& weight, float eps) {
  const char* op = "rmsnorm_forward";
  const RowsRef X = rows_of(op, "x", x, false);
  const RowsRef O = rows_of(op, "out", out, true);
  same_rows(op, "out and x differ", O, X);
  std::vector<float> wh;
  const float* w = weight_f32(op, weight, X.cols, wh);
  float* rs = rstd_ptr(op, rstd, X.rows);
  const int64_t c = X.cols;
  for_rows(X.rows, c, 2, [&](int64_t r, float** buf) {
    const float* xr = load_f32(X.row(r), X.dtype, buf[0], c);
    const float inv =
        static_cast<float>(1.0 / std::sqrt(sum_squares(xr, c) / static_cast<double>(c) + eps));
    // f32 out: written directly (a copy from a buffer would wait on its just-written values).
    float* y = O.dtype == DType::f32 ? static_cast<float*>(O.row(r)) : buf[1];
    for (int64_t i = 0; i < c; ++i) y[i] = xr[i] * inv * w[i];
    if (y == buf[1]) store_f32(y, O.row(r), O.dtype, c);
    if (rs) rs[r] = inv;
  });
}

void CpuBackend::rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dout,
                                  const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  const char* op = "rmsnorm_backward";
  const RowsRef X = rows_of(op, "x", x, false);
  const RowsRef dO = rows_of(op, "dout", dout, false);
  same_rows(op, "dout and x differ", dO, X);
  check_defined(op, "rstd", rstd);
  const float* rs = rstd_ptr(op, rstd, X.rows);
  std::vector<float> wh;
  const float* w = weight_f32(op, weight, X.cols, wh);
  RowsRef dX;
  if (dx.defined()) {
    dX = rows_of(op, "dx", dx, true);
    same_rows(op, "dx and x differ", dX, X);
  }
  float* dw = nullptr;
  if (dweight.defined()) {
    check_dtype(op, "dweight", dweight, DType::f32);
    check_shape(op, "dweight", dweight, {X.cols});
    check_contiguous(op, "dweight", dweight);
    dw = dweight.mutable_data<float>();
  }
  const int64_t c = X.cols, rows = X.rows;
  apply_threads();
  const int threads = rows * c >= kParallelThreshold ? num_threads() : 1;
  // Per-thread partial dweight in f64, summed in thread order afterwards (deterministic).
  std::vector<double> partial(dw ? static_cast<size_t>(threads * c) : 0, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    float* b0 = scratch_f32(0, static_cast<size_t>(c));
    float* b1 = scratch_f32(1, static_cast<size_t>(c));
    float* b2 = scratch_f32(2, static_cast<size_t>(c));
    double* pw = dw ? partial.data() + t * c : nullptr;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = load_f32(X.row(r), X.dtype, b0, c);
      const float* g = load_f32(dO.row(r), dO.dtype, b1, c);
      const float inv = rs[r];
      if (pw) {
        for (int64_t i = 0; i < c; ++i) pw[i] += static_cast<double>(g[i]) * xr[i] * inv;
      }
      if (dX.base) {
        // y = x·inv·w;  dx = inv·(g·w) - x·inv³/C · Σ(g·w·x)
        const double dot_gwx = dot3(g, w, xr, c);
        const float k = static_cast<float>(dot_gwx * inv * inv * inv / static_cast<double>(c));
        // f32 dx accumulates in place; a 16-bit one through the buffer.
        float* d = dX.dtype == DType::f32 ? static_cast<float*>(dX.row(r)) : b2;
        if (d == b2) load_f32(dX.row(r), dX.dtype, b2, c);
        for (int64_t i = 0; i < c; ++i) d[i] += inv * g[i] * w[i] - k * xr[i];
        if (d == b2) store_f32(d, dX.row(r), dX.dtype, c);
      }
    }
  }
  if (dw) {
    for (int t = 0; t < threads; ++t)
      for (int64_t i = 0; i < c; ++i) dw[i] += static_cast<float>(partial[t * c + i]);
  }
}

// ---- SwiGLU
// --------------------------------------------------------------------------------------

namespace {
// sig = σ(g) for a row (SwiGLU needs σ itself: silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 -
// σ(g)))).
void sigmoid_row(const float* g, float* sig, int64_t n) {
  int64_t i = 0;
#ifdef SEQIT_AVX2
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  // σ(g) = 1 / (1 + e^-g); 0 where e^-g overflows (exp8 saturates there: exp_scalar's infinity).
  const __m256 low = _mm256_set1_ps(-kExpHigh);
  auto sigmoid8 = [&](__m256 gv) {
    const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_xor_ps(gv, sign))));
    return _mm256_andnot_ps(_mm256_cmp_ps(gv, low, _CMP_LT_OQ), s);
  };
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(sig + i, sigmoid8(_mm256_loadu_ps(g + i)));
  if (i < n) {  // the last 1-7 values through masked loads and stores (not 1-7 scalar exp calls)
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)), lanes);
    _mm256_maskstore_ps(sig + i, mask, sigmoid8(_mm256_maskload_ps(g + i, mask)));
    i = n;
  }
#endif
  for (; i < n; ++i) sig[i] = sigmoid_scalar(g[i]);
}
}  // namespace

void CpuBackend::swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu_forward";
  const RowsRef G = rows_of(op, "gate", gate, false);
  const RowsRef U = rows_of(op, "up", up, false);
  const RowsRef O = rows_of(op, "out", out, true);
  same_rows(op, "gate and up differ", G, U);
  same_rows(op, "out and gate differ", O, G);
  const int64_t c = G.cols;
  for_rows(G.rows, c, 3, [&](int64_t r, float** buf) {
    const float* g = load_f32(G.row(r), G.dtype, buf[0], c);
    const float* u = load_f32(U.row(r), U.dtype, buf[1], c);
    // f32 out that is neither input: written directly, else through a buffer.
    void* o = O.row(r);
    float* y =
        O.dtype == DType::f32 && o != G.row(r) && o != U.row(r) ? static_cast<float*>(o) : buf[2];
    sigmoid_row(g, y, c);
    for (int64_t i = 0; i < c; ++i) y[i] = g[i] * y[i] * u[i];
    if (y == buf[2]) store_f32(y, o, O.dtype, c);
  });
}

void CpuBackend::swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                                 const Tensor& gate, const Tensor& up) {
  const char* op = "swiglu_backward";
  const RowsRef G = rows_of(op, "gate", gate, false);
  const RowsRef U = rows_of(op, "up", up, false);
  const RowsRef dO = rows_of(op, "dout", dout, false);
  same_rows(op, "gate and up differ", G, U);
  same_rows(op, "dout and gate differ", dO, G);
  RowsRef dG, dU;
  if (dgate.defined()) {
    dG = rows_of(op, "dgate", dgate, true);
    same_rows(op, "dgate and gate differ", dG, G);
  }
  if (dup.defined()) {
    dU = rows_of(op, "dup", dup, true);
    same_rows(op, "dup and up differ", dU, U);
  }
  // dgate/dup written over gate/up themselves (the inputs are consumed): each row's inputs are
  // copied before its gradients are stored, which are then written, not accumulated.
  auto same = [](const RowsRef& a, const RowsRef& b) {
    return a.base == b.base && a.row_stride == b.row_stride && a.dtype == b.dtype;
  };
  const bool in_place = dG.base && dU.base && same(dG, G) && same(dU, U);
  if (!in_place && ((dG.base && same(dG, G)) || (dU.base && same(dU, U)) ||
                    (dG.base && same(dG, U)) || (dU.base && same(dU, G)))) {
    fail(op, "dgate and dup may overwrite gate and up only both at once");
  }
  const int64_t c = G.cols;
  apply_threads();
#pragma omp parallel if (G.rows * c >= kParallelThreshold)
  {
    float* bg = scratch_f32(0, static_cast<size_t>(c));
    float* bu = scratch_f32(1, static_cast<size_t>(c));
    float* bd = scratch_f32(2, static_cast<size_t>(c));
    float* bs = scratch_f32(3, static_cast<size_t>(c));
    float* bgrad = scratch_f32(4, static_cast<size_t>(c));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < G.rows; ++r) {
      const float* g = load_f32(G.row(r), G.dtype, bg, c);
      const float* u = load_f32(U.row(r), U.dtype, bu, c);
      const float* d = load_f32(dO.row(r), dO.dtype, bd, c);
      sigmoid_row(g, bs, c);
      if (in_place) {
        if (g != bg) copy_f32(bg, g, c), g = bg;
        if (u != bu) copy_f32(bu, u, c), u = bu;
        for (int64_t i = 0; i < c; ++i) bgrad[i] = d[i] * g[i] * bs[i];
        store_f32(bgrad, dU.row(r), dU.dtype, c);  // dup = dout · silu(g)
        for (int64_t i = 0; i < c; ++i)
          bgrad[i] = d[i] * u[i] * bs[i] * (1.0f + g[i] * (1.0f - bs[i]));
        store_f32(bgrad, dG.row(r), dG.dtype, c);  // dgate = dout · up · silu'(g)
        continue;
      }
      if (dU.base) {
        // dup += dout · silu(g)
        float* acc = dU.dtype == DType::f32 ? static_cast<float*>(dU.row(r)) : bgrad;
        if (acc == bgrad) load_f32(dU.row(r), dU.dtype, bgrad, c);
        for (int64_t i = 0; i < c; ++i) acc[i] += d[i] * g[i] * bs[i];
        if (acc == bgrad) store_f32(bgrad, dU.row(r), dU.dtype, c);
      }
      if (dG.base) {
        // dgate += dout · up · silu'(g),  silu'(g) = σ(g)·(1 + g·(1 - σ(g)))
        float* acc = dG.dtype == DType::f32 ? static_cast<float*>(dG.row(r)) : bgrad;
        if (acc == bgrad) load_f32(dG.row(r), dG.dtype, bgrad, c);
        for (int64_t i = 0; i < c; ++i)
          acc[i] += d[i] * u[i] * bs[i] * (1.0f + g[i] * (1.0f - bs[i]));
        if (acc == bgrad) store_f32(bgrad, dG.row(r), dG.dtype, c);
      }
    }
  }
}

// ---- residuals and scaling
// -----------------------------------------------------------------------

void CpuBackend::add(const Tensor& out, const Tensor& a, const Tensor& b) {
  const char* op = "add";
  const RowsRef A = rows_of(op, "a", a, false);
  const RowsRef B = rows_of(op, "b", b, false);
  const RowsRef O = rows_of(op, "out", out, true);
  same_rows(op, "a and b differ", A, B);
  same_rows(op, "out and a differ", O, A);
  const int64_t c = A.cols;
  for_rows(A.rows, c, 3, [&](int64_t r, float** buf) {
    const float* x = load_f32(A.row(r), A.dtype, buf[0], c);
    const float* y = load_f32(B.row(r), B.dtype, buf[1], c);
    float* z = buf[2];
    for (int64_t i = 0; i < c; ++i) z[i] = x[i] + y[i];
    store_f32(z, O.row(r), O.dtype, c);
  });
}

void CpuBackend::add_inplace(const Tensor& acc, const Tensor& x, float alpha) {
  const char* op = "add_inplace";
  const RowsRef A = rows_of(op, "acc", acc, true);
  const RowsRef X = rows_of(op, "x", x, false);
  same_rows(op, "acc and x differ", A, X);
  const int64_t c = A.cols;
  for_rows(A.rows, c, 2, [&](int64_t r, float** buf) {
    const float* xr = load_f32(X.row(r), X.dtype, buf[0], c);
    if (A.dtype == DType::f32) {
      axpy(alpha, xr, static_cast<float*>(A.row(r)), c);
      return;
    }
    float* a = buf[1];
    load_f32(A.row(r), A.dtype, a, c);
    axpy(alpha, xr, a, c);
    store_f32(a, A.row(r), A.dtype, c);
  });
}

void CpuBackend::scale_inplace(const Tensor& x, float alpha) {
  const char* op = "scale_inplace";
  const RowsRef X = rows_of(op, "x", x, true);
  const int64_t c = X.cols;
  for_rows(X.rows, c, 1, [&](int64_t r, float** buf) {
    if (X.dtype == DType::f32) return scale(static_cast<float*>(X.row(r)), alpha, c);
    float* v = buf[0];
    load_f32(X.row(r), X.dtype, v, c);
    scale(v, alpha, c);
    store_f32(v, X.row(r), X.dtype, c);
  });
}

double CpuBackend::sum_of_squares(const Tensor& x) {
  const char* op = "sum_of_squares";
  const Tensor c = x.contiguous();
  const RowsRef X = rows_of(op, "x", c, false);
  const int64_t total = X.rows * X.cols;
  if (total == 0) return 0.0;
  // Treat the contiguous data as one flat array split evenly over threads.
  const std::byte* base = X.base;
  const size_t es = dtype_size(X.dtype);
  // On-demand storage (an embedding's gradient): unwritten pages are zeros; skipping them keeps
  // the read from taking memory for them (and gives the same sum: their squares add nothing).
  // Other storage counts as written throughout.
  const Storage::WrittenPages written = c.storage()->written_pages();
  apply_threads();
  const int threads = total >= kParallelThreshold ? num_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(threads), 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t b = total * t / nt, e = total * (t + 1) / nt;
    constexpr int64_t kChunk = 4096;
    float* buffer = scratch_f32(0, kChunk);
    auto* raw = reinterpret_cast<std::byte*>(scratch_f32(1, kChunk));
    double s = 0;
    for (int64_t i = b; i < e; i += kChunk) {
      const int64_t n = std::min(kChunk, e - i);
      const std::byte* src = base + i * static_cast<int64_t>(es);
      if (!(src = written.read(src, static_cast<size_t>(n) * es, raw))) continue;  // all zeros
      s += sum_squares(load_f32(src, X.dtype, buffer, n), n);
    }
    partial[static_cast<size_t>(t)] = s;
  }
  double sum = 0;
  for (double p : partial) sum += p;
  return sum;
}

// ---- RoPE
// ----------------------------------------------------------------------------------------

void CpuBackend::rope_forward(const Tensor& out, const Tensor& x, const Tensor& positions,
                              const RopeConfig& config, bool inverse) {
  const char* op = inverse ? "rope_backward" : "rope_forward";
  check_float(op, "x", x);
  check_float(op, "out", out);
  if (x.shape() != out.shape())
    fail(op, "out " + out.describe() + " and x " + x.describe() + " differ");
  if (x.dim() < 2) fail(op, "x must be [..., heads, head_dim], got " + x.describe());
  const int64_t heads = x.size(-2), d = x.size(-1);
  if (d != config.head_dim) {
    fail(op, "x head_dim " + std::to_string(d) + " != config head_dim " +
                 std::to_string(config.head_dim));
  }
  const std::vector<double> inv_freq = rope_inverse_frequencies(config);
  const int64_t half = static_cast<int64_t>(inv_freq.size());  // rotary_dim / 2
  check_dtype(op, "positions", positions, DType::i32);
  check_contiguous(op, "positions", positions);
  Tensor xv, ov;
  try {
    xv = x.view({-1, heads, d});
    ov = out.view({-1, heads, d});
  } catch (const Error&) {
    fail(op, "x/out leading dims must fold into tokens: " + x.describe());
  }
  const int64_t tokens = xv.size(0);
  if (positions.numel() != tokens) {
    fail(op, "positions has " + std::to_string(positions.numel()) + " entries for " +
                 std::to_string(tokens) + " tokens");
  }
  for (const Tensor* t : {&xv, &ov}) {
    if (d > 1 && t->stride(2) != 1)
      fail(op, "head_dim must have a unit stride, got " + t->describe());
  }
  if (!out.is_writable()) fail(op, "out is read-only");
  const int32_t* pos = positions.data<int32_t>();
  const auto* xbase = static_cast<const std::byte*>(static_cast<const Tensor&>(xv).raw_data());
  auto* obase =
      static_cast<std::byte*>(const_cast<void*>(static_cast<const Tensor&>(ov).raw_data()));
  const int64_t xs0 = xv.stride(0), xs1 = xv.stride(1), os0 = ov.stride(0), os1 = ov.stride(1);
  const size_t xes = x.element_size(), oes = out.element_size();
  const bool interleaved = config.layout == RopeLayout::interleaved;
  const float sign = inverse ? -1.0f : 1.0f;
  auto angles = [&](int32_t position, float* cs, float* sn) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(position) * inv_freq[static_cast<size_t>(i)];
      cs[i] = static_cast<float>(std::cos(angle));
      sn[i] = sign * static_cast<float>(std::sin(angle));
    }
  };
  // A batch repeats its positions (every row counts from 0): when they span no more values than
  // there are tokens, cos and sin are computed once per position into a table (the same values).
  int32_t first = 0, last = -1;
  if (tokens > 0) first = last = pos[0];
  for (int64_t t = 1; t < tokens; ++t)
    first = std::min(first, pos[t]), last = std::max(last, pos[t]);
  const int64_t span = int64_t(last) - first + 1;
  std::vector<float> table;
  if (tokens > 1 && span <= tokens) {
    table.resize(static_cast<size_t>(span * 2 * half));
    apply_threads();
#pragma omp parallel for if (span * half >= 4096)
    for (int64_t p = 0; p < span; ++p) {
      float* row = table.data() + p * 2 * half;
      angles(static_cast<int32_t>(first + p), row, row + half);
    }
  }
  for_rows(tokens, heads * d, 3, [&](int64_t t, float** buf) {
    const float* cs = buf[0];  // cos[half] then sin[half]
    const float* sn = buf[0] + half;
    if (table.empty()) {
      angles(pos[t], buf[0], buf[0] + half);
    } else {
      cs = table.data() + (pos[t] - first) * 2 * half;
      sn = cs + half;
    }
    for (int64_t h = 0; h < heads; ++h) {
      const float* v =
          load_f32(xbase + (t * xs0 + h * xs1) * static_cast<int64_t>(xes), x.dtype(), buf[1], d);
      void* dst = obase + (t * os0 + h * os1) * static_cast<int64_t>(oes);
      // f32 out: written in place (each pair is read before it is written, so out may alias x);
      // through a buffer, a wide copy would wait on the buffer's just-written scalars.
      float* y = out.dtype() == DType::f32 ? static_cast<float*>(dst) : buf[2];
      if (interleaved) {
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[2 * i], b = v[2 * i + 1];
          y[2 * i] = a * cs[i] - b * sn[i];
          y[2 * i + 1] = a * sn[i] + b * cs[i];
        }
      } else {
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          y[i] = a * cs[i] - b * sn[i];
          y[i + half] = a * sn[i] + b * cs[i];
        }
      }
      if (y != v)
        for (int64_t i = 2 * half; i < d; ++i) y[i] = v[i];
      if (y == buf[2]) store_f32(y, dst, out.dtype(), d);
    }
  });
}

}  // namespace seqit::tensor::detail

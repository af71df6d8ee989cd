// LoRA adapters (forward/backward with seeded, recomputed dropout) and the fused AdamW step.
// See cpu_gemm.cpp: GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized under -O3.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <omp.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

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

// Counter-based randomness: the dropout decision of element `index` is a pure function of (seed,
// index), so backward recomputes the forward mask instead of storing it. splitmix64 finaliser.
inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
inline bool dropped(uint64_t seed, uint64_t index, uint32_t threshold) {
  return static_cast<uint32_t>(mix64(seed ^ mix64(index)) >> 32) < threshold;
}

#ifdef __AVX512F__
__attribute__((target("avx512f,avx512dq"))) inline __m512i mix64_x8(__m512i x) {
  x = _mm512_add_epi64(x, _mm512_set1_epi64(static_cast<int64_t>(0x9e3779b97f4a7c15ull)));
  x = _mm512_mullo_epi64(_mm512_xor_si512(x, _mm512_srli_epi64(x, 30)),
                         _mm512_set1_epi64(static_cast<int64_t>(0xbf58476d1ce4e5b9ull)));
  x = _mm512_mullo_epi64(_mm512_xor_si512(x, _mm512_srli_epi64(x, 27)),
                         _mm512_set1_epi64(static_cast<int64_t>(0x94d049bb133111ebull)));
  return _mm512_xor_si512(x, _mm512_srli_epi64(x, 31));
}

// 16 values per step: two vectors of 8 indices hashed in 64-bit lanes, their keep bits joined into
// one 16-bit mask for the f32 multiply (masked loads and stores for the last < 16).
__attribute__((target("avx512f,avx512dq"))) void dropout_row_avx512(
    const float* src, float* dst, int64_t n, uint64_t seed, uint64_t first, uint32_t threshold,
    float keep_scale, bool accumulate) {
  const __m512i vseed = _mm512_set1_epi64(static_cast<int64_t>(seed));
  const __m512i vthreshold = _mm512_set1_epi64(threshold);
  const __m512 vscale = _mm512_set1_ps(keep_scale);
  __m512i lo = _mm512_add_epi64(_mm512_set1_epi64(static_cast<int64_t>(first)),
                                _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  __m512i hi = _mm512_add_epi64(lo, _mm512_set1_epi64(8));
  const __m512i step = _mm512_set1_epi64(16);
  for (int64_t i = 0; i < n; i += 16) {
    const __m512i hash_lo = mix64_x8(_mm512_xor_si512(vseed, mix64_x8(lo)));
    const __m512i hash_hi = mix64_x8(_mm512_xor_si512(vseed, mix64_x8(hi)));
    const __mmask8 keep_lo = _mm512_cmpge_epu64_mask(_mm512_srli_epi64(hash_lo, 32), vthreshold);
    const __mmask8 keep_hi = _mm512_cmpge_epu64_mask(_mm512_srli_epi64(hash_hi, 32), vthreshold);
    const auto keep = static_cast<__mmask16>(keep_lo | (static_cast<unsigned>(keep_hi) << 8));
    const auto valid = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    __m512 v = _mm512_maskz_mul_ps(keep, _mm512_maskz_loadu_ps(valid, src + i), vscale);
    if (accumulate) v = _mm512_add_ps(_mm512_maskz_loadu_ps(valid, dst + i), v);
    _mm512_mask_storeu_ps(dst + i, valid, v);
    lo = _mm512_add_epi64(lo, step);
    hi = _mm512_add_epi64(hi, step);
  }
}

bool cpu_has_avx512dq() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
  return has;
}
#endif

uint32_t dropout_threshold(float p) {
  return static_cast<uint32_t>(std::min(1.0, static_cast<double>(p)) * 4294967295.0);
}

// Under bf16 compute the adapter's products multiply in bf16 like the base projections, each
// accumulated in f32 (oneDNN's native bf16 GEMM where the CPU has one, else the same roundings
// through f32): the down projection when x comes as bf16 rows — dropout(x) as bf16 rows (x itself
// when p = 0, no copy), A and dxa rounded to bf16 — and the up projection when y (forward) or dy
// (backward) is bf16 — xa, B and dy as bf16. Widening them instead cost a dense f32 copy of every x
// (twice per module and step) and of every bf16 dy, and mixed-dtype GEMMs.
//
// dropout(x) (scaled by 1/(1-p)) as a dense [n, in] matrix of `dtype` (f32, or bf16 when x is bf16
// rows), or x itself when p = 0 and x already has that dtype.
MatrixRef dropped_input(const RowsRef& X, const LoraConfig& config, DType dtype, Tensor& holder) {
  if (config.dropout <= 0.0f && X.dtype == dtype)
    return MatrixRef{X.base, dtype, X.rows, X.cols, X.row_stride, 1, 0};
  holder = Tensor::empty({X.rows, X.cols}, dtype);
  auto* dst = static_cast<std::byte*>(const_cast<void*>(holder.raw_data()));
  const size_t es = dtype_size(dtype);
  const uint32_t threshold = dropout_threshold(config.dropout);
  const float keep_scale = config.dropout > 0.0f ? 1.0f / (1.0f - config.dropout) : 1.0f;
  apply_threads();
#pragma omp parallel for schedule(static) if (X.rows * X.cols >= kParallelThreshold)
  for (int64_t r = 0; r < X.rows; ++r) {
    // f32 rows are formed in place; bf16 rows in f32 scratch, rounded once on the way out
    float* row = dtype == DType::f32 ? reinterpret_cast<float*>(dst + r * X.cols * es)
                                     : scratch_f32(6, static_cast<size_t>(X.cols));
    const float* src = load_f32(X.row(r), X.dtype, row, X.cols);
    if (config.dropout > 0.0f) {
      const int64_t mask_row = config.rows != nullptr ? config.rows[r] : r;
      dropout_row(src, row, X.cols, config.seed, static_cast<uint64_t>(mask_row * X.cols),
                  threshold, keep_scale, false);
    } else if (src != row) {
      std::copy(src, src + X.cols, row);
    }
    store_f32(row, dst + r * X.cols * es, dtype, X.cols);  // f32: in place already, no copy
  }
  return MatrixRef{dst, dtype, X.rows, X.cols, X.cols, 1, 0};
}
// m [rows, cols] (unit column stride) rounded to bf16: m itself when it is bf16, else a dense copy
// in `holder` (small: an adapter matrix or [n, r]).
MatrixRef rounded_bf16(const MatrixRef& m, Tensor& holder) {
  if (m.dtype == DType::bf16) return m;
  holder = Tensor::empty({m.rows, m.cols}, DType::bf16);
  auto* dst = holder.mutable_data<bf16>();
  std::vector<float> buffer(static_cast<size_t>(m.cols));
  const size_t es = dtype_size(m.dtype);
  for (int64_t r = 0; r < m.rows; ++r) {
    const void* src = static_cast<const std::byte*>(m.data) + r * m.row_stride * es;
    store_f32(load_f32(src, m.dtype, buffer.data(), m.cols), dst + r * m.cols, DType::bf16, m.cols);
  }
  return MatrixRef{dst, DType::bf16, m.rows, m.cols, m.cols, 1, 0};
}

struct LoraShape {
  int64_t n, in, out, rank;
};

LoraShape check_lora(const char* op, const RowsRef& X, const Tensor& a, const Tensor& b,
                     const Tensor& xa, const LoraConfig& config) {
  check_dim(op, "a", a, 2);
  check_dim(op, "b", b, 2);
  check_float(op, "a", a);
  check_float(op, "b", b);
  LoraShape s{X.rows, X.cols, b.size(0), a.size(0)};
  if (a.size(1) != s.in)
    fail(op, "a " + a.describe() + " must be [rank, " + std::to_string(s.in) + "]");
  if (b.size(1) != s.rank)
    fail(op, "b " + b.describe() + " must be [out, " + std::to_string(s.rank) + "]");
  check_dtype(op, "xa", xa, DType::f32);
  check_contiguous(op, "xa", xa);
  check_shape(op, "xa", xa, {s.n, s.rank});
  if (!(config.dropout >= 0.0f && config.dropout < 1.0f)) fail(op, "dropout must be in [0, 1)");
  for (const Tensor* t : {&a, &b}) {
    if (t->size(1) > 1 && t->stride(1) != 1)
      fail(op, "adapter matrices need a unit stride in their last dim");
  }
  return s;
}

MatrixRef plain(const Tensor& t) {
  return MatrixRef{
      t.raw_data(), t.dtype(), t.size(0), t.size(1), t.size(0) > 1 ? t.stride(0) : t.size(1), 1, 0};
}
MatrixRef transpose(const MatrixRef& m) {
  return MatrixRef{m.data, m.dtype, m.cols, m.rows, m.col_stride, m.row_stride, 0};
}
MutableMatrixRef mutable_rows(const RowsRef& r) {
  return MutableMatrixRef{r.base, r.dtype, r.rows, r.cols, r.row_stride, 1, 0};
}

}  // namespace

void dropout_row(const float* src, float* dst, int64_t n, uint64_t seed, uint64_t first,
                 uint32_t threshold, float keep_scale, bool accumulate, bool vector) {
#ifdef __AVX512F__
  if (vector && cpu_has_avx512dq()) {
    dropout_row_avx512(src, dst, n, seed, first, threshold, keep_scale, accumulate);
    return;
  }
#else
  (void)vector;
#endif
  for (int64_t i = 0; i < n; ++i) {
    float kept =
        dropped(seed, first + static_cast<uint64_t>(i), threshold) ? 0.0f : src[i] * keep_scale;
    asm("" : "+x"(kept));  // rounded on its own, as the vector path does: no fused multiply-add
    dst[i] = accumulate ? dst[i] + kept : kept;
  }
}

void CpuBackend::lora_forward(const Tensor& y, const Tensor& xa, const Tensor& x, const Tensor& a,
                              const Tensor& b, const LoraConfig& config) {
  const char* op = "lora_forward";
  const RowsRef X = rows_of(op, "x", x, false);
  const LoraShape s = check_lora(op, X, a, b, xa, config);
  const RowsRef Y = rows_of(op, "y", y, true);
  if (Y.rows != s.n || Y.cols != s.out) fail(op, "y " + y.describe() + " does not match x and b");
  Tensor holder, a16, xa16, b16;
  const bool down16 = X.dtype == DType::bf16, up16 = Y.dtype == DType::bf16;
  const MatrixRef xd = dropped_input(X, config, down16 ? DType::bf16 : DType::f32, holder);
  const MatrixRef am = down16 ? rounded_bf16(plain(a), a16) : plain(a);
  // xa[n, r] = dropout(x) · aᵀ ; y += scale · xa · bᵀ
  float* xa_data = xa.mutable_data<float>();
  const MatrixRef xam{xa_data, DType::f32, s.n, s.rank, s.rank, 1, 0};
  gemm_any(1, xd, transpose(am), MutableMatrixRef{xa_data, DType::f32, s.n, s.rank, s.rank, 1, 0},
           nullptr, 1.0f, false);
  gemm_any(1, up16 ? rounded_bf16(xam, xa16) : xam,
           transpose(up16 ? rounded_bf16(plain(b), b16) : plain(b)), mutable_rows(Y), nullptr,
           config.scale, true);
}

void CpuBackend::lora_backward(const Tensor& dx, const Tensor& da, const Tensor& db,
                               const Tensor& dy, const Tensor& x, const Tensor& xa, const Tensor& a,
                               const Tensor& b, const LoraConfig& config) {
  const char* op = "lora_backward";
  const RowsRef X = rows_of(op, "x", x, false);
  const LoraShape s = check_lora(op, X, a, b, xa, config);
  const RowsRef dY = rows_of(op, "dy", dy, false);
  if (dY.rows != s.n || dY.cols != s.out)
    fail(op, "dy " + dy.describe() + " does not match x and b");
  const MatrixRef dym{dY.base, dY.dtype, s.n, s.out, dY.row_stride, 1, 0};
  const bool down16 = X.dtype == DType::bf16, up16 = dY.dtype == DType::bf16;
  Tensor xa16, b16, dxa16, holder;
  const MatrixRef xam{xa.data<float>(), DType::f32, s.n, s.rank, s.rank, 1, 0};
  if (db.defined()) {
    check_shape(op, "db", db, b.shape());
    // db[out, r] += scale · dyᵀ · xa
    gemm_any(1, transpose(dym), up16 ? rounded_bf16(xam, xa16) : xam,
             mutable_rows(rows_of(op, "db", db, true)), nullptr, config.scale, true);
  }
  if (!da.defined() && !dx.defined()) return;
  // dxa[n, r] = scale · dy · b
  Tensor dxa = Tensor::empty({s.n, s.rank}, DType::f32);
  gemm_any(1, dym, up16 ? rounded_bf16(plain(b), b16) : plain(b),
           MutableMatrixRef{dxa.mutable_data<float>(), DType::f32, s.n, s.rank, s.rank, 1, 0},
           nullptr, config.scale, false);
  const MatrixRef dxam{dxa.data<float>(), DType::f32, s.n, s.rank, s.rank, 1, 0};
  if (da.defined()) {
    check_shape(op, "da", da, a.shape());
    // da[r, in] += dxaᵀ · dropout(x)
    gemm_any(1, transpose(down16 ? rounded_bf16(dxam, dxa16) : dxam),
             dropped_input(X, config, down16 ? DType::bf16 : DType::f32, holder),
             mutable_rows(rows_of(op, "da", da, true)), nullptr, 1.0f, true);
  }
  if (dx.defined()) {
    const RowsRef dX = rows_of(op, "dx", dx, true);
    if (dX.rows != s.n || dX.cols != s.in) fail(op, "dx " + dx.describe() + " does not match x");
    if (config.dropout <= 0.0f) {
      gemm_any(1, dxam, plain(a), mutable_rows(dX), nullptr, 1.0f, true);  // dx += dxa · a
      return;
    }
    // dx += dropout'(dxa · a): the same mask, the same 1/(1-p).
    Tensor tmp = Tensor::empty({s.n, s.in}, DType::f32);
    float* t = tmp.mutable_data<float>();
    gemm_any(1, dxam, plain(a), MutableMatrixRef{t, DType::f32, s.n, s.in, s.in, 1, 0}, nullptr,
             1.0f, false);
    const uint32_t threshold = dropout_threshold(config.dropout);
    const float keep_scale = 1.0f / (1.0f - config.dropout);
    apply_threads();
#pragma omp parallel for schedule(static) if (s.n * s.in >= kParallelThreshold)
    for (int64_t r = 0; r < s.n; ++r) {
      const float* row = t + r * s.in;
      const auto first =
          static_cast<uint64_t>((config.rows != nullptr ? config.rows[r] : r) * s.in);
      if (dX.dtype == DType::f32) {
        dropout_row(row, static_cast<float*>(dX.row(r)), s.in, config.seed, first, threshold,
                    keep_scale, true);
        continue;
      }
      float* acc = scratch_f32(5, static_cast<size_t>(s.in));
      const float* cur = load_f32(dX.row(r), dX.dtype, acc, s.in);
      if (cur != acc) std::copy(cur, cur + s.in, acc);
      dropout_row(row, acc, s.in, config.seed, first, threshold, keep_scale, true);
      store_f32(acc, dX.row(r), dX.dtype, s.in);
    }
  }
}

void CpuBackend::adamw_step(const Tensor& param, const Tensor& master, const Tensor& grad,
                            const Tensor& m, const Tensor& v, const AdamWConfig& config,
                            int64_t step, float grad_scale) {
  const char* op = "adamw_step";
  check_float(op, "param", param);
  check_contiguous(op, "param", param);
  if (!param.is_writable()) fail(op, "param is read-only");
  if (step < 1) fail(op, "step must be >= 1 (1-based), got " + std::to_string(step));
  for (const auto& [t, name] : {std::pair{&grad, "grad"}, std::pair{&m, "m"}, std::pair{&v, "v"}}) {
    check_defined(op, name, *t);
    check_shape(op, name, *t, param.shape());
    check_contiguous(op, name, *t);
  }
  check_float(op, "grad", grad);
  check_dtype(op, "m", m, DType::f32);
  check_dtype(op, "v", v, DType::f32);
  float* p32 = nullptr;
  if (param.dtype() == DType::f32) {
    if (master.defined()) fail(op, "an f32 param takes no master copy");
    p32 = param.mutable_data<float>();
  } else {
    check_defined(op, "master", master);
    check_dtype(op, "master", master, DType::f32);
    check_shape(op, "master", master, param.shape());
    check_contiguous(op, "master", master);
    p32 = master.mutable_data<float>();
  }
  const int64_t n = param.numel();
  float* mp = m.mutable_data<float>();
  float* vp = v.mutable_data<float>();
  const auto* gbase = static_cast<const std::byte*>(grad.raw_data());
  auto* pbase = param.dtype() == DType::f32
                    ? nullptr
                    : static_cast<std::byte*>(const_cast<void*>(param.raw_data()));
  const double bc1 = 1.0 - std::pow(static_cast<double>(config.beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(config.beta2), static_cast<double>(step));
  const float step_size = static_cast<float>(config.lr / bc1);
  const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float decay = 1.0f - config.lr * config.weight_decay;
  const float b1 = config.beta1, b2 = config.beta2, eps = config.eps;
  const size_t ges = grad.element_size(), pes = param.element_size();
  // An on-demand gradient (an embedding's): its unwritten pages are zeros, not read (see
  // sum_of_squares).
  const Storage::WrittenPages written = grad.storage()->written_pages();
  apply_threads();
  constexpr int64_t kChunk = 2048;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk, len = std::min(kChunk, n - i0);
    float* gbuf = scratch_f32(0, kChunk);
    const std::byte* graw =
        written.read(gbase + i0 * static_cast<int64_t>(ges), static_cast<size_t>(len) * ges,
                     reinterpret_cast<std::byte*>(scratch_f32(1, kChunk)));
    const float* g = gbuf;
    if (graw)
      g = load_f32(graw, grad.dtype(), gbuf, len);
    else
      zero_f32(gbuf, len);  // no page of the chunk written: a zero gradient
    float* p = p32 + i0;
    float* mm = mp + i0;
    float* vv = vp + i0;
    int64_t i = 0;
#ifdef __AVX512F__
    // The same arithmetic 16 lanes at a time (the scalar loop below compiles to scalar sqrt and
    // divide, which made the step latency-bound at about half the memory bandwidth).
    const __m512 vscale = _mm512_set1_ps(grad_scale), vb1 = _mm512_set1_ps(b1),
                 vb1c = _mm512_set1_ps(1.0f - b1), vb2 = _mm512_set1_ps(b2),
                 vb2c = _mm512_set1_ps(1.0f - b2), vdecay = _mm512_set1_ps(decay),
                 vstep = _mm512_set1_ps(step_size), vbc2 = _mm512_set1_ps(inv_sqrt_bc2),
                 veps = _mm512_set1_ps(eps);
    for (; i + 16 <= len; i += 16) {
      const __m512 gi = _mm512_mul_ps(_mm512_loadu_ps(g + i), vscale);
      const __m512 mi = _mm512_fmadd_ps(vb1, _mm512_loadu_ps(mm + i), _mm512_mul_ps(vb1c, gi));
      const __m512 vi =
          _mm512_fmadd_ps(vb2, _mm512_loadu_ps(vv + i), _mm512_mul_ps(_mm512_mul_ps(vb2c, gi), gi));
      _mm512_storeu_ps(mm + i, mi);
      _mm512_storeu_ps(vv + i, vi);
      const __m512 denom = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), vbc2, veps);
      const __m512 pi = _mm512_fmsub_ps(_mm512_loadu_ps(p + i), vdecay,
                                        _mm512_div_ps(_mm512_mul_ps(vstep, mi), denom));
      _mm512_storeu_ps(p + i, pi);
    }
#endif
    for (; i < len; ++i) {
      const float gi = g[i] * grad_scale;
      mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
      vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
      // Decoupled decay (AdamW): shrink p, then the Adam step with bias-corrected moments.
      p[i] = p[i] * decay - step_size * mm[i] / (std::sqrt(vv[i]) * inv_sqrt_bc2 + eps);
    }
    if (pbase) store_f32(p, pbase + i0 * static_cast<int64_t>(pes), param.dtype(), len);
  }
}

}  // namespace seqit::tensor::detail

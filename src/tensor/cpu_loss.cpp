// Cross-entropy over large vocabularies: row-wise log-softmax with an ignore index, its gradient in
// place, and the chunked variant fused with the output projection (logits exist one chunk of rows
// at a time).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "tensor/cpu_backend.h"
#include "tensor/cpu_gemm.h"
#include "tensor/cpu_internal.h"
#include "tensor/cpu_math.h"

namespace seqit::tensor::detail {

namespace {

const int32_t* targets_of(const char* op, const Tensor& targets, int64_t rows, int64_t vocab,
                          int32_t ignore) {
  check_dtype(op, "targets", targets, DType::i32);
  check_cpu(op, "targets", targets);
  check_contiguous(op, "targets", targets);
  if (targets.numel() != rows) {
    fail(op, "targets has " + std::to_string(targets.numel()) + " entries for " +
                 std::to_string(rows) + " rows");
  }
  const int32_t* t = targets.data<int32_t>();
  for (int64_t i = 0; i < rows; ++i) {
    if (t[i] != ignore && (t[i] < 0 || t[i] >= vocab)) {
      fail(op, "targets[" + std::to_string(i) + "] = " + std::to_string(t[i]) +
                   " is outside the vocabulary [0, " + std::to_string(vocab) +
                   ") and is not the ignore index " + std::to_string(ignore));
    }
  }
  return t;
}

// Loss (and optionally the gradient, in f32 rows) of rows [0, rows) of an f32/bf16 logits matrix.
// Gradient rows may alias the logits rows.
CrossEntropyResult cross_entropy_rows(const RowsRef& L, const int32_t* target, int32_t ignore,
                                      const RowsRef* G, float grad_scale, float* logprob_out) {
  const int64_t rows = L.rows, v = L.cols;
  apply_threads();
  const int threads = rows * v >= kParallelThreshold && rows > 1 ? num_threads() : 1;
  std::vector<double> loss(static_cast<size_t>(threads), 0.0);
  std::vector<int64_t> count(static_cast<size_t>(threads), 0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    float* buffer = scratch_f32(0, static_cast<size_t>(v));
    float* ebuf = scratch_f32(1, static_cast<size_t>(v));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      if (target[r] == ignore) {
        if (G) {
          std::fill(ebuf, ebuf + v, 0.0f);
          store_f32(ebuf, G->row(r), G->dtype, v);
        }
        if (logprob_out) logprob_out[r] = 0.0f;
        continue;
      }
      const float* x = load_f32(L.row(r), L.dtype, buffer, v);
      const float mx = max_of(x, v);
      const float target_logit = x[target[r]];
      const double sum = exp_shift_sum(x, mx, ebuf, v);
      const double lse = mx + std::log(sum);
      loss[static_cast<size_t>(t)] += lse - target_logit;
      ++count[static_cast<size_t>(t)];
      if (logprob_out) logprob_out[r] = static_cast<float>(target_logit - lse);
      if (G) {
        // d loss / d logits = softmax - onehot, times grad_scale.
        scale(ebuf, static_cast<float>(grad_scale / sum), v);
        ebuf[target[r]] -= grad_scale;
        store_f32(ebuf, G->row(r), G->dtype, v);
      }
    }
  }
  CrossEntropyResult result;
  for (int t = 0; t < threads; ++t) {
    result.loss_sum += loss[static_cast<size_t>(t)];
    result.tokens += count[static_cast<size_t>(t)];
  }
  return result;
}

// bf16 h against an f32 w (bf16 compute over f32 master weights): w is rounded to bf16 one block of
// kHeadBlock vocabulary rows at a time and the softmax is taken online over the blocks (each row's
// running max and sum), so neither a bf16 copy of w nor a V-wide chunk of logits ever exists —
// [N, block] logits, their bf16 gradient and one bf16 block of w (4 + 2 + 2 MB at N = 1024, C =
// 1024; the block narrows for larger N), instead of a 64 MB copy of a 32k-vocabulary head plus
// chunks. The price: the logits are computed twice when gradients are wanted (once for the softmax
// statistics, once for the gradient). The numbers are those of a bf16 copy of w, up to f32
// summation order.
constexpr int64_t kHeadBlock = 1024;

CrossEntropyResult blocked_bf16_head(const RowsRef& H, const RowsRef& W, const int32_t* t,
                                     int32_t ignore, const RowsRef& dH, const RowsRef& dW,
                                     float grad_scale) {
  // Blocks of up to kHeadBlock vocabulary rows, fewer for long batches (~1M logits at a time).
  const int64_t n = H.rows, vocab = W.rows, c = H.cols;
  const int64_t vb = std::min(
      vocab,
      std::clamp<int64_t>((int64_t{1} << 20) / std::max<int64_t>(n, 1) / 64 * 64, 256, kHeadBlock));
  const bool grads = dH.base || dW.base;
  Tensor w16 = Tensor::empty({vb, c}, DType::bf16);
  Tensor logits = Tensor::empty({n, vb}, DType::f32);
  Tensor g16 = grads ? Tensor::empty({n, vb}, DType::bf16) : Tensor();
  float* lg = logits.mutable_data<float>();
  bf16* w16p = w16.mutable_data<bf16>();
  const MatrixRef hm{H.base, DType::bf16, n, c, H.row_stride, 1, 0};
  // logits[:, 0..rows) = h · bf16(w[v0 .. v0 + rows))ᵀ
  auto block_logits = [&](int64_t v0, int64_t rows) {
    if (W.row_stride == c) {
      convert_f32_to_bf16(static_cast<const float*>(W.row(v0)), w16p,
                          static_cast<size_t>(rows * c));
    } else {
      for (int64_t r = 0; r < rows; ++r)
        convert_f32_to_bf16(static_cast<const float*>(W.row(v0 + r)), w16p + r * c,
                            static_cast<size_t>(c));
    }
    gemm_any(1, hm, MatrixRef{w16p, DType::bf16, c, rows, 1, c, 0},
             MutableMatrixRef{lg, DType::f32, n, rows, vb, 1, 0}, nullptr, 1.0f, false);
  };
  apply_threads();
  const int threads = n * vb >= kParallelThreshold && n > 1 ? num_threads() : 1;
  // Pass 1: each row's max, sum of exp(logit - max) and target logit, block by block.
  std::vector<float> mx(static_cast<size_t>(n), -INFINITY), target_logit(static_cast<size_t>(n), 0);
  std::vector<double> sum(static_cast<size_t>(n), 0.0);
  for (int64_t v0 = 0; v0 < vocab; v0 += vb) {
    const int64_t rows = std::min(vb, vocab - v0);
    block_logits(v0, rows);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      if (t[r] == ignore) continue;
      const float* x = lg + r * vb;
      const size_t i = static_cast<size_t>(r);
      const float m = std::max(mx[i], max_of(x, rows));
      if (m > mx[i]) sum[i] *= std::exp(static_cast<double>(mx[i]) - m), mx[i] = m;
      sum[i] += exp_shift_sum(x, m, scratch_f32(1, static_cast<size_t>(vb)), rows);
      if (t[r] >= v0 && t[r] < v0 + rows) target_logit[i] = x[t[r] - v0];
    }
  }
  CrossEntropyResult total;
  std::vector<float> lse(static_cast<size_t>(n), 0);
  for (int64_t r = 0; r < n; ++r) {
    if (t[r] == ignore) continue;
    const size_t i = static_cast<size_t>(r);
    const double l = mx[i] + std::log(sum[i]);
    lse[i] = static_cast<float>(l);
    total.loss_sum += l - target_logit[i];
    ++total.tokens;
  }
  if (!grads) return total;
  // Pass 2: the logits again; grad_scale · (softmax - onehot) in bf16 (0 on ignored rows) into both
  // GEMMs: dh += g · bf16(w block), dw[block] += gᵀ · h.
  bf16* gp = g16.mutable_data<bf16>();
  for (int64_t v0 = 0; v0 < vocab; v0 += vb) {
    const int64_t rows = std::min(vb, vocab - v0);
    block_logits(v0, rows);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      float* e = scratch_f32(1, static_cast<size_t>(vb));
      if (t[r] == ignore) {
        std::fill(e, e + rows, 0.0f);
      } else {
        exp_shift_sum(lg + r * vb, lse[static_cast<size_t>(r)], e, rows);
        scale(e, grad_scale, rows);
        if (t[r] >= v0 && t[r] < v0 + rows) e[t[r] - v0] -= grad_scale;
      }
      store_f32(e, gp + r * vb, DType::bf16, rows);
    }
    if (dH.base) {
      gemm_any(1, MatrixRef{gp, DType::bf16, n, rows, vb, 1, 0},
               MatrixRef{w16p, DType::bf16, rows, c, c, 1, 0},
               MutableMatrixRef{dH.base, dH.dtype, n, c, dH.row_stride, 1, 0}, nullptr, 1.0f, true);
    }
    if (dW.base) {
      gemm_any(1, MatrixRef{gp, DType::bf16, rows, n, 1, vb, 0}, hm,
               MutableMatrixRef{dW.row(v0), dW.dtype, rows, c, dW.row_stride, 1, 0}, nullptr, 1.0f,
               true);
    }
  }
  return total;
}

}  // namespace

CrossEntropyResult CpuBackend::cross_entropy(const Tensor& logits, const Tensor& targets,
                                             int32_t ignore_index, const Tensor& dlogits,
                                             float grad_scale) {
  const char* op = "cross_entropy";
  const RowsRef L = rows_of(op, "logits", logits, false);
  const int32_t* t = targets_of(op, targets, L.rows, L.cols, ignore_index);
  RowsRef G;
  if (dlogits.defined()) {
    G = rows_of(op, "dlogits", dlogits, true);
    if (G.rows != L.rows || G.cols != L.cols)
      fail(op, "dlogits " + dlogits.describe() + " does not match logits");
  }
  return cross_entropy_rows(L, t, ignore_index, dlogits.defined() ? &G : nullptr, grad_scale,
                            nullptr);
}

void CpuBackend::token_logprobs(const Tensor& logprobs, const Tensor& logits, const Tensor& targets,
                                int32_t ignore_index) {
  const char* op = "token_logprobs";
  const RowsRef L = rows_of(op, "logits", logits, false);
  const int32_t* t = targets_of(op, targets, L.rows, L.cols, ignore_index);
  check_dtype(op, "logprobs", logprobs, DType::f32);
  check_contiguous(op, "logprobs", logprobs);
  if (logprobs.numel() != L.rows) fail(op, "logprobs must hold one value per row");
  cross_entropy_rows(L, t, ignore_index, nullptr, 1.0f, logprobs.mutable_data<float>());
}

int64_t CpuBackend::count_targets(const Tensor& targets, int32_t ignore_index) {
  check_dtype("count_targets", "targets", targets, DType::i32);
  const Tensor c = targets.contiguous();
  const int32_t* t = c.data<int32_t>();
  int64_t n = 0;
  for (int64_t i = 0; i < c.numel(); ++i) n += t[i] != ignore_index;
  return n;
}

namespace {
constexpr int64_t kGatherRows = 16;
}  // namespace

CrossEntropyResult CpuBackend::linear_cross_entropy(const Tensor& h, const Tensor& w,
                                                    const Tensor& targets, int32_t ignore_index,
                                                    const Tensor& dh, const Tensor& dw,
                                                    float grad_scale, int64_t chunk_rows,
                                                    const Tensor& scratch) {
  const char* op = "linear_cross_entropy";
  const RowsRef H = rows_of(op, "h", h, false);
  check_dim(op, "w", w, 2);
  const RowsRef W = rows_of(op, "w", w, false);
  if (W.cols != H.cols)
    fail(op, "h " + h.describe() + " and w " + w.describe() + " differ in width");
  const int64_t n = H.rows, vocab = W.rows, c = H.cols;
  const int32_t* t = targets_of(op, targets, n, vocab, ignore_index);
  RowsRef dH, dW;
  if (dh.defined()) {
    dH = rows_of(op, "dh", dh, true);
    if (dH.rows != n || dH.cols != c) fail(op, "dh " + dh.describe() + " does not match h");
  }
  if (dw.defined()) {
    check_shape(op, "dw", dw, w.shape());
    dW = rows_of(op, "dw", dw, true);
  }
  if (chunk_rows <= 0) fail(op, "chunk_rows must be positive");
  if (scratch.defined()) {
    check_dtype(op, "scratch", scratch, DType::f32);
    check_contiguous(op, "scratch", scratch);
    if (!scratch.is_writable()) fail(op, "scratch is read-only");
  }
  // A row whose target is ignored adds nothing to the loss or to either gradient, so the head's
  // GEMMs run over the other rows only, gathered into one block (fine-tuning masks the prompt's
  // rows: three quarters of them in `seqit study`'s data). dh's ignored rows are left as they are.
  // The block is padded with ignored rows (their gradients are zero) to a multiple of kGatherRows.
  const TrainedRows picked =
      padded_trained_rows({t, static_cast<size_t>(n)}, ignore_index, kGatherRows);
  const int64_t kept = picked.trained;
  if (kept == 0) return {};
  if (!picked.rows.empty()) {
    const auto block = static_cast<int64_t>(picked.rows.size());
    const auto width = static_cast<size_t>(c) * dtype_size(H.dtype);
    Tensor hk = Tensor::empty({block, c}, H.dtype), tk = Tensor::empty({block}, DType::i32);
    auto* hk_data = static_cast<std::byte*>(hk.raw_data());
    auto* tk_data = tk.mutable_data<int32_t>();
    for (int64_t j = 0; j < block; ++j) {
      const int32_t i = picked.rows[static_cast<size_t>(j)];
      std::memcpy(hk_data + static_cast<size_t>(j) * width, H.row(i), width);
      tk_data[j] = t[i];
    }
    Tensor dhk = dH.base ? Tensor::zeros({block, c}, dH.dtype) : Tensor();
    const CrossEntropyResult result =
        linear_cross_entropy(hk, w, tk, ignore_index, dhk, dw, grad_scale, chunk_rows, scratch);
    if (dH.base) {  // dh's kept rows += their gradient
      const auto* g = static_cast<const std::byte*>(dhk.raw_data());
      const size_t g_width = static_cast<size_t>(c) * dtype_size(dH.dtype);
      std::vector<float> sum(static_cast<size_t>(c)), add(static_cast<size_t>(c));
      for (int64_t j = 0; j < kept; ++j) {
        void* dst = dH.row(picked.rows[static_cast<size_t>(j)]);
        const float* a = load_f32(dst, dH.dtype, sum.data(), c);
        const float* b = load_f32(g + static_cast<size_t>(j) * g_width, dH.dtype, add.data(), c);
        for (int64_t k = 0; k < c; ++k) sum[static_cast<size_t>(k)] = a[k] + b[k];
        store_f32(sum.data(), dst, dH.dtype, c);
      }
    }
    return result;
  }
  if (H.dtype == DType::bf16 && W.dtype == DType::f32)
    return blocked_bf16_head(H, W, t, ignore_index, dH, dW, grad_scale);
  int64_t chunk = std::min(chunk_rows, std::max<int64_t>(n, 1));
  // bf16 h and w (bf16 compute): the logits' gradient is rounded to bf16 too, so the two backward
  // GEMMs take bf16 operands like the forward one (f32 accumulation into dh and dw).
  const bool bf16_grads =
      H.dtype == DType::bf16 && W.dtype == DType::bf16 && (dh.defined() || dw.defined());
  // One chunk of logits, reused: chunk × vocab f32 (e.g. 256 × 32000 × 4 = 33 MB), never N × vocab;
  // in the caller's scratch when it holds enough rows, else allocated.
  const int64_t row_bytes = vocab * static_cast<int64_t>(sizeof(float) + (bf16_grads ? 2 : 0));
  const int64_t scratch_rows =
      scratch.defined() ? static_cast<int64_t>(scratch.nbytes()) / std::max<int64_t>(row_bytes, 1)
                        : 0;
  Tensor logits, glogits16;
  float* lg = nullptr;
  bf16* g16 = nullptr;
  if (scratch_rows >= std::min<int64_t>(chunk, 64)) {
    chunk = std::min(chunk, scratch_rows);
    lg = scratch.mutable_data<float>();
    g16 = reinterpret_cast<bf16*>(lg + chunk * vocab);
  } else {
    logits = Tensor::empty({chunk, vocab}, DType::f32);
    lg = logits.mutable_data<float>();
    if (bf16_grads) {
      glogits16 = Tensor::empty({chunk, vocab}, DType::bf16);
      g16 = glogits16.mutable_data<bf16>();
    }
  }
  const MatrixRef wt{W.base, W.dtype, c, vocab, 1, W.row_stride, 0};  // wᵀ [c, vocab]
  const MatrixRef wm{W.base, W.dtype, vocab, c, W.row_stride, 1, 0};
  CrossEntropyResult total;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    const MatrixRef hc{static_cast<std::byte*>(H.row(r0)), H.dtype, rows, c, H.row_stride, 1, 0};
    gemm_any(1, hc, wt, MutableMatrixRef{lg, DType::f32, rows, vocab, vocab, 1, 0}, nullptr, 1.0f,
             false);
    const RowsRef L{reinterpret_cast<std::byte*>(lg), rows, vocab, vocab, DType::f32};
    const bool grads = dH.base || dW.base;
    const CrossEntropyResult part =
        cross_entropy_rows(L, t + r0, ignore_index, grads ? &L : nullptr, grad_scale, nullptr);
    total.loss_sum += part.loss_sum;
    total.tokens += part.tokens;
    if (!grads) continue;
    const void* gdata = lg;
    const DType gtype = bf16_grads ? DType::bf16 : DType::f32;
    if (bf16_grads) {
      convert_f32_to_bf16(lg, g16, static_cast<size_t>(rows * vocab));
      gdata = g16;
    }
    const MatrixRef g{gdata, gtype, rows, vocab, vocab, 1, 0};
    if (dH.base) {
      gemm_any(1, g, wm, MutableMatrixRef{dH.row(r0), dH.dtype, rows, c, dH.row_stride, 1, 0},
               nullptr, 1.0f, true);
    }
    if (dW.base) {
      const MatrixRef gt{gdata, gtype, vocab, rows, 1, vocab, 0};  // dlogitsᵀ [vocab, rows]
      gemm_any(1, gt, hc, MutableMatrixRef{dW.base, dW.dtype, vocab, c, dW.row_stride, 1, 0},
               nullptr, 1.0f, true);
    }
  }
  return total;
}

}  // namespace seqit::tensor::detail

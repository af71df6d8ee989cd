// The free functions of ops.h: find the one device all tensors of a call live on, and hand the call
// to that device's Backend.
#include "tensor/ops.h"

#include <cmath>
#include <mutex>
#include <string>

#include "tensor/backend.h"
#include "tensor/cpu_backend.h"

namespace seqit::tensor {

namespace {
Backend* g_backends[2] = {nullptr, nullptr};
std::once_flag g_cpu_once;
detail::CpuBackend& cpu_backend() {
  static detail::CpuBackend backend;
  return backend;
}

// The device of the call: that of the first defined tensor; every other defined tensor must match.
Backend& dispatch(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    if (!t->defined()) continue;
    if (!first) {
      first = t;
    } else if (t->device() != first->device()) {
      throw Error(std::string(op) + ": tensors on different devices (" +
                  std::string(device_name(first->device())) + " and " +
                  std::string(device_name(t->device())) + ")");
    }
  }
  return backend_for(first ? first->device() : Device::cpu);
}
}  // namespace

Backend& backend_for(Device device) {
  std::call_once(g_cpu_once, [] { g_backends[0] = &cpu_backend(); });
  Backend* backend = g_backends[static_cast<int>(device)];
  if (!backend) {
    throw Error("tensor: no " + std::string(device_name(device)) + " backend in this build");
  }
  return *backend;
}

void register_backend(Device device, Backend* backend) {
  std::call_once(g_cpu_once, [] { g_backends[0] = &cpu_backend(); });
  g_backends[static_cast<int>(device)] = backend;
}

void linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias) {
  dispatch("linear_forward", {&y, &x, &w, &bias}).linear_forward(y, x, w, bias);
}
PackedWeight pack_weight(const Tensor& w) {
  if (!w.defined() || w.dim() != 2) throw Error("pack_weight: w must be a 2-D [out, in] matrix");
  PackedWeight p;
  p.out = w.size(0);
  p.in = w.size(1);
  p.panels = Tensor::empty({(p.out + kPackedPanel - 1) / kPackedPanel, p.in, kPackedPanel},
                           w.dtype(), w.device());
  dispatch("pack_weight", {&w}).pack_weight(p.panels, w);
  return p;
}
Tensor unpack_weight(const PackedWeight& w) {
  if (!w.defined()) throw Error("unpack_weight: the packed weight is empty");
  Tensor out = Tensor::empty({w.out, w.in}, w.panels.dtype(), w.panels.device());
  dispatch("unpack_weight", {&w.panels}).unpack_weight(out, w.panels);
  return out;
}
void linear_forward(const Tensor& y, const Tensor& x, const PackedWeight& w, const Tensor& bias) {
  if (!w.defined()) throw Error("linear_forward: the packed weight is empty");
  dispatch("linear_forward", {&y, &x, &w.panels, &bias})
      .linear_forward_packed(y, x, w.panels, w.out, bias);
}
GemmWeight pack_gemm_weight(const Tensor& w, GemmUse use) {
  return dispatch("pack_gemm_weight", {&w}).pack_gemm_weight(w, use);
}
void linear_forward(const Tensor& y, const Tensor& x, const GemmWeight& w, const Tensor& bias) {
  if (!w.defined()) throw Error("linear_forward: the packed weight is empty");
  if (w.use != GemmUse::forward)
    throw Error("linear_forward: the weight is packed for the input gradient, not the forward");
  dispatch("linear_forward", {&y, &x, &w.data, &bias}).gemm_weight_product(y, x, w, bias, false);
}
void linear_backward_input(const Tensor& dx, const Tensor& dy, const GemmWeight& w) {
  if (!w.defined()) throw Error("linear_backward_input: the packed weight is empty");
  if (w.use != GemmUse::input_gradient)
    throw Error("linear_backward_input: the weight is packed for the forward, not the gradient");
  dispatch("linear_backward_input", {&dx, &dy, &w.data}).gemm_weight_product(dx, dy, w, {}, true);
}
void linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dbias, const Tensor& dy,
                     const Tensor& x, const Tensor& w) {
  dispatch("linear_backward", {&dy, &dx, &dw, &dbias, &x, &w})
      .linear_backward(dx, dw, dbias, dy, x, w);
}
void matmul(const Tensor& c, const Tensor& a, const Tensor& b, float alpha, bool accumulate) {
  dispatch("matmul", {&c, &a, &b}).matmul(c, a, b, alpha, accumulate);
}

void embedding_forward(const Tensor& out, const Tensor& ids, const Tensor& table) {
  dispatch("embedding_forward", {&out, &ids, &table}).embedding_forward(out, ids, table);
}
void embedding_backward(const Tensor& dtable, const Tensor& dout, const Tensor& ids) {
  dispatch("embedding_backward", {&dtable, &dout, &ids}).embedding_backward(dtable, dout, ids);
}

void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                     float eps) {
  dispatch("rmsnorm_forward", {&out, &rstd, &x, &weight})
      .rmsnorm_forward(out, rstd, x, weight, eps);
}
void rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dout, const Tensor& x,
                      const Tensor& weight, const Tensor& rstd) {
  dispatch("rmsnorm_backward", {&dout, &dx, &dweight, &x, &weight, &rstd})
      .rmsnorm_backward(dx, dweight, dout, x, weight, rstd);
}

void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) {
  dispatch("swiglu_forward", {&out, &gate, &up}).swiglu_forward(out, gate, up);
}
void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate,
                     const Tensor& up) {
  dispatch("swiglu_backward", {&dout, &dgate, &dup, &gate, &up})
      .swiglu_backward(dgate, dup, dout, gate, up);
}
void add(const Tensor& out, const Tensor& a, const Tensor& b) {
  dispatch("add", {&out, &a, &b}).add(out, a, b);
}
void add_inplace(const Tensor& acc, const Tensor& x, float alpha) {
  dispatch("add_inplace", {&acc, &x}).add_inplace(acc, x, alpha);
}
void scale_inplace(const Tensor& x, float alpha) {
  dispatch("scale_inplace", {&x}).scale_inplace(x, alpha);
}

std::vector<double> rope_inverse_frequencies(const RopeConfig& config) {
  const int64_t rotary = config.rotary_dim > 0 ? config.rotary_dim : config.head_dim;
  if (rotary <= 0 || rotary % 2 != 0 || rotary > config.head_dim) {
    throw Error("rope: rotary_dim " + std::to_string(rotary) +
                " must be even, positive and <= head_dim " + std::to_string(config.head_dim));
  }
  if (!(config.theta > 0)) throw Error("rope: theta must be positive");
  std::vector<double> inv(static_cast<size_t>(rotary / 2));
  for (size_t i = 0; i < inv.size(); ++i) {
    inv[i] = std::pow(config.theta, -2.0 * static_cast<double>(i) / static_cast<double>(rotary));
  }
  if (config.llama3_factor > 0) {
    // Llama 3.1: long wavelengths are divided by `factor`, short ones kept, a smooth blend between.
    const double factor = config.llama3_factor, low = config.llama3_low_freq_factor,
                 high = config.llama3_high_freq_factor;
    const double old_len = static_cast<double>(config.llama3_original_max_position);
    const double low_freq_wavelen = old_len / low, high_freq_wavelen = old_len / high;
    for (double& f : inv) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen < high_freq_wavelen) continue;
      if (wavelen > low_freq_wavelen) {
        f /= factor;
        continue;
      }
      const double smooth = (old_len / wavelen - low) / (high - low);
      f = (1.0 - smooth) * f / factor + smooth * f;
    }
  }
  if (config.linear_factor != 1.0) {
    if (!(config.linear_factor > 0)) throw Error("rope: linear_factor must be positive");
    for (double& f : inv) f /= config.linear_factor;
  }
  return inv;
}

void rope_forward(const Tensor& out, const Tensor& x, const Tensor& positions,
                  const RopeConfig& config) {
  dispatch("rope_forward", {&out, &x, &positions}).rope_forward(out, x, positions, config, false);
}
void rope_backward(const Tensor& dx, const Tensor& dout, const Tensor& positions,
                   const RopeConfig& config) {
  dispatch("rope_backward", {&dx, &dout, &positions})
      .rope_forward(dx, dout, positions, config, true);
}

void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                       const Tensor& v, const AttentionOptions& options) {
  dispatch("attention_forward", {&out, &lse, &q, &k, &v, &options.segment_ids})
      .attention_forward(out, lse, q, k, v, options);
}
void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const AttentionOptions& options) {
  dispatch("attention_backward",
           {&dout, &dq, &dk, &dv, &q, &k, &v, &out, &lse, &options.segment_ids})
      .attention_backward(dq, dk, dv, dout, q, k, v, out, lse, options);
}
void attention_decode(const Tensor& out, const Tensor& q, std::span<const Tensor> k_caches,
                      std::span<const Tensor> v_caches, const Tensor& seq_starts,
                      const Tensor& positions, float scale) {
  Backend& backend = dispatch("attention_decode", {&out, &q, &seq_starts, &positions});
  for (const Tensor& t : k_caches) dispatch("attention_decode", {&q, &t});
  for (const Tensor& t : v_caches) dispatch("attention_decode", {&q, &t});
  backend.attention_decode(out, q, k_caches, v_caches, seq_starts, positions, scale);
}

CrossEntropyResult cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                                 const Tensor& dlogits, float grad_scale) {
  return dispatch("cross_entropy", {&logits, &targets, &dlogits})
      .cross_entropy(logits, targets, ignore_index, dlogits, grad_scale);
}
CrossEntropyResult linear_cross_entropy(const Tensor& h, const Tensor& w, const Tensor& targets,
                                        int32_t ignore_index, const Tensor& dh, const Tensor& dw,
                                        float grad_scale, int64_t chunk_rows,
                                        const Tensor& scratch) {
  return dispatch("linear_cross_entropy", {&h, &w, &targets, &dh, &dw, &scratch})
      .linear_cross_entropy(h, w, targets, ignore_index, dh, dw, grad_scale, chunk_rows, scratch);
}
void token_logprobs(const Tensor& logprobs, const Tensor& logits, const Tensor& targets,
                    int32_t ignore_index) {
  dispatch("token_logprobs", {&logprobs, &logits, &targets})
      .token_logprobs(logprobs, logits, targets, ignore_index);
}
int64_t count_targets(const Tensor& targets, int32_t ignore_index) {
  return dispatch("count_targets", {&targets}).count_targets(targets, ignore_index);
}

TrainedRows padded_trained_rows(std::span<const int32_t> targets, int32_t ignore_index,
                                int64_t multiple) {
  TrainedRows out;
  const auto n = static_cast<int64_t>(targets.size());
  for (int32_t t : targets) out.trained += t != ignore_index;
  const int64_t block = (out.trained + multiple - 1) / multiple * multiple;
  if (out.trained == 0 || block >= n) return out;
  out.rows.resize(static_cast<size_t>(block));
  for (int64_t i = 0, j = 0, pad = out.trained; i < n; ++i) {
    const bool trained = targets[static_cast<size_t>(i)] != ignore_index;
    if (!trained && pad == block) continue;
    out.rows[static_cast<size_t>(trained ? j++ : pad++)] = static_cast<int32_t>(i);
  }
  return out;
}

void lora_forward(const Tensor& y, const Tensor& xa, const Tensor& x, const Tensor& a,
                  const Tensor& b, const LoraConfig& config) {
  dispatch("lora_forward", {&y, &xa, &x, &a, &b}).lora_forward(y, xa, x, a, b, config);
}
void lora_backward(const Tensor& dx, const Tensor& da, const Tensor& db, const Tensor& dy,
                   const Tensor& x, const Tensor& xa, const Tensor& a, const Tensor& b,
                   const LoraConfig& config) {
  dispatch("lora_backward", {&dy, &dx, &da, &db, &x, &xa, &a, &b})
      .lora_backward(dx, da, db, dy, x, xa, a, b, config);
}

void adamw_step(const Tensor& param, const Tensor& master, const Tensor& grad, const Tensor& m,
                const Tensor& v, const AdamWConfig& config, int64_t step, float grad_scale) {
  dispatch("adamw_step", {&param, &master, &grad, &m, &v})
      .adamw_step(param, master, grad, m, v, config, step, grad_scale);
}

double global_grad_norm(std::span<const Tensor> grads) {
  double sum = 0;
  for (const Tensor& g : grads) {
    if (g.defined()) sum += dispatch("global_grad_norm", {&g}).sum_of_squares(g);
  }
  return std::sqrt(sum);
}

double clip_grad_norm(std::span<const Tensor> grads, double max_norm) {
  const double norm = global_grad_norm(grads);
  if (max_norm > 0 && norm > max_norm && std::isfinite(norm)) {
    // The same 1e-6 guard as torch.nn.utils.clip_grad_norm_, so clipped runs compare across tools.
    const float coefficient = static_cast<float>(max_norm / (norm + 1e-6));
    for (const Tensor& g : grads) {
      if (g.defined()) scale_inplace(g, coefficient);
    }
  }
  return norm;
}

}  // namespace seqit::tensor

// Internal to src/tensor/: the CPU implementation of the Backend interface. Its methods are defined
// by topic in cpu_matmul.cpp, cpu_elementwise.cpp, cpu_attention.cpp, cpu_loss.cpp, cpu_optim.cpp.
#pragma once

#include "tensor/backend.h"

namespace seqit::tensor::detail {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::cpu; }
  const char* name() const override { return "cpu"; }
  std::shared_ptr<Storage> allocate(size_t nbytes) override;
  void linear_forward(const Tensor& y, const Tensor& x, const Tensor& w,
                      const Tensor& bias) override;
  void linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dbias, const Tensor& dy,
                       const Tensor& x, const Tensor& w) override;
  void matmul(const Tensor& c, const Tensor& a, const Tensor& b, float alpha,
              bool accumulate) override;
  GemmWeight pack_gemm_weight(const Tensor& w, GemmUse use) override;
  void gemm_weight_product(const Tensor& c, const Tensor& a, const GemmWeight& w,
                           const Tensor& bias, bool accumulate) override;
  void pack_weight(const Tensor& panels, const Tensor& w) override;
  void unpack_weight(const Tensor& w, const Tensor& panels) override;
  void linear_forward_packed(const Tensor& y, const Tensor& x, const Tensor& panels, int64_t out,
                             const Tensor& bias) override;
  void embedding_forward(const Tensor& out, const Tensor& ids, const Tensor& table) override;
  void embedding_backward(const Tensor& dtable, const Tensor& dout, const Tensor& ids) override;
  void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                       float eps) override;
  void rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dout,
                        const Tensor& x, const Tensor& weight, const Tensor& rstd) override;
  void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) override;
  void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                       const Tensor& gate, const Tensor& up) override;
  void add(const Tensor& out, const Tensor& a, const Tensor& b) override;
  void add_inplace(const Tensor& acc, const Tensor& x, float alpha) override;
  void scale_inplace(const Tensor& x, float alpha) override;
  void rope_forward(const Tensor& out, const Tensor& x, const Tensor& positions,
                    const RopeConfig& config, bool inverse) override;
  void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                         const Tensor& v, const AttentionOptions& options) override;
  void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                          const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                          const Tensor& lse, const AttentionOptions& options) override;
  void attention_decode(const Tensor& out, const Tensor& q, std::span<const Tensor> k_caches,
                        std::span<const Tensor> v_caches, const Tensor& seq_starts,
                        const Tensor& positions, float scale) override;
  CrossEntropyResult cross_entropy(const Tensor& logits, const Tensor& targets,
                                   int32_t ignore_index, const Tensor& dlogits,
                                   float grad_scale) override;
  CrossEntropyResult linear_cross_entropy(const Tensor& h, const Tensor& w, const Tensor& targets,
                                          int32_t ignore_index, const Tensor& dh, const Tensor& dw,
                                          float grad_scale, int64_t chunk_rows,
                                          const Tensor& scratch) override;
  void token_logprobs(const Tensor& logprobs, const Tensor& logits, const Tensor& targets,
                      int32_t ignore_index) override;
  int64_t count_targets(const Tensor& targets, int32_t ignore_index) override;
  void lora_forward(const Tensor& y, const Tensor& xa, const Tensor& x, const Tensor& a,
                    const Tensor& b, const LoraConfig& config) override;
  void lora_backward(const Tensor& dx, const Tensor& da, const Tensor& db, const Tensor& dy,
                     const Tensor& x, const Tensor& xa, const Tensor& a, const Tensor& b,
                     const LoraConfig& config) override;
  void adamw_step(const Tensor& param, const Tensor& master, const Tensor& grad, const Tensor& m,
                  const Tensor& v, const AdamWConfig& config, int64_t step,
                  float grad_scale) override;
  double sum_of_squares(const Tensor& x) override;
};

}  // namespace seqit::tensor::detail

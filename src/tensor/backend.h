// The device seam. Every op in ops.h is a thin function that checks its tensors share one device
// and calls that device's Backend. The CPU backend (oneDNN + OpenMP + own AVX2/AVX-512 kernels) is
// built in; a CUDA backend (cuBLAS + kernels) would implement this interface in its own library and
// call register_backend(Device::cuda, ...) at start-up — model, infer and train code does not
// change.
//
// The contract of each method is the one documented in ops.h (shapes, dtypes, accumulation); the
// free functions have already checked that every defined tensor lives on this backend's device.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace seqit::tensor {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual const char* name() const = 0;

  // Uninitialised device memory for Tensor::empty (64-byte aligned at least).
  virtual std::shared_ptr<Storage> allocate(size_t nbytes) = 0;

  virtual void linear_forward(const Tensor& y, const Tensor& x, const Tensor& w,
                              const Tensor& bias) = 0;
  virtual void linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dbias,
                               const Tensor& dy, const Tensor& x, const Tensor& w) = 0;
  virtual void matmul(const Tensor& c, const Tensor& a, const Tensor& b, float alpha,
                      bool accumulate) = 0;
  // A frozen weight packed for the GEMM (GemmWeight in ops.h), and c [N, w.n] (= or +=) a [N, w.k]
  // · B with it (+ bias).
  virtual GemmWeight pack_gemm_weight(const Tensor& w, GemmUse use) = 0;
  virtual void gemm_weight_product(const Tensor& c, const Tensor& a, const GemmWeight& w,
                                   const Tensor& bias, bool accumulate) = 0;
  // Weights packed for few-row products (PackedWeight in ops.h): panels [P, I, kPackedPanel].
  virtual void pack_weight(const Tensor& panels, const Tensor& w) = 0;
  virtual void unpack_weight(const Tensor& w, const Tensor& panels) = 0;
  virtual void linear_forward_packed(const Tensor& y, const Tensor& x, const Tensor& panels,
                                     int64_t out, const Tensor& bias) = 0;

  virtual void embedding_forward(const Tensor& out, const Tensor& ids, const Tensor& table) = 0;
  virtual void embedding_backward(const Tensor& dtable, const Tensor& dout, const Tensor& ids) = 0;

  virtual void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& x,
                               const Tensor& weight, float eps) = 0;
  virtual void rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dout,
                                const Tensor& x, const Tensor& weight, const Tensor& rstd) = 0;
  virtual void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up) = 0;
  virtual void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout,
                               const Tensor& gate, const Tensor& up) = 0;
  virtual void add(const Tensor& out, const Tensor& a, const Tensor& b) = 0;
  virtual void add_inplace(const Tensor& acc, const Tensor& x, float alpha) = 0;
  virtual void scale_inplace(const Tensor& x, float alpha) = 0;

  virtual void rope_forward(const Tensor& out, const Tensor& x, const Tensor& positions,
                            const RopeConfig& config, bool inverse) = 0;

  virtual void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q,
                                 const Tensor& k, const Tensor& v,
                                 const AttentionOptions& options) = 0;
  virtual void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                  const Tensor& dout, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& out, const Tensor& lse,
                                  const AttentionOptions& options) = 0;
  virtual void attention_decode(const Tensor& out, const Tensor& q,
                                std::span<const Tensor> k_caches, std::span<const Tensor> v_caches,
                                const Tensor& seq_starts, const Tensor& positions, float scale) = 0;

  virtual CrossEntropyResult cross_entropy(const Tensor& logits, const Tensor& targets,
                                           int32_t ignore_index, const Tensor& dlogits,
                                           float grad_scale) = 0;
  virtual CrossEntropyResult linear_cross_entropy(const Tensor& h, const Tensor& w,
                                                  const Tensor& targets, int32_t ignore_index,
                                                  const Tensor& dh, const Tensor& dw,
                                                  float grad_scale, int64_t chunk_rows,
                                                  const Tensor& scratch) = 0;
  virtual void token_logprobs(const Tensor& logprobs, const Tensor& logits, const Tensor& targets,
                              int32_t ignore_index) = 0;
  virtual int64_t count_targets(const Tensor& targets, int32_t ignore_index) = 0;

  virtual void lora_forward(const Tensor& y, const Tensor& xa, const Tensor& x, const Tensor& a,
                            const Tensor& b, const LoraConfig& config) = 0;
  virtual void lora_backward(const Tensor& dx, const Tensor& da, const Tensor& db, const Tensor& dy,
                             const Tensor& x, const Tensor& xa, const Tensor& a, const Tensor& b,
                             const LoraConfig& config) = 0;

  virtual void adamw_step(const Tensor& param, const Tensor& master, const Tensor& grad,
                          const Tensor& m, const Tensor& v, const AdamWConfig& config, int64_t step,
                          float grad_scale) = 0;
  // Σ x² over a float tensor, accumulated in f64 (for the global gradient norm).
  virtual double sum_of_squares(const Tensor& x) = 0;
};

// The backend for `device`; throws seqit::Error when none is registered (e.g. cuda in a CPU build).
Backend& backend_for(Device device);
// Installs the backend for a device (not owned; it must outlive every op call). The CPU backend is
// registered from the start.
void register_backend(Device device, Backend* backend);

}  // namespace seqit::tensor

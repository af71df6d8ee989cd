// The Llama network's training pass: forward with saved activations, the loss through the chunked
// output head, and the backward written out layer by layer (llm.c style, no autograd), for full
// fine-tuning (a gradient for every weight) and LoRA (adapters on the seven projections, base
// frozen). Shapes in comments:
//   B rows of T tokens, N = B·T, C = hidden, F = intermediate, V = vocabulary, Hq / Hkv heads of D,
//   qd = Hq·D, kvd = Hkv·D, W = qd + 2·kvd (the fused q|k|v width), r = LoRA rank.
//
// The weights are the LlamaModel's own (plain layout, fused wqkv and w_gate_up); the network only
// adds gradient buffers, adapters and a workspace of activations, grown to the largest batch seen.
// See docs/training.md for what is computed and how it is checked.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace seqit::model {

class LlamaModel;
struct LayerWeights;

// Which projections carry an adapter, its rank and scale (PEFT's LoraConfig).
struct LoraSpec {
  int64_t rank = 16;
  float alpha = 16;
  float dropout = 0;
  bool rslora = false;  // scale alpha / sqrt(r) instead of alpha / r
  // HF module short names: q k v o gate up down (q_proj, ..., down_proj are accepted too).
  std::vector<std::string> targets{"q", "k", "v", "o", "gate", "up", "down"};
  uint64_t seed = 0;  // the A matrices' initialisation
};

// B rows of T tokens, row-major. Padding rows/columns carry a valid token id and target -100.
struct TrainBatch {
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> tokens;   // [B·T]
  std::vector<int32_t> targets;  // [B·T] next-token labels, already shifted; -100 = not trained on
  // [B·T] RoPE position of each token, restarting at 0 for each packed example. Empty: 0, 1, ...
  // per row, restarting where segment_ids changes.
  std::vector<int32_t> positions;
  // [B·T] packed-example id of each token (attention stays inside an example). Empty: one example
  // per row (plain causal attention).
  std::vector<int32_t> segment_ids;
};

struct TrainOptions {
  bool lora = false;  // false: full fine-tuning (the model must hold plain f32 weights)
  LoraSpec lora_spec;
  // Keep only each layer's input residual; recompute the layer's forward inside its backward.
  bool checkpoint_activations = false;
  // The GEMMs' operand dtype. f32: everything in f32. bf16 (mixed precision, like torch's bf16
  // autocast): every projection and the output head multiply bf16 operands with f32 accumulation —
  // the weights are rounded from the f32 masters one layer at a time for each pass, the GEMM inputs
  // and outputs that are saved (q|k|v, the attention output, gate|up) and the gradients fed to
  // GEMMs are bf16 — while the residual stream, norms, softmax, the loss, every weight gradient and
  // the optimiser stay f32. On a CPU without bf16 arithmetic the same rounding is computed through
  // f32 GEMMs (the same numbers, slower); tensor::cpu_has_bf16_arithmetic() says which.
  tensor::DType compute = tensor::DType::f32;
  // LoRA under bf16 compute: pack the frozen base once for the GEMMs (see packed_base; ~1.15x the
  // step's speed for two bf16 copies of the projections). False: plain weights (tests compare).
  bool pack_frozen_base = true;
};

// A trainable tensor. value and grad are views: for full fine-tuning, row blocks of the model's
// fused matrices (q_proj = the first qd rows of wqkv, ...) and of their fused gradients; for LoRA,
// the adapter matrices.
struct Parameter {
  // HF canonical name ("model.layers.0.self_attn.q_proj.weight"); LoRA: the PEFT key without the
  // "base_model.model." prefix ("model.layers.0.self_attn.q_proj.lora_A.weight").
  std::string name;
  tensor::Tensor value, grad;  // same shape, contiguous; grad f32
  bool decay = true;           // false for norm weights and biases (weight decay skips them)
  // The backward stage after which this gradient is complete (TrainNetwork::backward_stages()):
  // 0 the output head and final norm, 1 + (layers - 1 - l) layer l, layers + 1 the embedding.
  int stage = 0;
};

class TrainNetwork {
 public:
  // Full fine-tuning: zeroed f32 gradients mirroring every weight. LoRA: per targeted projection
  // A [r, in] ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming-uniform with a = sqrt(5)), B [out, r] =
  // 0, seeded by lora_spec.seed; the base weights get no gradient.
  TrainNetwork(LlamaModel& model, const TrainOptions& options);
  ~TrainNetwork();
  TrainNetwork(const TrainNetwork&) = delete;
  TrainNetwork& operator=(const TrainNetwork&) = delete;

  // The summed cross-entropy of the batch's trained tokens and their count. When grad_scale != 0
  // the gradients of grad_scale · loss_sum ACCUMULATE into the parameters' grads (the trainer
  // passes 1 / trained tokens of the whole optimizer step and zeroes between steps). grad_scale 0
  // is forward_loss.
  tensor::CrossEntropyResult forward_backward(const TrainBatch& batch, float grad_scale);
  // Evaluation: the same loss, no gradients, no LoRA dropout, one layer's activations at a time.
  tensor::CrossEntropyResult forward_loss(const TrainBatch& batch);

  // Trainable tensors in a stable order (embedding, layers in order, final norm, head; LoRA: layer
  // by layer, q k v o gate up down, A then B).
  std::vector<Parameter>& parameters() { return parameters_; }
  void zero_grads();
  // Seeds the LoRA dropout masks of the following passes (the trainer sets one per step; each
  // layer and projection derives its own mask seed from it).
  void set_step_seed(uint64_t seed) { step_seed_ = seed; }
  // Called during forward_backward's backward pass each time a stage's gradients are complete for
  // the pass, stage 0 first (Parameter::stage): data-parallel training starts summing them across
  // processes while the backward goes on. Empty: no calls.
  void set_gradient_hook(std::function<void(int stage)> hook) { gradient_hook_ = std::move(hook); }
  int backward_stages() const;
  // W += scale · B·A for every adapter (for export of merged weights). The adapters are then
  // switched off: later passes compute with the merged base alone. Throws when called twice.
  void merge_lora_into_base();

  // Bytes of the activation workspace as it stands (saved activations, residuals, backward scratch;
  // grown to the largest batch seen): the memory that activation checkpointing reduces.
  int64_t workspace_bytes() const;

  bool lora() const { return options_.lora; }
  float lora_scale() const { return lora_scale_; }
  const TrainOptions& options() const { return options_; }

 private:
  static constexpr int kModules = 7;  // q k v o gate up down
  struct Adapter {
    tensor::Tensor a, b, da, db;  // [r, in], [out, r] and their gradients
  };
  // Full fine-tuning gradients, mirroring LayerWeights (fused layout).
  struct LayerGrads {
    tensor::Tensor attn_norm, wqkv, bqkv, wo, bo, ffn_norm, w_gate_up, w_down;
  };
  // One layer's saved activations at capacity rows (views of N rows are taken per batch). The
  // normalised inputs, the SwiGLU product and the mid-block residual are not saved: the backward
  // recomputes them (element-wise work and the o projection, the same bits) into the workspace's
  // shared h, act and x_mid.
  struct LayerBuffers {
    tensor::Tensor rstd1, qkv, attn, lse, rstd2, gate_up;
    tensor::Tensor x_mid;  // [cap, C] f32, when saves_x_mid() (else the shared one, recomputed)
    std::array<tensor::Tensor, kModules> xa;  // [cap · r] each, for targeted projections
  };
  struct Saved;       // the [N, ...] views of one LayerBuffers for the current batch
  struct BatchViews;  // the batch's ids, targets, positions, segments and dims
  struct Workspace {
    int64_t rows = 0;                      // capacity in tokens
    std::vector<tensor::Tensor> residual;  // [cap, C] layer inputs (and the final residual)
    std::vector<LayerBuffers> layers;
    tensor::Tensor ids, targets, positions, segments;  // [cap] i32
    tensor::Tensor top_rows, top_targets;              // [cap] i32 (BatchViews::top_rows)
    tensor::Tensor final_rstd;                         // [cap] (the final norm's output is in h)
    // [cap, C] and [cap, F] in the compute dtype: rmsnorm(x) and silu(gate)·up of the layer being
    // computed, forward or backward (one pair for the whole network); h also holds the final
    // norm's output through the loss.
    tensor::Tensor h, act;
    tensor::Tensor
        x_mid;  // [cap, C] f32: the residual after attention, of the layer being computed
    // Backward scratch at capacity (d(gate|up) overwrites the layer's saved gate|up); dx, dqkv,
    // dattn and dact are views of dscratch (the loss's scratch before the backward).
    tensor::Tensor dx, dh, dqkv, dattn, dact, dscratch;
    // The top layer on the trained rows alone: their attention output (compute dtype), then the
    // gradients of their residual and attention output (f32), each [R, qd | C | qd] for the most
    // trained rows R a batch has had (none until a batch leaves rows untrained).
    tensor::Tensor top_attn, top_dx, top_dattn;
    // bf16 compute: [cap, max(C, W)] bf16, the residual or q|k|v gradient rounded for the GEMMs.
    tensor::Tensor dy16;
  };

  void reserve(int64_t rows, size_t residuals, size_t layer_sets, bool backward);
  LayerBuffers allocate_layer_buffers(int64_t rows) const;
  BatchViews prepare(const TrainBatch& batch);
  void select_top_rows(BatchViews& bv, const TrainBatch& batch);
  Saved saved_views(const LayerBuffers& buffers, const BatchViews& bv) const;
  tensor::LoraConfig lora_config(int64_t layer, int module) const;
  void adapter_forward(int64_t layer, int module, const tensor::Tensor& y, const tensor::Tensor& x,
                       const Saved& s) const;
  void adapter_backward(int64_t layer, int module, const tensor::Tensor& dx,
                        const tensor::Tensor& dy, const tensor::Tensor& x, const Saved& s);
  // The views of `s` that the top layer's o projection and MLP use when they run on the trained
  // rows alone (bv.R rows: rows 0..R-1 of the shared buffers, the gathered attention output).
  Saved top_views(const Saved& s, const BatchViews& bv) const;
  // top: the layer is the top one and runs its o projection and MLP on the trained rows alone
  // (their views); x_out then receives those R rows, in order, in its first R rows.
  void block_forward(int64_t layer, const tensor::Tensor& x_in, const tensor::Tensor& x_out,
                     const Saved& s, const BatchViews& bv, const Saved* top = nullptr) const;
  // x_mid_current: s.x_mid already holds this layer's x_mid (its forward just ran again). top: as
  // in block_forward; d(x_out) of the R rows is then in the workspace's top_dx, and dx receives
  // d(x_in) of all rows.
  void block_backward(int64_t layer, const tensor::Tensor& dx, const tensor::Tensor& x_in,
                      const Saved& s, const BatchViews& bv, bool x_mid_current,
                      const Saved* top = nullptr);
  void build_parameters();
  bool bf16_compute() const { return options_.compute == tensor::DType::bf16; }
  // LoRA without checkpointing keeps each layer's x_mid (its memory is small next to a LoRA run's)
  // rather than recomputing the o projection in the backward, as full fine-tuning does.
  bool saves_x_mid() const { return options_.lora && !options_.checkpoint_activations; }
  // A weight matrix (or row block) in the compute dtype: itself, or (bf16 compute from f32 masters)
  // its bf16 rounding in weight16_, one matrix at a time (the previous one's copy is replaced).
  tensor::Tensor compute_weight(const tensor::Tensor& w) const;
  // LoRA under bf16 compute packs its frozen base once for the GEMM (tensor::GemmWeight): each
  // projection's weight for the forward and for the input gradient, in bf16 (an f32 base is
  // rounded once, as compute_weight would every time). Two packed copies of the projections cost
  // twice their bf16 size; a product with a plain weight repacks it inside every call (~10% of
  // the step). Built at the first pass; dropped when the adapters are merged into the base.
  enum BaseMatrix { kQkvMatrix, kOMatrix, kGateUpMatrix, kDownMatrix, kBaseMatrices };
  struct PackedLayer {
    std::array<tensor::GemmWeight, kBaseMatrices> forward, input_gradient;
  };
  // The layer's packed base, or null where the base is not packed (full fine-tuning, f32
  // compute, merged adapters, or a CPU whose GEMM has no blocked layout).
  const PackedLayer* packed_base(int64_t layer) const;
  // y = x · wᵀ (+ bias) for base matrix `m` of `layer` (w: that matrix): packed, or compute_weight.
  void project(const tensor::Tensor& y, const tensor::Tensor& x, int64_t layer, BaseMatrix m,
               const tensor::Tensor& w, const tensor::Tensor& bias = {}) const;
  // linear_backward through base matrix `m`: dx += dy · w (packed when there is no weight
  // gradient to take), dw += dyᵀ · x, dbias.
  void project_backward(const tensor::Tensor& dx, const tensor::Tensor& dw,
                        const tensor::Tensor& dbias, const tensor::Tensor& dy,
                        const tensor::Tensor& x, int64_t layer, BaseMatrix m,
                        const tensor::Tensor& w) const;
  // y [N, 2F] (gate|up) = x · w_gate_upᵀ: one GEMM; with a bf16 copy, one per half (so a bf16 copy
  // never holds more than F rows). And its backward.
  void gate_up_forward(int64_t layer, const LayerWeights& L, const Saved& s) const;
  void gate_up_backward(int64_t layer, const LayerWeights& L, const LayerGrads& g,
                        const tensor::Tensor& dh, const Saved& s);

  LlamaModel& model_;
  TrainOptions options_;
  float lora_scale_ = 0;
  bool merged_ = false;
  bool training_pass_ = false;  // forward_backward (LoRA dropout on) or forward_loss (off)
  uint64_t step_seed_ = 0;
  std::function<void(int)> gradient_hook_;
  // [layer][module]; an untargeted projection's adapter is undefined.
  std::vector<std::array<Adapter, kModules>> adapters_;
  std::vector<LayerGrads> grads_;                      // full fine-tuning only
  tensor::Tensor d_embed_, d_final_norm_, d_lm_head_;  // d_lm_head_ undefined when tied
  std::vector<Parameter> parameters_;
  Workspace ws_;
  // The bf16 copy of one weight matrix (a grow-only buffer), and which matrix it holds: its data
  // and element count (null: none; reset every pass).
  mutable std::vector<PackedLayer> packed_;  // per layer (packed_base); empty until the first pass
  mutable bool packing_unavailable_ = false;
  mutable tensor::Tensor weight16_;
  mutable const void* weight16_source_ = nullptr;
  mutable int64_t weight16_count_ = 0;
};

}  // namespace seqit::model

// The Llama-family network (Llama 1/2/3, Mistral, Qwen2, TinyLlama): token embedding, N blocks of
// [RMSNorm -> GQA self-attention with RoPE -> residual, RMSNorm -> SwiGLU MLP -> residual], final
// RMSNorm, output head (tied to the embedding or not). Written as a sequence of tensor ops (llm.c
// style) with the shapes in comments:
//   N = tokens in the step (all sequences flattened), C = hidden, F = intermediate, V = vocabulary,
//   Hq / Hkv = query / key-value heads, D = head dim, W = (Hq + 2 Hkv) D = fused q|k|v width.
//
// Weights live in the compute dtype (f32 or bf16; norms and biases stay f32), q/k in the half RoPE
// layout (see RopeLayout in config.h), with q|k|v and gate|up projections stacked into one matrix
// each so a step makes one GEMM (or GEMV) per stack. Activations are f32.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace seqit::model {

struct LayerWeights {
  tensor::Tensor attn_norm;  // [C] f32
  tensor::Tensor wqkv;       // [W, C]: rows q (Hq·D), then k (Hkv·D), then v (Hkv·D)
  tensor::Tensor bqkv;       // [W] f32, or undefined (Qwen2 has it)
  tensor::Tensor wo;         // [C, Hq·D]
  tensor::Tensor bo;         // [C] f32, or undefined
  tensor::Tensor ffn_norm;   // [C] f32
  tensor::Tensor w_gate_up;  // [2F, C]: rows gate (F), then up (F)
  tensor::Tensor w_down;     // [C, F]
  // Loaded with LoadOptions::pack_for_inference, the four matrices above are held packed here
  // instead (and are undefined there); read them back through LlamaModel::plain_weight.
  tensor::PackedWeight wqkv_packed, wo_packed, w_gate_up_packed, w_down_packed;
};

struct LlamaWeights {
  tensor::Tensor embed;  // [V, C]
  std::vector<LayerWeights> layers;
  tensor::Tensor final_norm;  // [C] f32
  tensor::Tensor lm_head;     // [V, C]; the same tensor as embed when tied
  // Packed for inference: lm_head is then undefined unless tied (the embedding stays plain for the
  // lookup, so a tied head costs one extra [V, C] matrix packed).
  tensor::PackedWeight lm_head_packed;
};

// One sequence's part of a forward step: `count` new tokens (consecutive in ForwardBatch::tokens)
// that continue `cache` at position cache->length(). The step appends their keys/values to the
// cache and advances it.
struct SequenceChunk {
  KvCache* cache = nullptr;
  int64_t count = 0;
};

struct ForwardBatch {
  std::vector<int32_t> tokens;        // [N]: chunk after chunk
  std::vector<SequenceChunk> chunks;  // their counts sum to N
  std::vector<int32_t> logit_rows;    // rows of `tokens` whose next-token logits are wanted
};

// Scratch activations of a forward step, reused across steps (grown when a step is larger).
struct ForwardWorkspace {
  int64_t rows = 0;
  tensor::Tensor x, h, qkv, attn, gate_up, act, ids, positions, seq_starts, cache_positions;
  tensor::Tensor last, last_normed;
};

struct LoadOptions {
  tensor::DType dtype = tensor::DType::f32;  // compute dtype of the weight matrices: f32 or bf16
  // Inference only (generation, scoring, serving): repack the projection matrices and the output
  // head into decoding panels (tensor::PackedWeight) — batched decoding runs several times faster;
  // same memory. Training needs the plain layout (leave false).
  bool pack_for_inference = false;
  // Element type of the KV caches new_cache() makes: f32, or f16 / bf16 for half the cache memory
  // and half the bytes attention reads per decoded token over long contexts (f16 keeps 10 mantissa
  // bits: llama.cpp's default; bf16 8). Attention computes in f32 either way.
  tensor::DType kv_cache = tensor::DType::f32;
};

// "f32" / "f16" / "bf16" -> LoadOptions::kv_cache; anything else throws seqit::Error naming the
// choices.
tensor::DType kv_cache_dtype(const std::string& name);

class LlamaModel : public WeightSource {
 public:
  // Loads every weight of `source` into memory in `options.dtype` (the source may be closed after).
  static std::unique_ptr<LlamaModel> load(const WeightSource& source,
                                          const LoadOptions& options = {});
  // Opens a checkpoint in any format (see Checkpoint::open) and loads it.
  static std::unique_ptr<LlamaModel> load(const std::filesystem::path& path,
                                          const LoadOptions& options = {});

  const ModelConfig& config() const override { return config_; }
  tensor::DType dtype() const { return dtype_; }
  tensor::DType kv_cache_dtype() const { return kv_cache_; }
  const LlamaWeights& weights() const { return weights_; }
  LlamaWeights& mutable_weights() { return weights_; }
  // Where the model came from and the tokenizer found with it (when loaded from a path).
  const std::string& source_path() const { return source_path_; }
  const std::optional<std::filesystem::path>& tokenizer_path() const { return tokenizer_path_; }
  // WeightSource: the in-memory weights by canonical name (for saving with
  // write_hf_model/write_gguf_model).
  void read_f32(const WeightSpec& spec, float* out) const override;
  StorageType preferred_type() const override;

  // Whether the projections are held packed (LoadOptions::pack_for_inference).
  bool packed() const { return packed_; }
  // A projection matrix in the plain [O, I] layout: `plain` itself, or `packed` unpacked (a copy).
  static tensor::Tensor plain_weight(const tensor::Tensor& plain,
                                     const tensor::PackedWeight& packed);
  // A new, empty cache for one sequence of at most `max_length` positions (0 = the model's
  // context).
  KvCache new_cache(int64_t max_length = 0) const;

  // Runs one step over a ragged batch: each chunk's tokens continue its cache. Writes the logits of
  // batch.logit_rows into `logits` [R, V] f32 (R = logit_rows.size()).
  void forward(const ForwardBatch& batch, const tensor::Tensor& logits,
               ForwardWorkspace& workspace) const;

  // The whole sequence at once, without a cache, through the full causal attention op (the path
  // training uses): logits [T, V] f32 for every position.
  tensor::Tensor forward_sequence(std::span<const int32_t> tokens) const;

  // The RoPE settings of this model for the rope op.
  const tensor::RopeConfig& rope() const { return rope_; }

  // One transformer block on the residual stream x [N, C] (updated in place). `attend` computes
  // attention output [N, Hq, D] from q [N, Hq, D] (RoPE applied), k, v [N, Hkv, D].
  using AttendFn =
      std::function<void(int64_t layer, const tensor::Tensor& out, const tensor::Tensor& q,
                         const tensor::Tensor& k, const tensor::Tensor& v)>;
  void block_forward(int64_t layer, const tensor::Tensor& x, const tensor::Tensor& positions,
                     ForwardWorkspace& ws, const AttendFn& attend) const;

 private:
  LlamaModel() = default;
  void prepare_workspace(ForwardWorkspace& ws, int64_t rows) const;
  void output_logits(const tensor::Tensor& x_rows, const tensor::Tensor& logits,
                     ForwardWorkspace& ws) const;

  ModelConfig config_;
  tensor::DType dtype_ = tensor::DType::f32;
  tensor::DType kv_cache_ = tensor::DType::f32;
  bool packed_ = false;
  LlamaWeights weights_;
  tensor::RopeConfig rope_;
  std::string source_path_;
  std::optional<std::filesystem::path> tokenizer_path_;
};

}  // namespace seqit::model

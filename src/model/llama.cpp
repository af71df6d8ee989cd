#include "model/llama.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "util/error.h"

namespace seqit::model {
namespace fs = std::filesystem;
using tensor::DType;
using tensor::Tensor;

namespace {
// Reads canonical weight `name` of `shape` as an f32 tensor.
Tensor read_weight(const WeightSource& source, const std::string& name,
                   const tensor::Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::f32);
  source.read_f32(WeightSpec{name, shape}, t.data<float>());
  return t;
}

tensor::RopeConfig rope_config_of(const ModelConfig& c) {
  tensor::RopeConfig r;
  r.head_dim = c.head_dim;
  r.rotary_dim = c.head_dim;
  r.theta = c.rope_theta;
  r.layout = tensor::RopeLayout::half;  // weights are always held in the half layout
  if (c.rope_scaling.type == "llama3") {
    r.llama3_factor = c.rope_scaling.factor;
    r.llama3_low_freq_factor = c.rope_scaling.low_freq_factor;
    r.llama3_high_freq_factor = c.rope_scaling.high_freq_factor;
    r.llama3_original_max_position = c.rope_scaling.original_max_position_embeddings;
  } else if (c.rope_scaling.type == "linear") {
    r.linear_factor = c.rope_scaling.factor;
  }
  if (!c.rope_freq_factors.empty()) {
    throw Error(
        "RoPE frequency factors (GGUF rope_freqs.weight) are not supported yet by the rope op");
  }
  return r;
}
}  // namespace

std::unique_ptr<LlamaModel> LlamaModel::load(const fs::path& path, const LoadOptions& options) {
  auto checkpoint = Checkpoint::open(path);
  auto model = load(*checkpoint, options);
  model->source_path_ = checkpoint->path();
  model->tokenizer_path_ = checkpoint->tokenizer_path();
  return model;
}

tensor::DType kv_cache_dtype(const std::string& name) {
  if (name == "f32") return DType::f32;
  if (name == "f16") return DType::f16;
  if (name == "bf16") return DType::bf16;
  throw Error(fmt::format("the KV cache holds f32, f16 or bf16, not '{}'", name));
}

std::unique_ptr<LlamaModel> LlamaModel::load(const WeightSource& source,
                                             const LoadOptions& options) {
  if (options.dtype != DType::f32 && options.dtype != DType::bf16) {
    throw Error(
        fmt::format("models compute in f32 or bf16, not {}", tensor::dtype_name(options.dtype)));
  }
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  m->config_ = source.config();
  m->dtype_ = options.dtype;
  if (options.kv_cache != DType::f32 && options.kv_cache != DType::f16 &&
      options.kv_cache != DType::bf16) {
    throw Error(fmt::format("the KV cache holds f32, f16 or bf16, not {}",
                            tensor::dtype_name(options.kv_cache)));
  }
  m->kv_cache_ = options.kv_cache;
  m->rope_ = rope_config_of(m->config_);
  const ModelConfig& c = m->config_;
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), W = qd + 2 * kvd;
  const DType dt = options.dtype;
  // Matrices in the compute dtype; vectors (norms, biases) stay f32.
  auto matrix = [&](const std::string& name, const tensor::Shape& shape) {
    return read_weight(source, name, shape).to(dt);
  };
  // Stacks row blocks read from several weights into one [rows, cols] matrix.
  auto stacked = [&](const std::vector<std::pair<std::string, int64_t>>& parts, int64_t cols,
                     bool is_vector) {
    int64_t rows = 0;
    for (const auto& p : parts) rows += p.second;
    Tensor out = is_vector ? Tensor::empty({rows}, DType::f32) : Tensor::empty({rows, cols}, dt);
    int64_t at = 0;
    for (const auto& [name, n] : parts) {
      tensor::Shape shape = is_vector ? tensor::Shape{n} : tensor::Shape{n, cols};
      out.narrow(0, at, n).copy_from(read_weight(source, name, shape));
      at += n;
    }
    return out;
  };

  LlamaWeights& w = m->weights_;
  w.embed = matrix("model.embed_tokens.weight", {V, C});
  w.layers.resize(static_cast<size_t>(c.num_layers));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    LayerWeights& L = w.layers[l];
    L.attn_norm = read_weight(source, p + "input_layernorm.weight", {C});
    L.wqkv = stacked({{p + "self_attn.q_proj.weight", qd},
                      {p + "self_attn.k_proj.weight", kvd},
                      {p + "self_attn.v_proj.weight", kvd}},
                     C, false);
    if (c.qkv_bias) {
      L.bqkv = stacked({{p + "self_attn.q_proj.bias", qd},
                        {p + "self_attn.k_proj.bias", kvd},
                        {p + "self_attn.v_proj.bias", kvd}},
                       0, true);
    }
    L.wo = matrix(p + "self_attn.o_proj.weight", {C, qd});
    if (c.o_bias) L.bo = read_weight(source, p + "self_attn.o_proj.bias", {C});
    L.ffn_norm = read_weight(source, p + "post_attention_layernorm.weight", {C});
    L.w_gate_up =
        stacked({{p + "mlp.gate_proj.weight", F}, {p + "mlp.up_proj.weight", F}}, C, false);
    L.w_down = matrix(p + "mlp.down_proj.weight", {C, F});
    (void)W;
  }
  w.final_norm = read_weight(source, "model.norm.weight", {C});
  w.lm_head = c.tie_word_embeddings ? w.embed : matrix("lm_head.weight", {V, C});
  if (options.pack_for_inference) {
    // One matrix at a time, so loading peaks at one extra matrix, not a second model.
    auto pack = [](Tensor& plain, tensor::PackedWeight& packed) {
      packed = tensor::pack_weight(plain);
      plain = Tensor();
    };
    for (LayerWeights& L : w.layers) {
      pack(L.wqkv, L.wqkv_packed);
      pack(L.wo, L.wo_packed);
      pack(L.w_gate_up, L.w_gate_up_packed);
      pack(L.w_down, L.w_down_packed);
    }
    if (c.tie_word_embeddings)
      w.lm_head_packed = tensor::pack_weight(w.lm_head);
    else
      pack(w.lm_head, w.lm_head_packed);
    m->packed_ = true;
  }
  return m;
}

Tensor LlamaModel::plain_weight(const Tensor& plain, const tensor::PackedWeight& packed) {
  return plain.defined() ? plain : tensor::unpack_weight(packed);
}

namespace {
// y = x · wᵀ (+ bias) with whichever form of the weight the model holds.
void project(const Tensor& y, const Tensor& x, const Tensor& plain,
             const tensor::PackedWeight& packed, const Tensor& bias = {}) {
  if (packed.defined())
    tensor::linear_forward(y, x, packed, bias);
  else
    tensor::linear_forward(y, x, plain, bias);
}
}  // namespace

StorageType LlamaModel::preferred_type() const {
  return dtype_ == DType::bf16 ? StorageType::bf16 : StorageType::f32;
}

void LlamaModel::read_f32(const WeightSpec& spec, float* out) const {
  const ModelConfig& c = config_;
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), F = c.intermediate_size;
  auto emit = [&](const Tensor& t) {
    std::vector<float> v = tensor::to_float_vector(t);
    if (static_cast<int64_t>(v.size()) != spec.elements()) {
      throw Error(fmt::format("weight '{}': {} values in memory, {} requested", spec.name, v.size(),
                              spec.elements()));
    }
    std::memcpy(out, v.data(), v.size() * sizeof(float));
  };
  const std::string& n = spec.name;
  if (n == "model.embed_tokens.weight") return emit(weights_.embed);
  if (n == "model.norm.weight") return emit(weights_.final_norm);
  if (n == "lm_head.weight") return emit(plain_weight(weights_.lm_head, weights_.lm_head_packed));
  const std::string prefix = "model.layers.";
  if (n.rfind(prefix, 0) == 0) {
    size_t dot = n.find('.', prefix.size());
    int64_t l = std::stoll(n.substr(prefix.size(), dot - prefix.size()));
    std::string part = n.substr(dot + 1);
    if (l >= 0 && l < c.num_layers) {
      const LayerWeights& L = weights_.layers[l];
      auto wqkv = [&] { return plain_weight(L.wqkv, L.wqkv_packed); };
      auto w_gate_up = [&] { return plain_weight(L.w_gate_up, L.w_gate_up_packed); };
      if (part == "input_layernorm.weight") return emit(L.attn_norm);
      if (part == "post_attention_layernorm.weight") return emit(L.ffn_norm);
      if (part == "self_attn.q_proj.weight") return emit(wqkv().narrow(0, 0, qd));
      if (part == "self_attn.k_proj.weight") return emit(wqkv().narrow(0, qd, kvd));
      if (part == "self_attn.v_proj.weight") return emit(wqkv().narrow(0, qd + kvd, kvd));
      if (part == "self_attn.q_proj.bias" && L.bqkv.defined()) return emit(L.bqkv.narrow(0, 0, qd));
      if (part == "self_attn.k_proj.bias" && L.bqkv.defined())
        return emit(L.bqkv.narrow(0, qd, kvd));
      if (part == "self_attn.v_proj.bias" && L.bqkv.defined())
        return emit(L.bqkv.narrow(0, qd + kvd, kvd));
      if (part == "self_attn.o_proj.weight") return emit(plain_weight(L.wo, L.wo_packed));
      if (part == "self_attn.o_proj.bias" && L.bo.defined()) return emit(L.bo);
      if (part == "mlp.gate_proj.weight") return emit(w_gate_up().narrow(0, 0, F));
      if (part == "mlp.up_proj.weight") return emit(w_gate_up().narrow(0, F, F));
      if (part == "mlp.down_proj.weight") return emit(plain_weight(L.w_down, L.w_down_packed));
    }
  }
  throw Error(fmt::format("the model has no weight '{}'", n));
}

KvCache LlamaModel::new_cache(int64_t max_length) const {
  int64_t limit = config_.max_position_embeddings;
  if (config_.sliding_window) limit = std::min(limit, *config_.sliding_window);
  return KvCache(config_, max_length > 0 ? std::min(max_length, limit) : limit, kv_cache_);
}

void LlamaModel::prepare_workspace(ForwardWorkspace& ws, int64_t rows) const {
  if (ws.rows >= rows) return;
  const ModelConfig& c = config_;
  const int64_t W = c.q_dim() + 2 * c.kv_dim();
  ws.rows = rows;
  ws.x = Tensor::empty({rows, c.hidden_size}, DType::f32);
  ws.h = Tensor::empty({rows, c.hidden_size}, DType::f32);
  ws.qkv = Tensor::empty({rows, W}, DType::f32);
  ws.attn = Tensor::empty({rows, c.num_heads, c.head_dim}, DType::f32);
  ws.gate_up = Tensor::empty({rows, 2 * c.intermediate_size}, DType::f32);
  ws.act = Tensor::empty({rows, c.intermediate_size}, DType::f32);
  ws.ids = Tensor::empty({rows}, DType::i32);
  ws.positions = Tensor::empty({rows}, DType::i32);
  ws.last = Tensor::empty({rows, c.hidden_size}, DType::f32);
  ws.last_normed = Tensor::empty({rows, c.hidden_size}, DType::f32);
}

void LlamaModel::block_forward(int64_t layer, const Tensor& x, const Tensor& positions,
                               ForwardWorkspace& ws, const AttendFn& attend) const {
  using namespace tensor;
  const ModelConfig& c = config_;
  const LayerWeights& L = weights_.layers[layer];
  const int64_t N = x.size(0), qd = c.q_dim(), kvd = c.kv_dim(), F = c.intermediate_size;
  const int64_t Hq = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  Tensor h = ws.h.narrow(0, 0, N);              // [N, C]
  Tensor qkv = ws.qkv.narrow(0, 0, N);          // [N, W]
  Tensor attn = ws.attn.narrow(0, 0, N);        // [N, Hq, D]
  Tensor gate_up = ws.gate_up.narrow(0, 0, N);  // [N, 2F]
  Tensor act = ws.act.narrow(0, 0, N);          // [N, F]

  // Attention: x += wo · attend(rope(q), rope(k), v), with q|k|v = wqkv · rmsnorm(x) (+ bias).
  rmsnorm_forward(h, {}, x, L.attn_norm, eps);                // [N, C]
  project(qkv, h, L.wqkv, L.wqkv_packed, L.bqkv);             // [N, W]
  Tensor q = qkv.narrow(1, 0, qd).view({N, Hq, D});           // [N, Hq, D]
  Tensor k = qkv.narrow(1, qd, kvd).view({N, Hkv, D});        // [N, Hkv, D]
  Tensor v = qkv.narrow(1, qd + kvd, kvd).view({N, Hkv, D});  // [N, Hkv, D]
  rope_forward(q, q, positions, rope_);
  rope_forward(k, k, positions, rope_);
  attend(layer, attn, q, k, v);                             // [N, Hq, D]
  project(h, attn.view({N, qd}), L.wo, L.wo_packed, L.bo);  // [N, C]
  add_inplace(x, h);

  // MLP: x += w_down · (silu(gate) * up), with gate|up = w_gate_up · rmsnorm(x).
  rmsnorm_forward(h, {}, x, L.ffn_norm, eps);                             // [N, C]
  project(gate_up, h, L.w_gate_up, L.w_gate_up_packed);                   // [N, 2F]
  swiglu_forward(act, gate_up.narrow(1, 0, F), gate_up.narrow(1, F, F));  // [N, F]
  project(h, act, L.w_down, L.w_down_packed);                             // [N, C]
  add_inplace(x, h);
}

void LlamaModel::output_logits(const Tensor& x_rows, const Tensor& logits,
                               ForwardWorkspace& ws) const {
  const int64_t R = x_rows.size(0);
  Tensor normed = ws.last_normed.narrow(0, 0, R);  // [R, C]
  tensor::rmsnorm_forward(normed, {}, x_rows, weights_.final_norm,
                          static_cast<float>(config_.rms_norm_eps));
  project(logits, normed, weights_.lm_head, weights_.lm_head_packed);  // [R, V]
}

void LlamaModel::forward(const ForwardBatch& batch, const Tensor& logits,
                         ForwardWorkspace& ws) const {
  const ModelConfig& c = config_;
  const auto N = static_cast<int64_t>(batch.tokens.size());
  const auto S = static_cast<int64_t>(batch.chunks.size());
  const auto R = static_cast<int64_t>(batch.logit_rows.size());
  int64_t total = 0;
  for (const SequenceChunk& chunk : batch.chunks) total += chunk.count;
  if (total != N || N == 0)
    throw Error(fmt::format("forward: chunks cover {} tokens, the batch has {}", total, N));
  if (logits.dim() != 2 || logits.size(0) != R || logits.size(1) != c.vocab_size ||
      logits.dtype() != DType::f32) {
    throw Error(fmt::format("forward: logits must be f32 [{}, {}], got {}", R, c.vocab_size,
                            logits.describe()));
  }
  for (int32_t id : batch.tokens) {
    if (id < 0 || id >= c.vocab_size)
      throw Error(fmt::format("token id {} is outside the vocabulary of {}", id, c.vocab_size));
  }
  prepare_workspace(ws, std::max(N, R));
  // Per-token positions and the chunk boundaries; reserve cache room first (may throw: nothing
  // changed yet).
  std::vector<int32_t> seq_starts(static_cast<size_t>(S + 1)), starts(static_cast<size_t>(S));
  int32_t* positions = ws.positions.data<int32_t>();
  int64_t row = 0;
  for (int64_t s = 0; s < S; ++s) {
    const SequenceChunk& chunk = batch.chunks[s];
    chunk.cache->reserve(chunk.cache->length() + chunk.count);
    seq_starts[s] = static_cast<int32_t>(row);
    starts[s] = static_cast<int32_t>(chunk.cache->length());
    for (int64_t i = 0; i < chunk.count; ++i)
      positions[row++] = static_cast<int32_t>(chunk.cache->length() + i);
  }
  seq_starts[S] = static_cast<int32_t>(N);
  Tensor seq_starts_t = Tensor::from_ints(seq_starts, {S + 1});
  Tensor starts_t = Tensor::from_ints(starts, {S});
  Tensor pos = ws.positions.narrow(0, 0, N);
  Tensor ids = ws.ids.narrow(0, 0, N);
  std::memcpy(ids.data<int32_t>(), batch.tokens.data(), static_cast<size_t>(N) * sizeof(int32_t));

  Tensor x = ws.x.narrow(0, 0, N);  // [N, C] residual stream
  tensor::embedding_forward(x, ids, weights_.embed);

  std::vector<Tensor> k_caches(static_cast<size_t>(S)), v_caches(static_cast<size_t>(S));
  auto attend = [&](int64_t layer, const Tensor& out, const Tensor& q, const Tensor& k,
                    const Tensor& v) {
    // Append this step's keys/values to each sequence's cache, then attend over the cache.
    for (int64_t s = 0; s < S; ++s) {
      const SequenceChunk& chunk = batch.chunks[s];
      const int64_t p = starts[s], n = chunk.count;
      const Tensor& kc = chunk.cache->keys(layer);  // [capacity, Hkv, D]
      const Tensor& vc = chunk.cache->values(layer);
      if (n > 0) {
        kc.narrow(0, p, n).copy_from(k.narrow(0, seq_starts[s], n));
        vc.narrow(0, p, n).copy_from(v.narrow(0, seq_starts[s], n));
      }
      k_caches[s] = kc.narrow(0, 0, p + n);
      v_caches[s] = vc.narrow(0, 0, p + n);
    }
    tensor::attention_decode(out, q, k_caches, v_caches, seq_starts_t, starts_t);
  };
  for (int64_t l = 0; l < c.num_layers; ++l) block_forward(l, x, pos, ws, attend);
  for (const SequenceChunk& chunk : batch.chunks) chunk.cache->advance(chunk.count);

  if (R == 0) return;
  Tensor last = ws.last.narrow(0, 0, R);  // [R, C] rows whose logits are wanted
  for (int64_t r = 0; r < R; ++r) {
    int32_t src = batch.logit_rows[r];
    if (src < 0 || src >= N)
      throw Error(fmt::format("forward: logit row {} is outside the batch of {}", src, N));
    last.narrow(0, r, 1).copy_from(x.narrow(0, src, 1));
  }
  output_logits(last, logits, ws);
}

Tensor LlamaModel::forward_sequence(std::span<const int32_t> tokens) const {
  const ModelConfig& c = config_;
  const auto T = static_cast<int64_t>(tokens.size());
  if (T == 0) throw Error("forward_sequence: no tokens");
  for (int32_t id : tokens) {
    if (id < 0 || id >= c.vocab_size)
      throw Error(fmt::format("token id {} is outside the vocabulary of {}", id, c.vocab_size));
  }
  ForwardWorkspace ws;
  prepare_workspace(ws, T);
  Tensor ids = ws.ids.narrow(0, 0, T);
  std::memcpy(ids.data<int32_t>(), tokens.data(), static_cast<size_t>(T) * sizeof(int32_t));
  Tensor pos = ws.positions.narrow(0, 0, T);
  for (int64_t t = 0; t < T; ++t) pos.data<int32_t>()[t] = static_cast<int32_t>(t);
  Tensor x = ws.x.narrow(0, 0, T);  // [T, C]
  tensor::embedding_forward(x, ids, weights_.embed);
  auto attend = [&](int64_t, const Tensor& out, const Tensor& q, const Tensor& k, const Tensor& v) {
    // One sequence as a batch of one: [1, T, H, D] views, plain causal mask.
    tensor::attention_forward(out.unsqueeze(0), {}, q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0));
  };
  for (int64_t l = 0; l < c.num_layers; ++l) block_forward(l, x, pos, ws, attend);
  Tensor logits = Tensor::empty({T, c.vocab_size}, DType::f32);
  output_logits(x, logits, ws);
  return logits;
}

}  // namespace seqit::model

#include "model/train_network.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/llama.h"
#include "tensor/sampling.h"
#include "util/error.h"

namespace seqit::model {
using tensor::DType;
using tensor::Tensor;

namespace {
constexpr int32_t kIgnore = -100;

// The seven projections an adapter can sit on, in parameter order.
enum Module { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
constexpr const char* kModuleNames[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                        "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                        "mlp.down_proj"};
constexpr const char* kModuleShort[] = {"q", "k", "v", "o", "gate", "up", "down"};

int module_of(const std::string& target) {
  for (int m = 0; m < 7; ++m) {
    const std::string full = std::string(kModuleNames[m]);
    const std::string proj = full.substr(full.find('.') + 1);  // "q_proj"
    if (target == kModuleShort[m] || target == proj || target == full) return m;
  }
  throw Error(fmt::format(
      "LoRA target '{}' is not one of q k v o gate up down (or q_proj ... down_proj)", target));
}

// Where projection m of a layer lives: its base weight is rows [row0, row0 + out) of a (fused)
// matrix [*, in]; its output is columns [row0, row0 + out) of the (fused) output.
struct ModuleShape {
  int64_t in, out, row0;
};
ModuleShape module_shape(const ModelConfig& c, int m) {
  const int64_t C = c.hidden_size, F = c.intermediate_size, qd = c.q_dim(), kvd = c.kv_dim();
  switch (m) {
    case kQ:
      return {C, qd, 0};
    case kK:
      return {C, kvd, qd};
    case kV:
      return {C, kvd, qd + kvd};
    case kO:
      return {qd, C, 0};
    case kGate:
      return {C, F, 0};
    case kUp:
      return {C, F, F};
    default:
      return {F, C, 0};
  }
}
const Tensor& base_matrix(const LayerWeights& L, int m) {
  switch (m) {
    case kQ:
    case kK:
    case kV:
      return L.wqkv;
    case kO:
      return L.wo;
    case kGate:
    case kUp:
      return L.w_gate_up;
    default:
      return L.w_down;
  }
}

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t state = a ^ (b * 0x9e3779b97f4a7c15ull);
  return tensor::splitmix64(state);
}

Tensor f32_zeros(const tensor::Shape& shape) {
  return Tensor::zeros(shape, DType::f32);
}
Tensor f32_like(const Tensor& t) {
  return t.defined() ? f32_zeros(t.shape()) : Tensor();
}
}  // namespace

// The top layer's rows are padded to a multiple of this (tensor::padded_trained_rows).
constexpr int64_t kTopRows = 16;

// The batch as tensors (views of the workspace's i32 buffers) and its dims.
struct TrainNetwork::BatchViews {
  int64_t B = 0, T = 0, N = 0;
  Tensor ids, targets;                 // [N]
  Tensor positions;                    // [B, T]
  tensor::AttentionOptions attention;  // segment_ids [B, T] when packed
  // The rows whose target is not ignored (in order) and a few ignored ones after them (padding to
  // a multiple of kTopRows), when that is fewer than N (else R = 0; set by forward_backward): the
  // top layer's o projection and MLP, the final norm and the head run on these rows alone.
  int64_t R = 0;
  Tensor top_rows, top_targets;  // [R] i32: row indices and their targets
};

// One layer's saved activations for this batch: [N, ...] views of a LayerBuffers, plus views of
// the workspace's shared h, act and x_mid (recomputed, never saved per layer; x_mid is saved per
// layer when saves_x_mid()). x_mid, the rstds and lse are f32; the rest is in the compute dtype.
struct TrainNetwork::Saved {
  Tensor x_mid;                     // [N, C] residual after attention (shared, or the layer's)
  Tensor rstd1, rstd2;              // [N] of rmsnorm(x_in), rmsnorm(x_mid)
  Tensor qkv;                       // [N, W] q|k after RoPE, v
  Tensor q, k, v;                   // [B, T, Hq|Hkv, D] views of qkv
  Tensor attn, attn4;               // [N, qd] attention output and its [B, T, Hq, D] view
  Tensor lse;                       // [B, Hq, T]
  Tensor gate_up, gate, up;         // [N, 2F] and its two [N, F] column blocks
  std::array<Tensor, kModules> xa;  // [N, r] dropout(x)·Aᵀ per adapter
  Tensor h;                         // [N, C] shared: rmsnorm(x_in), then rmsnorm(x_mid)
  Tensor act;                       // [N, F] shared: silu(gate)·up
  // The top layer on the trained rows (top_views): the batch row of each row, whose LoRA dropout
  // masks it takes. Null: row r is batch row r.
  const int32_t* rows = nullptr;
};

TrainNetwork::TrainNetwork(LlamaModel& model, const TrainOptions& options)
    : model_(model), options_(options) {
  const ModelConfig& c = model.config();
  if (model.packed())
    throw Error("training needs the plain weight layout (load without pack_for_inference)");
  if (options.compute != DType::f32 && options.compute != DType::bf16) {
    throw Error(fmt::format("training computes in f32 or bf16, not {}",
                            tensor::dtype_name(options.compute)));
  }
  LlamaWeights& w = model.mutable_weights();
  if (!options.lora) {
    if (model.dtype() != DType::f32) {
      throw Error(
          fmt::format("full fine-tuning needs f32 weights, the model holds {} (load with dtype "
                      "f32, or use LoRA)",
                      tensor::dtype_name(model.dtype())));
    }
    // An untied embedding's gradient has rows only for the tokens a step saw: its memory is taken
    // where written and handed back by zero_grads (125 MiB at a 32k vocabulary and hidden 1024,
    // ~4 MiB of it used by a step of 1,024 tokens). A tied one also takes the head's dense
    // gradient.
    d_embed_ = c.tie_word_embeddings ? f32_zeros(w.embed.shape())
                                     : Tensor::zeros_on_demand(w.embed.shape(), DType::f32);
    grads_.resize(w.layers.size());
    for (size_t l = 0; l < w.layers.size(); ++l) {
      const LayerWeights& L = w.layers[l];
      LayerGrads& g = grads_[l];
      g.attn_norm = f32_like(L.attn_norm);
      g.wqkv = f32_like(L.wqkv);
      g.bqkv = f32_like(L.bqkv);
      g.wo = f32_like(L.wo);
      g.bo = f32_like(L.bo);
      g.ffn_norm = f32_like(L.ffn_norm);
      g.w_gate_up = f32_like(L.w_gate_up);
      g.w_down = f32_like(L.w_down);
    }
    d_final_norm_ = f32_like(w.final_norm);
    if (!c.tie_word_embeddings) d_lm_head_ = f32_like(w.lm_head);
  } else {
    const LoraSpec& spec = options.lora_spec;
    if (spec.rank <= 0) throw Error(fmt::format("LoRA rank must be positive, got {}", spec.rank));
    if (!(spec.dropout >= 0 && spec.dropout < 1))
      throw Error(fmt::format("LoRA dropout must be in [0, 1), got {}", spec.dropout));
    const auto r = static_cast<double>(spec.rank);
    lora_scale_ = static_cast<float>(spec.alpha / (spec.rslora ? std::sqrt(r) : r));
    std::array<bool, kModules> targeted{};
    for (const std::string& t : spec.targets) targeted[static_cast<size_t>(module_of(t))] = true;
    adapters_.resize(w.layers.size());
    for (size_t l = 0; l < w.layers.size(); ++l) {
      for (int m = 0; m < kModules; ++m) {
        if (!targeted[static_cast<size_t>(m)]) continue;
        const ModuleShape ms = module_shape(c, m);
        Adapter& ad = adapters_[l][static_cast<size_t>(m)];
        ad.a = Tensor::empty({spec.rank, ms.in}, DType::f32);
        ad.b = f32_zeros({ms.out, spec.rank});
        ad.da = f32_zeros(ad.a.shape());
        ad.db = f32_zeros(ad.b.shape());
        // PEFT: kaiming_uniform_(A, a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0 (the adapter
        // starts as the identity).
        uint64_t state = mix(spec.seed, l * kModules + static_cast<uint64_t>(m) + 1);
        const double bound = 1.0 / std::sqrt(static_cast<double>(ms.in));
        float* a = ad.a.data<float>();
        for (int64_t i = 0; i < ad.a.numel(); ++i) {
          const double u =
              static_cast<double>(tensor::splitmix64(state) >> 11) * 0x1.0p-53;  // [0, 1)
          a[i] = static_cast<float>((2 * u - 1) * bound);
        }
      }
    }
  }
  build_parameters();
}

TrainNetwork::~TrainNetwork() = default;

void TrainNetwork::build_parameters() {
  const ModelConfig& c = model_.config();
  LlamaWeights& w = model_.mutable_weights();
  parameters_.clear();
  int stage = 0;  // of the parameters added next
  auto add = [&](std::string name, const Tensor& value, const Tensor& grad, bool decay) {
    parameters_.push_back(Parameter{std::move(name), value, grad, decay, stage});
  };
  const auto layers = static_cast<int>(w.layers.size());
  auto layer_stage = [&](size_t l) { return 1 + (layers - 1 - static_cast<int>(l)); };
  if (options_.lora) {
    for (size_t l = 0; l < adapters_.size(); ++l) {
      for (int m = 0; m < kModules; ++m) {
        const Adapter& ad = adapters_[l][static_cast<size_t>(m)];
        if (!ad.a.defined()) continue;
        stage = layer_stage(l);
        const std::string p = fmt::format("model.layers.{}.{}.", l, kModuleNames[m]);
        add(p + "lora_A.weight", ad.a, ad.da, true);
        add(p + "lora_B.weight", ad.b, ad.db, true);
      }
    }
    return;
  }
  // Full fine-tuning: the HF weights as row blocks of the fused matrices (contiguous views).
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), F = c.intermediate_size;
  stage = layers + 1;
  add("model.embed_tokens.weight", w.embed, d_embed_, true);
  for (size_t l = 0; l < w.layers.size(); ++l) {
    stage = layer_stage(l);
    const LayerWeights& L = w.layers[l];
    const LayerGrads& g = grads_[l];
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", L.attn_norm, g.attn_norm, false);
    add(p + "self_attn.q_proj.weight", L.wqkv.narrow(0, 0, qd), g.wqkv.narrow(0, 0, qd), true);
    add(p + "self_attn.k_proj.weight", L.wqkv.narrow(0, qd, kvd), g.wqkv.narrow(0, qd, kvd), true);
    add(p + "self_attn.v_proj.weight", L.wqkv.narrow(0, qd + kvd, kvd),
        g.wqkv.narrow(0, qd + kvd, kvd), true);
    if (L.bqkv.defined()) {
      add(p + "self_attn.q_proj.bias", L.bqkv.narrow(0, 0, qd), g.bqkv.narrow(0, 0, qd), false);
      add(p + "self_attn.k_proj.bias", L.bqkv.narrow(0, qd, kvd), g.bqkv.narrow(0, qd, kvd), false);
      add(p + "self_attn.v_proj.bias", L.bqkv.narrow(0, qd + kvd, kvd),
          g.bqkv.narrow(0, qd + kvd, kvd), false);
    }
    add(p + "self_attn.o_proj.weight", L.wo, g.wo, true);
    if (L.bo.defined()) add(p + "self_attn.o_proj.bias", L.bo, g.bo, false);
    add(p + "post_attention_layernorm.weight", L.ffn_norm, g.ffn_norm, false);
    add(p + "mlp.gate_proj.weight", L.w_gate_up.narrow(0, 0, F), g.w_gate_up.narrow(0, 0, F), true);
    add(p + "mlp.up_proj.weight", L.w_gate_up.narrow(0, F, F), g.w_gate_up.narrow(0, F, F), true);
    add(p + "mlp.down_proj.weight", L.w_down, g.w_down, true);
  }
  stage = 0;
  add("model.norm.weight", w.final_norm, d_final_norm_, false);
  if (d_lm_head_.defined()) add("lm_head.weight", w.lm_head, d_lm_head_, true);
}

int TrainNetwork::backward_stages() const {
  return static_cast<int>(model_.config().num_layers) + 2;
}

void TrainNetwork::zero_grads() {
  for (Parameter& p : parameters_) p.grad.zero();
}

// ---- workspace ----------------------------------------------------------------------------------

TrainNetwork::LayerBuffers TrainNetwork::allocate_layer_buffers(int64_t rows) const {
  const ModelConfig& c = model_.config();
  const int64_t F = c.intermediate_size, qd = c.q_dim(), W = qd + 2 * c.kv_dim();
  const DType cd = options_.compute;
  LayerBuffers b;
  b.rstd1 = Tensor::empty({rows}, DType::f32);
  b.qkv = Tensor::empty({rows, W}, cd);
  b.attn = Tensor::empty({rows, qd}, cd);
  b.lse = Tensor::empty({rows * c.num_heads}, DType::f32);
  b.rstd2 = Tensor::empty({rows}, DType::f32);
  b.gate_up = Tensor::empty({rows, 2 * F}, cd);
  if (saves_x_mid()) b.x_mid = Tensor::empty({rows, c.hidden_size}, DType::f32);
  if (options_.lora) {
    for (int m = 0; m < kModules; ++m) {
      if (adapters_[0][static_cast<size_t>(m)].a.defined()) {
        b.xa[static_cast<size_t>(m)] = Tensor::empty({rows * options_.lora_spec.rank}, DType::f32);
      }
    }
  }
  return b;
}

// Grows the workspace to hold `rows` tokens, `residuals` residual buffers, `layer_sets` sets of
// layer activations and (when `backward`) the gradient scratch. Buffers are only ever replaced by
// larger ones, so a steady batch shape allocates once.
void TrainNetwork::reserve(int64_t rows, size_t residuals, size_t layer_sets, bool backward) {
  const ModelConfig& c = model_.config();
  const int64_t C = c.hidden_size, F = c.intermediate_size, qd = c.q_dim(), W = qd + 2 * c.kv_dim();
  if (rows > ws_.rows) {
    const size_t keep_residuals = ws_.residual.size(), keep_sets = ws_.layers.size();
    const bool keep_backward = ws_.dx.defined();
    ws_ = Workspace{};
    ws_.rows = rows;
    ws_.residual.resize(keep_residuals);
    ws_.layers.resize(keep_sets);
    for (Tensor& r : ws_.residual) r = Tensor::empty({rows, C}, DType::f32);
    for (LayerBuffers& b : ws_.layers) b = allocate_layer_buffers(rows);
    ws_.ids = Tensor::empty({rows}, DType::i32);
    ws_.targets = Tensor::empty({rows}, DType::i32);
    ws_.positions = Tensor::empty({rows}, DType::i32);
    ws_.segments = Tensor::empty({rows}, DType::i32);
    ws_.top_rows = Tensor::empty({rows}, DType::i32);
    ws_.top_targets = Tensor::empty({rows}, DType::i32);
    ws_.final_rstd = Tensor::empty({rows}, DType::f32);
    ws_.h = Tensor::empty({rows, C}, options_.compute);
    ws_.act = Tensor::empty({rows, F}, options_.compute);
    ws_.x_mid = Tensor::empty({rows, C}, DType::f32);
    backward = backward || keep_backward;
  }
  while (ws_.residual.size() < residuals)
    ws_.residual.push_back(Tensor::empty({ws_.rows, C}, DType::f32));
  while (ws_.layers.size() < layer_sets) ws_.layers.push_back(allocate_layer_buffers(ws_.rows));
  if (backward && !ws_.dx.defined()) {
    ws_.dh = Tensor::empty({ws_.rows, C}, DType::f32);
    // dx, dqkv, dattn and dact in one block: between the forward and the backward it holds the
    // loss's logits chunk (linear_cross_entropy's scratch), which then takes no memory of its own.
    ws_.dscratch = Tensor::empty({ws_.rows * (C + W + qd + F)}, DType::f32);
    int64_t offset = 0;
    auto part = [&](int64_t width) {
      Tensor t = ws_.dscratch.narrow(0, offset, ws_.rows * width).view({ws_.rows, width});
      offset += ws_.rows * width;
      return t;
    };
    ws_.dx = part(C);
    ws_.dqkv = part(W);
    ws_.dattn = part(qd);
    ws_.dact = part(F);
    if (bf16_compute()) ws_.dy16 = Tensor::empty({ws_.rows * std::max(C, W)}, DType::bf16);
  }
}

int64_t TrainNetwork::workspace_bytes() const {
  int64_t bytes = 0;
  auto add = [&](const Tensor& t) {
    if (t.defined()) bytes += static_cast<int64_t>(t.nbytes());
  };
  for (const Tensor& r : ws_.residual) add(r);
  for (const LayerBuffers& b : ws_.layers) {
    for (const Tensor* t : {&b.rstd1, &b.qkv, &b.attn, &b.lse, &b.rstd2, &b.gate_up, &b.x_mid})
      add(*t);
    for (const Tensor& t : b.xa) add(t);
  }
  for (const Tensor* t :
       {&ws_.ids, &ws_.targets, &ws_.positions, &ws_.segments, &ws_.top_rows, &ws_.top_targets,
        &ws_.final_rstd, &ws_.h, &ws_.act, &ws_.x_mid, &ws_.dscratch, &ws_.dh, &ws_.top_attn,
        &ws_.top_dx, &ws_.top_dattn, &ws_.dy16})
    add(*t);
  return bytes;
}

// Checks the batch and copies it into the workspace's i32 buffers (the workspace must hold N rows).
TrainNetwork::BatchViews TrainNetwork::prepare(const TrainBatch& batch) {
  const ModelConfig& c = model_.config();
  BatchViews bv;
  bv.B = batch.batch, bv.T = batch.seq_len, bv.N = batch.batch * batch.seq_len;
  if (bv.B <= 0 || bv.T <= 0)
    throw Error(fmt::format("train batch: {} rows of {} tokens", bv.B, bv.T));
  const auto N = static_cast<size_t>(bv.N);
  auto check_size = [&](const std::vector<int32_t>& v, const char* what, bool optional) {
    if ((optional && v.empty()) || v.size() == N) return;
    throw Error(fmt::format("train batch: {} has {} values, {} rows of {} tokens need {}", what,
                            v.size(), bv.B, bv.T, N));
  };
  check_size(batch.tokens, "tokens", false);
  check_size(batch.targets, "targets", false);
  check_size(batch.positions, "positions", true);
  check_size(batch.segment_ids, "segment_ids", true);
  for (size_t i = 0; i < N; ++i) {
    const int32_t t = batch.targets[i];
    if (t != kIgnore && (t < 0 || t >= c.vocab_size)) {
      throw Error(fmt::format(
          "train batch: target {} at row {} column {} is outside the vocabulary of {}", t,
          static_cast<int64_t>(i) / bv.T, static_cast<int64_t>(i) % bv.T, c.vocab_size));
    }
  }
  std::memcpy(ws_.ids.data<int32_t>(), batch.tokens.data(), N * sizeof(int32_t));
  std::memcpy(ws_.targets.data<int32_t>(), batch.targets.data(), N * sizeof(int32_t));
  int32_t* pos = ws_.positions.data<int32_t>();
  if (!batch.positions.empty()) {
    std::memcpy(pos, batch.positions.data(), N * sizeof(int32_t));
  } else {
    // 0, 1, ... per row, restarting where the packed example changes.
    for (int64_t b = 0; b < bv.B; ++b) {
      int32_t p = 0;
      for (int64_t t = 0; t < bv.T; ++t, ++p) {
        const size_t i = static_cast<size_t>(b * bv.T + t);
        if (t > 0 && !batch.segment_ids.empty() && batch.segment_ids[i] != batch.segment_ids[i - 1])
          p = 0;
        pos[i] = p;
      }
    }
  }
  bv.ids = ws_.ids.narrow(0, 0, bv.N);
  bv.targets = ws_.targets.narrow(0, 0, bv.N);
  bv.positions = ws_.positions.narrow(0, 0, bv.N).view({bv.B, bv.T});
  if (!batch.segment_ids.empty()) {
    std::memcpy(ws_.segments.data<int32_t>(), batch.segment_ids.data(), N * sizeof(int32_t));
    bv.attention.segment_ids = ws_.segments.narrow(0, 0, bv.N).view({bv.B, bv.T});
  }
  return bv;
}

// The top layer's rows (BatchViews::R) into the workspace, when fewer than all.
void TrainNetwork::select_top_rows(BatchViews& bv, const TrainBatch& batch) {
  const tensor::TrainedRows top = tensor::padded_trained_rows(batch.targets, kIgnore, kTopRows);
  if (top.rows.empty()) return;
  bv.R = static_cast<int64_t>(top.rows.size());
  if (!ws_.top_dx.defined() || ws_.top_dx.size(0) < bv.R) {  // grown to the most rows seen
    const ModelConfig& c = model_.config();
    ws_.top_attn = Tensor::empty({bv.R, c.q_dim()}, options_.compute);
    ws_.top_dx = Tensor::empty({bv.R, c.hidden_size}, DType::f32);
    ws_.top_dattn = Tensor::empty({bv.R, c.q_dim()}, DType::f32);
  }
  int32_t* rows = ws_.top_rows.data<int32_t>();
  int32_t* targets = ws_.top_targets.data<int32_t>();
  for (int64_t j = 0; j < bv.R; ++j) {
    rows[j] = top.rows[static_cast<size_t>(j)];
    targets[j] = batch.targets[static_cast<size_t>(rows[j])];
  }
  bv.top_rows = ws_.top_rows.narrow(0, 0, bv.R);
  bv.top_targets = ws_.top_targets.narrow(0, 0, bv.R);
}

TrainNetwork::Saved TrainNetwork::saved_views(const LayerBuffers& b, const BatchViews& bv) const {
  const ModelConfig& c = model_.config();
  const int64_t N = bv.N, B = bv.B, T = bv.T, F = c.intermediate_size, qd = c.q_dim(),
                kvd = c.kv_dim();
  const int64_t Hq = c.num_heads, Hkv = c.num_kv_heads, D = c.head_dim;
  Saved s;
  s.x_mid = (b.x_mid.defined() ? b.x_mid : ws_.x_mid).narrow(0, 0, N);
  s.rstd1 = b.rstd1.narrow(0, 0, N);
  s.qkv = b.qkv.narrow(0, 0, N);
  s.q = s.qkv.narrow(1, 0, qd).view({B, T, Hq, D});
  s.k = s.qkv.narrow(1, qd, kvd).view({B, T, Hkv, D});
  s.v = s.qkv.narrow(1, qd + kvd, kvd).view({B, T, Hkv, D});
  s.attn = b.attn.narrow(0, 0, N);
  s.attn4 = s.attn.view({B, T, Hq, D});
  s.lse = b.lse.narrow(0, 0, N * Hq).view({B, Hq, T});
  s.rstd2 = b.rstd2.narrow(0, 0, N);
  s.gate_up = b.gate_up.narrow(0, 0, N);
  s.gate = s.gate_up.narrow(1, 0, F);
  s.up = s.gate_up.narrow(1, F, F);
  s.h = ws_.h.narrow(0, 0, N);
  s.act = ws_.act.narrow(0, 0, N);
  const int64_t r = options_.lora_spec.rank;
  for (size_t m = 0; m < kModules; ++m) {
    if (b.xa[m].defined()) s.xa[m] = b.xa[m].narrow(0, 0, N * r).view({N, r});
  }
  return s;
}

TrainNetwork::Saved TrainNetwork::top_views(const Saved& s, const BatchViews& bv) const {
  const int64_t R = bv.R;
  Saved t = s;
  t.x_mid = s.x_mid.narrow(0, 0, R);
  t.attn = ws_.top_attn.narrow(0, 0, R);
  t.rstd2 = s.rstd2.narrow(0, 0, R);
  t.gate_up = s.gate_up.narrow(0, 0, R);
  t.gate = s.gate.narrow(0, 0, R);
  t.up = s.up.narrow(0, 0, R);
  t.h = s.h.narrow(0, 0, R);
  t.act = s.act.narrow(0, 0, R);
  t.rows = bv.top_rows.data<int32_t>();
  for (int m : {kO, kGate, kUp, kDown}) {
    if (s.xa[static_cast<size_t>(m)].defined())
      t.xa[static_cast<size_t>(m)] = s.xa[static_cast<size_t>(m)].narrow(0, 0, R);
  }
  return t;
}

// ---- LoRA on one projection ---------------------------------------------------------------------

tensor::LoraConfig TrainNetwork::lora_config(int64_t layer, int module) const {
  tensor::LoraConfig cfg;
  cfg.scale = lora_scale_;
  cfg.dropout = training_pass_ ? options_.lora_spec.dropout
                               : 0.0f;  // evaluation: no dropout (PEFT's eval mode)
  // Each (step, layer, projection) draws its own mask; forward, recompute and backward agree.
  cfg.seed = mix(mix(options_.lora_spec.seed, step_seed_),
                 static_cast<uint64_t>(layer) * kModules + static_cast<uint64_t>(module));
  return cfg;
}

// y[N, out] += scale · dropout(x)[N, in] · Aᵀ · Bᵀ, when projection `module` of `layer` has an
// adapter.
void TrainNetwork::adapter_forward(int64_t layer, int module, const Tensor& y, const Tensor& x,
                                   const Saved& s) const {
  if (!options_.lora || merged_) return;
  const Adapter& ad = adapters_[static_cast<size_t>(layer)][static_cast<size_t>(module)];
  if (!ad.a.defined()) return;
  tensor::LoraConfig cfg = lora_config(layer, module);
  cfg.rows = s.rows;
  tensor::lora_forward(y, s.xa[static_cast<size_t>(module)], x, ad.a, ad.b, cfg);
}

// dA, dB accumulate; dx[N, in] += the adapter's part of the input gradient.
void TrainNetwork::adapter_backward(int64_t layer, int module, const Tensor& dx, const Tensor& dy,
                                    const Tensor& x, const Saved& s) {
  if (!options_.lora || merged_) return;
  const Adapter& ad = adapters_[static_cast<size_t>(layer)][static_cast<size_t>(module)];
  if (!ad.a.defined()) return;
  tensor::LoraConfig cfg = lora_config(layer, module);
  cfg.rows = s.rows;
  tensor::lora_backward(dx, ad.da, ad.db, dy, x, s.xa[static_cast<size_t>(module)], ad.a, ad.b,
                        cfg);
}

// ---- weights in the compute dtype ---------------------------------------------------------------

Tensor TrainNetwork::compute_weight(const Tensor& w) const {
  if (!bf16_compute() || w.dtype() == DType::bf16) return w;
  if (weight16_source_ != w.raw_data() || weight16_count_ != w.numel()) {
    if (!weight16_.defined() || weight16_.numel() < w.numel())
      weight16_ = Tensor::empty({w.numel()}, DType::bf16);
    weight16_source_ = nullptr;  // while converting
    weight16_.narrow(0, 0, w.numel()).view(w.shape()).copy_from(w);
    weight16_source_ = w.raw_data(), weight16_count_ = w.numel();
  }
  return weight16_.narrow(0, 0, w.numel()).view(w.shape());
}

const TrainNetwork::PackedLayer* TrainNetwork::packed_base(int64_t layer) const {
  if (!options_.lora || !options_.pack_frozen_base || merged_ || !bf16_compute() ||
      packing_unavailable_)
    return nullptr;
  const LlamaWeights& w = model_.weights();
  if (packed_.empty()) {
    std::vector<PackedLayer> packed(w.layers.size());
    for (size_t l = 0; l < w.layers.size(); ++l) {
      const LayerWeights& L = w.layers[l];
      const std::array<const Tensor*, kBaseMatrices> matrices{&L.wqkv, &L.wo, &L.w_gate_up,
                                                              &L.w_down};
      for (int m = 0; m < kBaseMatrices; ++m) {
        Tensor w16 = *matrices[static_cast<size_t>(m)];
        if (w16.dtype() != DType::bf16) {
          w16 = Tensor::empty(w16.shape(), DType::bf16);
          w16.copy_from(*matrices[static_cast<size_t>(m)]);
        }
        PackedLayer& p = packed[l];
        p.forward[static_cast<size_t>(m)] = tensor::pack_gemm_weight(w16, tensor::GemmUse::forward);
        p.input_gradient[static_cast<size_t>(m)] =
            tensor::pack_gemm_weight(w16, tensor::GemmUse::input_gradient);
        if (!p.forward[static_cast<size_t>(m)].defined() ||
            !p.input_gradient[static_cast<size_t>(m)].defined()) {
          packing_unavailable_ = true;  // no blocked layout here: plain weights throughout
          return nullptr;
        }
      }
    }
    packed_ = std::move(packed);
  }
  return &packed_[static_cast<size_t>(layer)];
}

void TrainNetwork::project(const Tensor& y, const Tensor& x, int64_t layer, BaseMatrix m,
                           const Tensor& w, const Tensor& bias) const {
  if (const PackedLayer* p = packed_base(layer))
    return tensor::linear_forward(y, x, p->forward[static_cast<size_t>(m)], bias);
  tensor::linear_forward(y, x, compute_weight(w), bias);
}

void TrainNetwork::project_backward(const Tensor& dx, const Tensor& dw, const Tensor& dbias,
                                    const Tensor& dy, const Tensor& x, int64_t layer, BaseMatrix m,
                                    const Tensor& w) const {
  const PackedLayer* p = packed_base(layer);
  if (p && !dw.defined() && !dbias.defined()) {
    if (dx.defined())
      tensor::linear_backward_input(dx, dy, p->input_gradient[static_cast<size_t>(m)]);
    return;
  }
  tensor::linear_backward(dx, dw, dbias, dy, x, compute_weight(w));
}

void TrainNetwork::gate_up_forward(int64_t layer, const LayerWeights& L, const Saved& s) const {
  const int64_t F = model_.config().intermediate_size;
  if (packed_base(layer) != nullptr)
    return project(s.gate_up, s.h, layer, kGateUpMatrix, L.w_gate_up);
  if (!bf16_compute() || L.w_gate_up.dtype() == DType::bf16) {
    tensor::linear_forward(s.gate_up, s.h, L.w_gate_up);  // gate_up [N, 2F]
    return;
  }
  tensor::linear_forward(s.gate, s.h, compute_weight(L.w_gate_up.narrow(0, 0, F)));  // [N, F]
  tensor::linear_forward(s.up, s.h, compute_weight(L.w_gate_up.narrow(0, F, F)));
}

// dh [N, C] += d(gate|up) · w_gate_up; dw_gate_up [2F, C] += d(gate|up)ᵀ · h. d(gate|up) is in
// s.gate / s.up (written over them).
void TrainNetwork::gate_up_backward(int64_t layer, const LayerWeights& L, const LayerGrads& g,
                                    const Tensor& dh, const Saved& s) {
  const int64_t F = model_.config().intermediate_size;
  if (!g.w_gate_up.defined() && packed_base(layer) != nullptr)
    return project_backward(dh, {}, {}, s.gate_up, s.h, layer, kGateUpMatrix, L.w_gate_up);
  if (!bf16_compute() || L.w_gate_up.dtype() == DType::bf16) {
    tensor::linear_backward(dh, g.w_gate_up, {}, s.gate_up, s.h, L.w_gate_up);
    return;
  }
  for (int64_t half = 0; half < 2; ++half) {
    const Tensor dy = half == 0 ? s.gate : s.up;  // [N, F]
    const Tensor dw = g.w_gate_up.defined() ? g.w_gate_up.narrow(0, half * F, F) : Tensor();
    tensor::linear_backward(dh, dw, {}, dy, s.h,
                            compute_weight(L.w_gate_up.narrow(0, half * F, F)));
  }
}

// ---- one block ----------------------------------------------------------------------------------

// x_out[N, C] = x_in + attention(x_in) + mlp(...), saving in `s` what block_backward needs. x_out
// may alias x_in (x_in is last read before x_out is written). The projections multiply in the
// compute dtype: with bf16, h, attn, act and the weights are bf16 and the products accumulate in
// f32 (into f32 x_mid / x_out, rounded once into bf16 qkv / gate_up).
void TrainNetwork::block_forward(int64_t layer, const Tensor& x_in, const Tensor& x_out,
                                 const Saved& s, const BatchViews& bv, const Saved* top) const {
  using namespace tensor;
  const ModelConfig& c = model_.config();
  const LayerWeights& L = model_.weights().layers[static_cast<size_t>(layer)];
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const int64_t qd = c.q_dim(), kvd = c.kv_dim();

  // Attention: x_mid = x_in + wo · attend(rope(q), rope(k), v),
  // q|k|v = wqkv · rmsnorm(x_in) (+ bias).
  rmsnorm_forward(s.h, s.rstd1, x_in, L.attn_norm, eps);   // h = h1 [N, C], rstd1 [N]
  project(s.qkv, s.h, layer, kQkvMatrix, L.wqkv, L.bqkv);  // qkv [N, W]
  adapter_forward(layer, kQ, s.qkv.narrow(1, 0, qd), s.h, s);
  adapter_forward(layer, kK, s.qkv.narrow(1, qd, kvd), s.h, s);
  adapter_forward(layer, kV, s.qkv.narrow(1, qd + kvd, kvd), s.h, s);
  rope_forward(s.q, s.q, bv.positions, model_.rope());  // q [B, T, Hq, D]
  rope_forward(s.k, s.k, bv.positions, model_.rope());  // k [B, T, Hkv, D]
  // attn [B, T, Hq, D], lse [B, Hq, T]; segment ids keep packed examples apart.
  attention_forward(s.attn4, s.lse, s.q, s.k, s.v, bv.attention);
  if (top == nullptr) {
    project(s.x_mid, s.attn, layer, kOMatrix, L.wo, L.bo);  // o [N, C]
    adapter_forward(layer, kO, s.x_mid, s.attn, s);
    add_inplace(s.x_mid, x_in);  // x_mid = x_in + o
  } else {
    // The top layer's outputs feed only the loss: the rest of it runs on the trained rows, the
    // others' keys and values having been used above. x_mid = x_in + o row by row, as below.
    const Tensor o = x_out.narrow(0, 0, bv.R);          // [R, C] scratch until the MLP's output
    embedding_forward(top->attn, bv.top_rows, s.attn);  // attn [R, qd] gathered
    embedding_forward(top->x_mid, bv.top_rows, x_in);   // x_mid [R, C] = x_in, gathered
    project(o, top->attn, layer, kOMatrix, L.wo, L.bo);
    adapter_forward(layer, kO, o, top->attn, *top);
    add_inplace(top->x_mid, o);  // x_in + o: the same bits as o + x_in
  }
  const Saved& m = top != nullptr ? *top : s;  // the rows the MLP runs on
  const Tensor y = top != nullptr ? x_out.narrow(0, 0, bv.R) : x_out;

  // MLP: x_out = x_mid + w_down · (silu(gate) · up), gate|up = w_gate_up · rmsnorm(x_mid).
  rmsnorm_forward(m.h, m.rstd2, m.x_mid, L.ffn_norm, eps);  // h = h2 [N, C], rstd2 [N]
  gate_up_forward(layer, L, m);                             // gate_up [N, 2F]
  adapter_forward(layer, kGate, m.gate, m.h, m);
  adapter_forward(layer, kUp, m.up, m.h, m);
  swiglu_forward(m.act, m.gate, m.up);              // act [N, F]
  project(y, m.act, layer, kDownMatrix, L.w_down);  // mlp [N, C]
  adapter_forward(layer, kDown, y, m.act, m);
  add_inplace(y, m.x_mid);  // x_out = x_mid + mlp
}

// The block's backward, in reverse. dx [N, C] holds d(x_out) on entry and d(x_in) on exit (each
// rmsnorm_backward adds its input gradient onto the residual gradient that passes through; LoRA's
// first layer leaves d(x_in) incomplete, as nothing below it trains). h1, h2
// and act are recomputed from the saved inputs by the same ops as in the forward: the same bits.
void TrainNetwork::block_backward(int64_t layer, const Tensor& dx, const Tensor& x_in,
                                  const Saved& s, const BatchViews& bv, bool x_mid_current,
                                  const Saved* top) {
  using namespace tensor;
  const ModelConfig& c = model_.config();
  const LayerWeights& L = model_.weights().layers[static_cast<size_t>(layer)];
  static const LayerGrads kNoGrads;  // LoRA: the base gets no gradient (undefined = skipped)
  const LayerGrads& g = options_.lora ? kNoGrads : grads_[static_cast<size_t>(layer)];
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const int64_t N = bv.N, qd = c.q_dim(), kvd = c.kv_dim();
  Tensor dh = ws_.dh.narrow(0, 0, N);        // [N, C]
  Tensor dqkv = ws_.dqkv.narrow(0, 0, N);    // [N, W]
  Tensor dattn = ws_.dattn.narrow(0, 0, N);  // [N, qd]
  Tensor dact = ws_.dact.narrow(0, 0, N);    // [N, F]
  // A gradient as a GEMM operand: itself (f32), or rounded to bf16 into dy16 (bf16 compute; a bias
  // gradient is then summed from the f32 gradient).
  const bool b16 = bf16_compute();
  auto gemm_operand = [&](const Tensor& grad) {  // grad [N, cols] contiguous
    if (!b16) return grad;
    Tensor r = ws_.dy16.narrow(0, 0, grad.numel()).view(grad.shape());
    r.copy_from(grad);
    return r;
  };
  auto bias_grad = [&](const Tensor& dbias, const Tensor& dy, const Tensor& w) {
    if (b16 && dbias.defined()) linear_backward({}, {}, dbias, dy, {}, w);
  };

  if (!x_mid_current) {  // x_mid = x_in + wo · attn (+ bias, adapter), recomputed
    if (top != nullptr) throw Error("train: the top layer's x_mid is never recomputed");
    project(s.x_mid, s.attn, layer, kOMatrix, L.wo, L.bo);
    adapter_forward(layer, kO, s.x_mid, s.attn, s);
    add_inplace(s.x_mid, x_in);
  }

  // The MLP and the o projection run on the rows of the forward: all N, or (top) the R trained
  // ones, whose d(x_out) is in top_dx.
  const int64_t M = top != nullptr ? bv.R : N;
  const Saved& m = top != nullptr ? *top : s;
  Tensor dxm = top != nullptr ? ws_.top_dx.narrow(0, 0, M) : dx;            // [M, C]
  Tensor dattn_m = top != nullptr ? ws_.top_dattn.narrow(0, 0, M) : dattn;  // [M, qd]
  Tensor dh_m = dh.narrow(0, 0, M), dact_m = dact.narrow(0, 0, M);

  // MLP: x_out = x_mid + down(act), act = swiglu(gate_up), gate_up = w_gate_up · h2,
  // h2 = rmsnorm(x_mid).
  swiglu_forward(m.act, m.gate, m.up);  // act [M, F], recomputed
  dact_m.zero();
  project_backward(dact_m, g.w_down, {}, gemm_operand(dxm), m.act, layer, kDownMatrix,
                   L.w_down);  // dact, dw_down [C, F]
  adapter_backward(layer, kDown, dact_m, dxm, m.act, m);
  const Tensor dgate = m.gate, dup = m.up;
  swiglu_backward(dgate, dup, dact_m, m.gate, m.up);   // dgate, dup [M, F], in place
  rmsnorm_forward(m.h, {}, m.x_mid, L.ffn_norm, eps);  // h = h2 [M, C], recomputed
  dh_m.zero();
  // dh2 [M, C], dw_gate_up [2F, C]
  gate_up_backward(layer, L, g, dh_m, m);
  adapter_backward(layer, kGate, dh_m, dgate, m.h, m);
  adapter_backward(layer, kUp, dh_m, dup, m.h, m);
  rmsnorm_backward(dxm, g.ffn_norm, dh_m, m.x_mid, L.ffn_norm, m.rstd2);  // dxm = d(x_mid)

  // Attention: x_mid = x_in + wo · attn, attn = attend(rope(q), rope(k), v), q|k|v = wqkv · h1.
  dattn_m.zero();
  // dattn [M, qd], dwo [C, qd]
  project_backward(dattn_m, g.wo, b16 ? Tensor() : g.bo, gemm_operand(dxm), m.attn, layer, kOMatrix,
                   L.wo);
  bias_grad(g.bo, dxm, L.wo);
  adapter_backward(layer, kO, dattn_m, dxm, m.attn, m);
  if (top != nullptr) {  // back to all rows: the others' d(x_mid) and d(attn) are zero
    Tensor(dx).zero();
    embedding_backward(dx, dxm, bv.top_rows);  // scatter (each row once)
    dattn.zero();
    embedding_backward(dattn, dattn_m, bv.top_rows);
  }
  dqkv.zero();
  const Tensor dq = dqkv.narrow(1, 0, qd).view(s.q.shape());    // [B, T, Hq, D]
  const Tensor dk = dqkv.narrow(1, qd, kvd).view(s.k.shape());  // [B, T, Hkv, D]
  const Tensor dv = dqkv.narrow(1, qd + kvd, kvd).view(s.v.shape());
  attention_backward(dq, dk, dv, dattn.view(s.attn4.shape()), s.q, s.k, s.v, s.attn4, s.lse,
                     bv.attention);
  rope_backward(dq, dq, bv.positions, model_.rope());  // d(q before RoPE)
  rope_backward(dk, dk, bv.positions, model_.rope());
  rmsnorm_forward(s.h, {}, x_in, L.attn_norm, eps);  // h = h1 [N, C], recomputed
  // d(x_in) of the first layer reaches only the embedding, which LoRA does not train: its q|k|v
  // adapters then take their own gradients alone.
  const bool input_grad = !(options_.lora && layer == 0);
  if (input_grad) {
    dh.zero();
    // dh1 [N, C], dwqkv [W, C], dbqkv [W]
    project_backward(dh, g.wqkv, b16 ? Tensor() : g.bqkv, gemm_operand(dqkv), s.h, layer,
                     kQkvMatrix, L.wqkv);
    bias_grad(g.bqkv, dqkv, L.wqkv);
  }
  const Tensor dh1 = input_grad ? dh : Tensor();
  adapter_backward(layer, kQ, dh1, dqkv.narrow(1, 0, qd), s.h, s);
  adapter_backward(layer, kK, dh1, dqkv.narrow(1, qd, kvd), s.h, s);
  adapter_backward(layer, kV, dh1, dqkv.narrow(1, qd + kvd, kvd), s.h, s);
  if (input_grad) rmsnorm_backward(dx, g.attn_norm, dh, x_in, L.attn_norm, s.rstd1);  // d(x_in)
}

// ---- the whole network --------------------------------------------------------------------------

tensor::CrossEntropyResult TrainNetwork::forward_backward(const TrainBatch& batch,
                                                          float grad_scale) {
  if (grad_scale == 0) return forward_loss(batch);
  training_pass_ = true;
  const ModelConfig& c = model_.config();
  const LlamaWeights& w = model_.weights();
  const auto layers = static_cast<size_t>(c.num_layers);
  const bool checkpoint = options_.checkpoint_activations;
  const int64_t N = batch.batch * batch.seq_len;
  // Residual stream at every layer boundary; layer activations for every layer, or (checkpointing)
  // one set that each layer's backward refills by recomputing its forward.
  reserve(N, layers + 1, checkpoint ? 1 : layers, true);
  BatchViews bv = prepare(batch);
  select_top_rows(bv, batch);
  weight16_source_ = nullptr;  // the weights may have changed since the last pass
  auto residual = [&](size_t l) { return ws_.residual[l].narrow(0, 0, N); };  // [N, C]
  auto saved = [&](size_t l) { return saved_views(ws_.layers[checkpoint ? 0 : l], bv); };

  // When some rows' targets are ignored (the prompt's, with prompt masking), the top layer's o
  // projection and MLP, the final norm and the head run on the other R rows alone: the ignored
  // rows' top outputs reach nothing but the loss, which skips them. Below the top, all rows.
  const bool top_only = bv.R > 0;
  const Saved top_saved = top_only ? top_views(saved(layers - 1), bv) : Saved{};
  const Saved* top = top_only ? &top_saved : nullptr;
  const int64_t M = top_only ? bv.R : N;  // rows of the final norm and head

  // forward
  tensor::embedding_forward(residual(0), bv.ids, w.embed);  // x0 [N, C]
  for (size_t l = 0; l < layers; ++l) {
    block_forward(static_cast<int64_t>(l), residual(l), residual(l + 1), saved(l), bv,
                  l + 1 == layers ? top : nullptr);
  }
  const Tensor xL = residual(layers).narrow(0, 0, M);
  // The final norm's output lives only through the loss: in h, which every layer's backward
  // refills.
  const Tensor hN = ws_.h.narrow(0, 0, M), rstdN = ws_.final_rstd.narrow(0, 0, M);
  const auto eps = static_cast<float>(c.rms_norm_eps);
  tensor::rmsnorm_forward(hN, rstdN, xL, w.final_norm, eps);  // hN [M, C], rstdN [M]

  // loss and the head's backward: logits = hN · lm_headᵀ, chunk by chunk, never [M, V] at once.
  Tensor dhN = ws_.dh.narrow(0, 0, M);
  dhN.zero();
  // A tied head's gradient goes into the embedding's (embedding_backward adds the lookup's later).
  const Tensor d_head = options_.lora ? Tensor() : (d_lm_head_.defined() ? d_lm_head_ : d_embed_);
  // bf16 compute: hN is bf16; an f32 head is rounded to bf16 block by block inside the op, a bf16
  // head (a bf16 LoRA base) taken as it is, half the rows per chunk then, as the chunk's logit
  // gradient is held in bf16 too.
  const tensor::CrossEntropyResult result = tensor::linear_cross_entropy(
      hN, w.lm_head, top_only ? bv.top_targets : bv.targets, kIgnore, dhN, d_head, grad_scale,
      bf16_compute() ? 128 : 256, ws_.dscratch);

  // backward
  Tensor dx = ws_.dx.narrow(0, 0, N);  // [N, C] gradient of the residual stream
  // d(x_L): of all rows, or of the R rows (block_backward's top path takes it from top_dx)
  Tensor dxL = top_only ? ws_.top_dx.narrow(0, 0, M) : dx;
  dxL.zero();
  tensor::rmsnorm_backward(dxL, options_.lora ? Tensor() : d_final_norm_, dhN, xL, w.final_norm,
                           rstdN);
  auto stage_done = [&](int stage) {
    if (gradient_hook_) gradient_hook_(stage);
  };
  stage_done(0);
  for (size_t l = layers; l-- > 0;) {
    const Saved s = saved(l);
    const Saved* layer_top = l + 1 == layers ? top : nullptr;
    if (checkpoint) {  // refill the shared buffers: the same ops on the same input, the same bits
      block_forward(static_cast<int64_t>(l), residual(l), residual(l + 1), s, bv, layer_top);
    }
    // The top layer's x_mid is still in place from the forward, as is every layer's after its
    // recomputed forward.
    block_backward(static_cast<int64_t>(l), dx, residual(l), s, bv,
                   checkpoint || saves_x_mid() || l + 1 == layers, layer_top);
    stage_done(1 + static_cast<int>(layers - 1 - l));
  }
  if (!options_.lora) tensor::embedding_backward(d_embed_, dx, bv.ids);
  stage_done(static_cast<int>(layers) + 1);
  return result;
}

tensor::CrossEntropyResult TrainNetwork::forward_loss(const TrainBatch& batch) {
  const ModelConfig& c = model_.config();
  const LlamaWeights& w = model_.weights();
  const int64_t N = batch.batch * batch.seq_len;
  reserve(N, 1, 1, false);
  training_pass_ = false;
  const BatchViews bv = prepare(batch);
  weight16_source_ = nullptr;
  const Tensor x = ws_.residual[0].narrow(0, 0, N);  // [N, C], updated in place layer by layer
  const Saved s = saved_views(ws_.layers[0], bv);
  tensor::embedding_forward(x, bv.ids, w.embed);
  for (int64_t l = 0; l < c.num_layers; ++l) block_forward(l, x, x, s, bv);
  const Tensor hN = ws_.h.narrow(0, 0, N);
  tensor::rmsnorm_forward(hN, {}, x, w.final_norm, static_cast<float>(c.rms_norm_eps));
  return tensor::linear_cross_entropy(hN, w.lm_head, bv.targets, kIgnore);
}

void TrainNetwork::merge_lora_into_base() {
  if (!options_.lora) throw Error("merge_lora_into_base: the network trains no LoRA adapters");
  if (merged_) throw Error("merge_lora_into_base: the adapters are already merged");
  const ModelConfig& c = model_.config();
  LlamaWeights& w = model_.mutable_weights();
  for (size_t l = 0; l < adapters_.size(); ++l) {
    for (int m = 0; m < kModules; ++m) {
      const Adapter& ad = adapters_[l][static_cast<size_t>(m)];
      if (!ad.a.defined()) continue;
      const ModuleShape ms = module_shape(c, m);
      Tensor block = base_matrix(w.layers[l], m).narrow(0, ms.row0, ms.out);  // W [out, in]
      if (block.dtype() == DType::f32) {
        // W += scale · B [out, r] · A [r, in]
        tensor::matmul(block, ad.b, ad.a, lora_scale_, true);
      } else {
        Tensor merged = Tensor::empty(block.shape(), DType::f32);
        merged.copy_from(block);
        tensor::matmul(merged, ad.b, ad.a, lora_scale_, true);
        block.copy_from(merged);  // rounded once into the compute dtype
      }
    }
  }
  merged_ = true;
  weight16_source_ = nullptr;
  packed_.clear();  // the base changed: the packed copies are stale (and no longer used)
}

}  // namespace seqit::model

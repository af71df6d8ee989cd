#include "model/checkpoint.h"

#include <fmt/format.h>

#include <cstring>
#include <unordered_map>

#include "model/safetensors.h"
#include "util/error.h"
#include "util/gguf.h"
#include "util/log.h"

namespace seqit::model {
namespace fs = std::filesystem;

std::string_view format_name(CheckpointFormat format) {
  switch (format) {
    case CheckpointFormat::hf:
      return "hf";
    case CheckpointFormat::gguf:
      return "gguf";
    case CheckpointFormat::llama2c:
      return "llama2c";
  }
  return "?";
}

int64_t WeightSpec::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<WeightSpec> expected_weights(const ModelConfig& c) {
  std::vector<WeightSpec> w;
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  w.push_back({"model.embed_tokens.weight", {V, C}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    std::string p = fmt::format("model.layers.{}.", l);
    w.push_back({p + "input_layernorm.weight", {C}});
    w.push_back({p + "self_attn.q_proj.weight", {c.q_dim(), C}});
    w.push_back({p + "self_attn.k_proj.weight", {c.kv_dim(), C}});
    w.push_back({p + "self_attn.v_proj.weight", {c.kv_dim(), C}});
    if (c.qkv_bias) {
      w.push_back({p + "self_attn.q_proj.bias", {c.q_dim()}});
      w.push_back({p + "self_attn.k_proj.bias", {c.kv_dim()}});
      w.push_back({p + "self_attn.v_proj.bias", {c.kv_dim()}});
    }
    w.push_back({p + "self_attn.o_proj.weight", {C, c.q_dim()}});
    if (c.o_bias) w.push_back({p + "self_attn.o_proj.bias", {C}});
    w.push_back({p + "post_attention_layernorm.weight", {C}});
    w.push_back({p + "mlp.gate_proj.weight", {F, C}});
    w.push_back({p + "mlp.up_proj.weight", {F, C}});
    w.push_back({p + "mlp.down_proj.weight", {C, F}});
  }
  w.push_back({"model.norm.weight", {C}});
  if (!c.tie_word_embeddings) w.push_back({"lm_head.weight", {V, C}});
  return w;
}

void permute_rope_rows(const float* in, float* out, int64_t heads, int64_t head_dim,
                       int64_t row_elems, RopeLayout from, RopeLayout to) {
  const int64_t half = head_dim / 2;
  const size_t row_bytes = static_cast<size_t>(row_elems) * sizeof(float);
  if (from == to) {
    std::memcpy(out, in, static_cast<size_t>(heads * head_dim) * row_bytes);
    return;
  }
  // Within a head, interleaved row 2i+j holds what half-layout row j*half+i holds (j = 0 real, 1
  // imag).
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        int64_t interleaved = h * head_dim + 2 * i + j;
        int64_t half_row = h * head_dim + j * half + i;
        int64_t src = from == RopeLayout::interleaved ? interleaved : half_row;
        int64_t dst = from == RopeLayout::interleaved ? half_row : interleaved;
        std::memcpy(out + dst * row_elems, in + src * row_elems, row_bytes);
      }
    }
  }
}

Checkpoint::Checkpoint() = default;
Checkpoint::~Checkpoint() = default;

std::unique_ptr<Checkpoint> Checkpoint::open(const fs::path& path) {
  std::unique_ptr<Checkpoint> c(new Checkpoint());
  c->path_ = path.string();
  if (!fs::exists(path)) throw Error("no such file or folder").in_file(path.string());
  if (fs::is_directory(path)) {
    if (fs::exists(path / "config.json")) {
      open_hf(*c, path);
    } else {
      std::vector<fs::path> ggufs;
      for (const auto& e : fs::directory_iterator(path)) {
        if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
      }
      if (ggufs.size() != 1)
        throw Error("not a model folder: no config.json and not exactly one .gguf file")
            .in_file(path.string());
      c->path_ = ggufs[0].string();
      open_gguf(*c, ggufs[0]);
    }
  } else {
    char magic[4] = {};
    {
      MappedFile probe(path);
      if (probe.size() >= 4) std::memcpy(magic, probe.data(), 4);
    }
    std::string ext = path.extension().string();
    if (std::memcmp(magic, "GGUF", 4) == 0) {
      open_gguf(*c, path);
    } else if (ext == ".safetensors" || ext == ".json") {
      open_hf(*c, path);
    } else {
      open_llama2c(*c, path);
    }
  }
  c->bind_weights();
  return c;
}

void Checkpoint::open_hf(Checkpoint& c, const fs::path& path) {
  c.format_ = CheckpointFormat::hf;
  fs::path folder = fs::is_directory(path) ? path : path.parent_path();
  if (path.filename() == "config.json") {
    c.config_ = read_hf_config(path);
    c.safetensors_ = SafetensorsSet::open(folder);
  } else {
    c.config_ = read_hf_config(folder);
    c.safetensors_ = SafetensorsSet::open(path);
  }
  c.layout_ = RopeLayout::half;
  if (fs::exists(folder / "tokenizer.json") || fs::exists(folder / "tokenizer.model")) {
    c.tokenizer_path_ = folder;
  } else if (fs::exists(folder / "tokenizer.bin")) {
    c.tokenizer_path_ = folder / "tokenizer.bin";
  }
}

namespace {
// GGUF tensor name for a canonical name (and back): llama.cpp's names.
std::string gguf_name_of(const std::string& canonical) {
  static const std::pair<const char*, const char*> layer_parts[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.o_proj.bias", "attn_output.bias"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  if (canonical == "model.embed_tokens.weight") return "token_embd.weight";
  if (canonical == "model.norm.weight") return "output_norm.weight";
  if (canonical == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (canonical.rfind(prefix, 0) == 0) {
    size_t dot = canonical.find('.', prefix.size());
    std::string layer = canonical.substr(prefix.size(), dot - prefix.size());
    std::string rest = canonical.substr(dot + 1);
    for (const auto& [hf, gg] : layer_parts) {
      if (rest == hf) return "blk." + layer + "." + gg;
    }
  }
  throw Error(fmt::format("no GGUF name for weight '{}'", canonical));
}

bool is_rope_projection(const std::string& name, bool* is_key) {
  bool q = name.find(".self_attn.q_proj.") != std::string::npos;
  bool k = name.find(".self_attn.k_proj.") != std::string::npos;
  *is_key = k;
  return q || k;
}
}  // namespace

std::string gguf_tensor_name(const std::string& canonical) {
  return gguf_name_of(canonical);
}

void Checkpoint::open_gguf(Checkpoint& c, const fs::path& path) {
  c.format_ = CheckpointFormat::gguf;
  c.gguf_ = gguf::File::open(path);
  const gguf::File& f = *c.gguf_;
  c.config_ = config_from_gguf(f);
  // llama.cpp stores "llama" q/k for interleaved rotation; "qwen2" uses NeoX (half) rotation as is.
  c.layout_ = c.config_.architecture == "llama" ? RopeLayout::interleaved : RopeLayout::half;
  if (const gguf::TensorInfo* rf = f.tensor("rope_freqs.weight")) {
    if (rf->type != static_cast<uint32_t>(gguf::TensorType::f32) ||
        rf->elements() != c.config_.head_dim / 2) {
      throw Error(
          fmt::format("tensor 'rope_freqs.weight': expected {} F32 values", c.config_.head_dim / 2))
          .in_file(c.path_);
    }
    c.config_.rope_freq_factors.resize(static_cast<size_t>(rf->elements()));
    std::memcpy(c.config_.rope_freq_factors.data(), rf->data, rf->nbytes);
  }
  for (const WeightSpec& spec : expected_weights(c.config_)) {
    std::string gname = gguf_name_of(spec.name);
    const gguf::TensorInfo* ti = f.tensor(gname);
    if (!ti) continue;  // reported as missing by bind_weights
    StoredTensor t;
    t.name = gname;
    t.file = c.path_;
    for (auto it = ti->dims.rbegin(); it != ti->dims.rend(); ++it) t.shape.push_back(*it);
    switch (static_cast<gguf::TensorType>(ti->type)) {
      case gguf::TensorType::f32:
        t.type = StorageType::f32;
        break;
      case gguf::TensorType::f16:
        t.type = StorageType::f16;
        break;
      case gguf::TensorType::bf16:
        t.type = StorageType::bf16;
        break;
      case gguf::TensorType::f64:
        t.type = StorageType::f64;
        break;
      case gguf::TensorType::q8_0:
        t.type = StorageType::q8_0;
        break;
      default:
        throw Error(fmt::format("tensor '{}': GGUF type {} is not supported (seqit reads F32, F16, "
                                "BF16, F64, Q8_0)",
                                gname, gguf::tensor_type_name(ti->type)))
            .in_file(c.path_);
    }
    t.data = ti->data;
    t.nbytes = ti->nbytes;
    c.owned_.push_back(std::move(t));
  }
  if (f.has("tokenizer.ggml.tokens")) c.tokenizer_path_ = path;
}

void Checkpoint::open_llama2c(Checkpoint& c, const fs::path& path) {
  c.format_ = CheckpointFormat::llama2c;
  c.llama2c_map_ = std::make_unique<MappedFile>(path);
  const MappedFile& m = *c.llama2c_map_;
  const std::string& p = m.path();
  Llama2cHeader h{};
  if (m.size() < sizeof(h)) {
    throw Error(
        fmt::format(
            "not a model file: {} bytes is too short for a llama2.c header (28 bytes), and it is "
            "neither GGUF nor safetensors",
            m.size()))
        .in_file(p);
  }
  std::memcpy(&h, m.data(), sizeof(h));
  if (h.dim == 0x616b3432) {
    throw Error(
        "llama2.c version 1+ checkpoints (magic 'ak42') are not supported; export with the legacy "
        "format")
        .in_file(p);
  }
  for (int32_t v : {h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.seq_len}) {
    if (v <= 0 || v > (1 << 20)) {
      throw Error(fmt::format("not a llama2.c checkpoint (header dim={} hidden_dim={} n_layers={} "
                              "n_heads={} n_kv_heads={} "
                              "vocab_size={} seq_len={}), nor GGUF or safetensors",
                              h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads,
                              h.vocab_size, h.seq_len))
          .in_file(p);
    }
  }
  c.config_ = config_from_llama2c(h, p);
  c.layout_ = RopeLayout::interleaved;
  const ModelConfig& cfg = c.config_;
  const int64_t C = cfg.hidden_size, F = cfg.intermediate_size, V = cfg.vocab_size,
                L = cfg.num_layers;
  const int64_t head_size = cfg.head_dim;
  // The legacy layout stores each weight kind for all layers in one block, in this order.
  struct Block {
    const char* part;  // canonical suffix, or a llama2.c-only block (freq_cis) to skip
    std::vector<int64_t> shape;
    bool per_layer;
  };
  std::vector<Block> blocks = {
      {"model.embed_tokens.weight", {V, C}, false},
      {"input_layernorm.weight", {C}, true},
      {"self_attn.q_proj.weight", {cfg.q_dim(), C}, true},
      {"self_attn.k_proj.weight", {cfg.kv_dim(), C}, true},
      {"self_attn.v_proj.weight", {cfg.kv_dim(), C}, true},
      {"self_attn.o_proj.weight", {C, cfg.q_dim()}, true},
      {"post_attention_layernorm.weight", {C}, true},
      {"mlp.gate_proj.weight", {F, C}, true},
      {"mlp.down_proj.weight", {C, F}, true},
      {"mlp.up_proj.weight", {F, C}, true},
      {"model.norm.weight", {C}, false},
      {"freq_cis_real", {cfg.max_position_embeddings, head_size / 2}, false},
      {"freq_cis_imag", {cfg.max_position_embeddings, head_size / 2}, false},
  };
  if (!cfg.tie_word_embeddings) blocks.push_back({"lm_head.weight", {V, C}, false});
  uint64_t offset = sizeof(h);
  for (const Block& b : blocks) {
    int64_t n = 1;
    for (int64_t d : b.shape) n *= d;
    int64_t copies = b.per_layer ? L : 1;
    uint64_t bytes = static_cast<uint64_t>(n * copies) * 4;
    if (offset + bytes > m.size()) {
      throw Error(
          fmt::format(
              "truncated llama2.c checkpoint: weight '{}' needs bytes [{}, {}) but the file has {} "
              "(or the header does not match the weights)",
              b.part, offset, offset + bytes, m.size()))
          .in_file(p);
    }
    if (std::string_view(b.part).rfind("freq_cis", 0) != 0) {
      for (int64_t l = 0; l < copies; ++l) {
        StoredTensor t;
        t.name = b.per_layer ? fmt::format("model.layers.{}.{}", l, b.part) : b.part;
        t.type = StorageType::f32;
        t.shape = b.shape;
        t.data = m.data() + offset + static_cast<uint64_t>(l * n) * 4;
        t.nbytes = static_cast<uint64_t>(n) * 4;
        t.file = p;
        c.owned_.push_back(std::move(t));
      }
    }
    offset += bytes;
  }
  if (offset != m.size()) {
    throw Error(fmt::format("llama2.c checkpoint has {} bytes after the weights the header "
                            "describes ({} expected in "
                            "all): header and weights do not match",
                            m.size() - offset, offset))
        .in_file(p);
  }
  fs::path folder = path.parent_path();
  for (const std::string& name : {std::string("tokenizer.bin"), fmt::format("tok{}.bin", V)}) {
    if (fs::exists(folder / name)) {
      c.tokenizer_path_ = folder / name;
      break;
    }
  }
}

void Checkpoint::bind_weights() {
  std::unordered_map<std::string, const StoredTensor*> by_name;
  for (const StoredTensor& t : owned_) by_name[t.name] = &t;
  size_t counts[16] = {};
  for (const WeightSpec& spec : expected_weights(config_)) {
    const StoredTensor* t = nullptr;
    std::string stored_name = spec.name;
    if (format_ == CheckpointFormat::hf) {
      t = safetensors_->find(spec.name);
    } else {
      if (format_ == CheckpointFormat::gguf) stored_name = gguf_name_of(spec.name);
      auto it = by_name.find(stored_name);
      if (it != by_name.end()) t = it->second;
    }
    if (!t) {
      std::string where = format_ == CheckpointFormat::hf ? safetensors_->source() : path_;
      throw Error(fmt::format("tensor '{}' is missing (the config describes {} layers{})",
                              stored_name, config_.num_layers,
                              spec.name == "lm_head.weight" ? " and an untied output head" : ""))
          .in_file(where);
    }
    if (t->shape != spec.shape) {
      throw Error(fmt::format("tensor '{}' has shape {}, but the config expects {}", stored_name,
                              shape_string(t->shape), shape_string(spec.shape)))
          .in_file(t->file);
    }
    if (!is_weight_type(t->type)) {
      throw Error(
          fmt::format(
              "tensor '{}' is stored as {}, which is not a weight type (F32, F16, BF16, F64, Q8_0)",
              stored_name, storage_type_name(t->type)))
          .in_file(t->file);
    }
    if (spec.shape.size() == 2) ++counts[static_cast<int>(t->type)];
    bound_.emplace_back(spec.name, t);
  }
  if (format_ == CheckpointFormat::hf) {
    std::unordered_map<std::string, bool> known;
    for (const auto& [name, t] : bound_) known[name] = true;
    for (const StoredTensor* t : safetensors_->tensors()) {
      if (!known.count(t->name)) log::debug("{}: ignoring tensor '{}'", t->file, t->name);
    }
  }
  preferred_type_ = StorageType::f32;
  size_t best = 0;
  for (StorageType t : {StorageType::f32, StorageType::bf16, StorageType::f16}) {
    if (counts[static_cast<int>(t)] > best) best = counts[static_cast<int>(t)], preferred_type_ = t;
  }
}

const StoredTensor& Checkpoint::stored(const std::string& name) const {
  for (const auto& [n, t] : bound_) {
    if (n == name) return *t;
  }
  throw Error(fmt::format("model has no weight '{}'", name)).in_file(path_);
}

void Checkpoint::read_f32(const WeightSpec& spec, float* out) const {
  const StoredTensor& t = stored(spec.name);
  if (t.shape != spec.shape) {
    throw Error(fmt::format("weight '{}' requested as {} but stored as {}", spec.name,
                            shape_string(spec.shape), shape_string(t.shape)));
  }
  bool is_key = false;
  if (layout_ == RopeLayout::half || !is_rope_projection(spec.name, &is_key)) {
    decode_to_f32(t.type, t.data, t.elements(), out);
    return;
  }
  std::vector<float> raw(static_cast<size_t>(t.elements()));
  decode_to_f32(t.type, t.data, t.elements(), raw.data());
  int64_t heads = is_key ? config_.num_kv_heads : config_.num_heads;
  int64_t row_elems = spec.shape.size() == 2 ? spec.shape[1] : 1;
  permute_rope_rows(raw.data(), out, heads, config_.head_dim, row_elems, layout_, RopeLayout::half);
}

}  // namespace seqit::model

#include "model/config.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file_io.h"
#include "util/gguf.h"
#include "util/json_io.h"

namespace seqit::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
Error field_error(const std::string& source, const std::string& field, const std::string& message) {
  return std::move(Error(message).in_file(source).in_field(field));
}
}  // namespace

void ModelConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* field) {
    if (v <= 0)
      throw field_error(source, field, fmt::format("{} must be positive, got {}", field, v));
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_layers, "num_hidden_layers");
  positive(num_heads, "num_attention_heads");
  positive(num_kv_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(max_position_embeddings, "max_position_embeddings");
  // Upper bounds far above any real model (Llama-3 405B: 126 layers, hidden 16384, vocab 128256):
  // a corrupt or hostile config.json is an error here, not a loader that allocates without end.
  auto at_most = [&](int64_t v, int64_t limit, const char* field) {
    if (v > limit)
      throw field_error(
          source, field,
          fmt::format("{} is {}, over the limit of {} (a corrupt config?)", field, v, limit));
  };
  at_most(vocab_size, int64_t(1) << 24, "vocab_size");
  at_most(hidden_size, int64_t(1) << 17, "hidden_size");
  at_most(intermediate_size, int64_t(1) << 20, "intermediate_size");
  at_most(num_layers, 4096, "num_hidden_layers");
  at_most(num_heads, 4096, "num_attention_heads");
  at_most(num_kv_heads, 4096, "num_key_value_heads");
  at_most(head_dim, 4096, "head_dim");
  at_most(max_position_embeddings, int64_t(1) << 24, "max_position_embeddings");
  if (num_heads % num_kv_heads != 0) {
    throw field_error(source, "num_key_value_heads",
                      fmt::format("{} attention heads are not a multiple of {} key/value heads",
                                  num_heads, num_kv_heads));
  }
  if (head_dim % 2 != 0)
    throw field_error(source, "head_dim",
                      fmt::format("head_dim {} is odd; RoPE needs pairs", head_dim));
  if (!(rms_norm_eps > 0))
    throw field_error(source, "rms_norm_eps", "rms_norm_eps must be positive");
  if (!(rope_theta > 0)) throw field_error(source, "rope_theta", "rope_theta must be positive");
  if (rope_scaling.type != "none" && rope_scaling.type != "linear" &&
      rope_scaling.type != "llama3") {
    throw field_error(source, "rope_scaling",
                      fmt::format("unsupported rope_scaling type '{}' (supported: linear, llama3)",
                                  rope_scaling.type));
  }
  if (rope_scaling.type != "none" && !(rope_scaling.factor > 0)) {
    throw field_error(source, "rope_scaling", "rope_scaling.factor must be positive");
  }
  if (!rope_freq_factors.empty() &&
      static_cast<int64_t>(rope_freq_factors.size()) != head_dim / 2) {
    throw field_error(source, "rope_freqs",
                      fmt::format("{} rope frequency factors for head_dim {}",
                                  rope_freq_factors.size(), head_dim));
  }
  if (bos_token_id && (*bos_token_id < 0 || *bos_token_id >= vocab_size)) {
    throw field_error(
        source, "bos_token_id",
        fmt::format("bos_token_id {} is outside the vocabulary of {}", *bos_token_id, vocab_size));
  }
  for (int32_t e : eos_token_ids) {
    if (e < 0 || e >= vocab_size) {
      throw field_error(
          source, "eos_token_id",
          fmt::format("eos_token_id {} is outside the vocabulary of {}", e, vocab_size));
    }
  }
}

int64_t ModelConfig::parameter_count() const {
  int64_t per_layer = hidden_size * (q_dim() + 2 * kv_dim()) + q_dim() * hidden_size +
                      3 * hidden_size * intermediate_size + 2 * hidden_size;
  if (qkv_bias) per_layer += q_dim() + 2 * kv_dim();
  if (o_bias) per_layer += hidden_size;
  int64_t total = vocab_size * hidden_size + num_layers * per_layer + hidden_size;
  if (!tie_word_embeddings) total += vocab_size * hidden_size;
  return total;
}

std::vector<double> ModelConfig::rope_inv_freq() const {
  int64_t half = head_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i)
    inv[i] = 1.0 / std::pow(rope_theta, static_cast<double>(2 * i) / head_dim);
  if (rope_scaling.type == "linear") {
    for (double& f : inv) f /= rope_scaling.factor;
  } else if (rope_scaling.type == "llama3") {
    // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between
    // blended.
    const RopeScaling& s = rope_scaling;
    double old_len = static_cast<double>(s.original_max_position_embeddings);
    double low_freq_wavelen = old_len / s.low_freq_factor;
    double high_freq_wavelen = old_len / s.high_freq_factor;
    for (double& f : inv) {
      double wavelen = 2 * M_PI / f;
      if (wavelen < high_freq_wavelen) continue;
      if (wavelen > low_freq_wavelen) {
        f /= s.factor;
      } else {
        double smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  if (!rope_freq_factors.empty()) {
    for (int64_t i = 0; i < half; ++i) inv[i] /= rope_freq_factors[i];
  }
  return inv;
}

ModelConfig read_hf_config(const fs::path& path) {
  fs::path file = fs::is_directory(path) ? path / "config.json" : path;
  if (!fs::exists(file))
    throw Error("no config.json: an HF model folder needs one").in_file(file.string());
  return parse_hf_config(read_file(file), file.string());
}

ModelConfig parse_hf_config(const std::string& json_text, const std::string& source) {
  json j = parse_json(json_text, source);
  if (!j.is_object()) throw Error("config.json is not a JSON object").in_file(source);
  auto get_int = [&](const char* key, std::optional<int64_t> fallback) -> int64_t {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (fallback) return *fallback;
      throw field_error(source, key, fmt::format("config.json lacks '{}'", key));
    }
    if (!it->is_number_integer())
      throw field_error(source, key, fmt::format("'{}' must be an integer", key));
    return it->get<int64_t>();
  };
  auto get_double = [&](const char* key, double fallback) -> double {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_number()) throw field_error(source, key, fmt::format("'{}' must be a number", key));
    return it->get<double>();
  };
  auto get_bool = [&](const char* key, bool fallback) -> bool {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_boolean())
      throw field_error(source, key, fmt::format("'{}' must be true or false", key));
    return it->get<bool>();
  };

  ModelConfig c;
  std::string model_type = j.value("model_type", "");
  std::string arch_name;
  if (auto it = j.find("architectures");
      it != j.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
    arch_name = (*it)[0].get<std::string>();
  }
  if (arch_name == "LlamaForCausalLM" || model_type == "llama") {
    c.architecture = "llama";
  } else if (arch_name == "MistralForCausalLM" || model_type == "mistral") {
    c.architecture = "mistral";
  } else if (arch_name == "Qwen2ForCausalLM" || model_type == "qwen2") {
    c.architecture = "qwen2";
  } else {
    throw field_error(source, "architectures",
                      fmt::format("unsupported architecture '{}' (model_type '{}'); seqit runs "
                                  "Llama, Mistral and Qwen2 models",
                                  arch_name, model_type));
  }
  if (std::string act = j.value("hidden_act", "silu"); act != "silu") {
    throw field_error(source, "hidden_act",
                      fmt::format("unsupported hidden_act '{}' (only silu)", act));
  }
  c.vocab_size = get_int("vocab_size", std::nullopt);
  c.hidden_size = get_int("hidden_size", std::nullopt);
  c.intermediate_size = get_int("intermediate_size", std::nullopt);
  c.num_layers = get_int("num_hidden_layers", std::nullopt);
  c.num_heads = get_int("num_attention_heads", std::nullopt);
  c.num_kv_heads = get_int("num_key_value_heads", c.num_heads);
  if (c.num_heads <= 0)
    throw field_error(source, "num_attention_heads", "num_attention_heads must be positive");
  c.head_dim = get_int("head_dim", c.hidden_size / c.num_heads);
  c.max_position_embeddings = get_int("max_position_embeddings", 2048);
  c.rms_norm_eps = get_double("rms_norm_eps", 1e-6);
  c.rope_theta = get_double("rope_theta", 10000.0);
  c.tie_word_embeddings = get_bool("tie_word_embeddings", false);
  if (c.architecture == "qwen2") {
    c.qkv_bias = true;
    if (get_bool("use_sliding_window", false))
      c.sliding_window = get_int("sliding_window", std::nullopt);
  } else {
    c.qkv_bias = c.o_bias = get_bool("attention_bias", false);
    if (get_bool("mlp_bias", false))
      throw field_error(source, "mlp_bias", "mlp_bias=true is not supported");
    if (c.architecture == "mistral") {
      if (auto it = j.find("sliding_window"); it != j.end() && it->is_number_integer())
        c.sliding_window = it->get<int64_t>();
    }
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    if (!it->is_object())
      throw field_error(source, "rope_scaling", "rope_scaling must be an object or null");
    const json& rs = *it;
    std::string type = rs.value("rope_type", rs.value("type", std::string("none")));
    if (type == "default") type = "none";
    c.rope_scaling.type = type;
    if (type != "none") {
      if (!rs.contains("factor") || !rs["factor"].is_number())
        throw field_error(source, "rope_scaling", "rope_scaling lacks a numeric 'factor'");
      c.rope_scaling.factor = rs["factor"].get<double>();
    }
    if (type == "llama3") {
      for (const char* key :
           {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
        if (!rs.contains(key) || !rs[key].is_number()) {
          throw field_error(source, "rope_scaling",
                            fmt::format("llama3 rope_scaling lacks a numeric '{}'", key));
        }
      }
      c.rope_scaling.low_freq_factor = rs["low_freq_factor"].get<double>();
      c.rope_scaling.high_freq_factor = rs["high_freq_factor"].get<double>();
      c.rope_scaling.original_max_position_embeddings =
          rs["original_max_position_embeddings"].get<int64_t>();
    }
  }
  if (auto it = j.find("bos_token_id"); it != j.end() && it->is_number_integer())
    c.bos_token_id = it->get<int32_t>();
  if (auto it = j.find("eos_token_id"); it != j.end()) {
    if (it->is_number_integer()) {
      c.eos_token_ids.push_back(it->get<int32_t>());
    } else if (it->is_array()) {
      for (const json& e : *it) {
        if (!e.is_number_integer())
          throw field_error(source, "eos_token_id", "eos_token_id list must hold integers");
        c.eos_token_ids.push_back(e.get<int32_t>());
      }
    }
  }
  c.validate(source);
  return c;
}

std::string hf_config_json(const ModelConfig& c, const std::string& torch_dtype) {
  nlohmann::ordered_json j;
  std::string cls = c.architecture == "qwen2"     ? "Qwen2ForCausalLM"
                    : c.architecture == "mistral" ? "MistralForCausalLM"
                                                  : "LlamaForCausalLM";
  j["architectures"] = {cls};
  j["model_type"] = c.architecture;
  j["hidden_act"] = "silu";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == "none") {
    j["rope_scaling"] = nullptr;
  } else {
    nlohmann::ordered_json rs;
    rs["rope_type"] = c.rope_scaling.type;
    rs["factor"] = c.rope_scaling.factor;
    if (c.rope_scaling.type == "llama3") {
      rs["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      rs["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      rs["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = rs;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.architecture == "qwen2") {
    j["use_sliding_window"] = c.sliding_window.has_value();
    if (c.sliding_window) j["sliding_window"] = *c.sliding_window;
  } else {
    j["attention_bias"] = c.qkv_bias;
    if (c.architecture == "mistral") {
      if (c.sliding_window) {
        j["sliding_window"] = *c.sliding_window;
      } else {
        j["sliding_window"] = nullptr;
      }
    }
  }
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

ModelConfig config_from_gguf(const gguf::File& f) {
  const std::string& source = f.path();
  std::string arch = f.has("general.architecture") ? f.get_string("general.architecture") : "";
  if (arch != "llama" && arch != "qwen2") {
    throw field_error(
        source, "general.architecture",
        fmt::format("unsupported GGUF architecture '{}' (seqit runs llama and qwen2)", arch));
  }
  auto key = [&](const char* suffix) { return arch + "." + suffix; };
  auto get_int = [&](const std::string& k, std::optional<int64_t> fallback) -> int64_t {
    if (!f.has(k)) {
      if (fallback) return *fallback;
      throw field_error(source, k, fmt::format("GGUF metadata lacks '{}'", k));
    }
    return f.get_int(k);
  };
  ModelConfig c;
  c.architecture = arch;
  c.hidden_size = get_int(key("embedding_length"), std::nullopt);
  c.intermediate_size = get_int(key("feed_forward_length"), std::nullopt);
  c.num_layers = get_int(key("block_count"), std::nullopt);
  c.num_heads = get_int(key("attention.head_count"), std::nullopt);
  c.num_kv_heads = get_int(key("attention.head_count_kv"), c.num_heads);
  if (c.num_heads <= 0)
    throw field_error(source, key("attention.head_count"), "head count must be positive");
  c.head_dim = get_int(key("attention.key_length"), c.hidden_size / c.num_heads);
  if (f.has(key("rope.dimension_count")) && f.get_int(key("rope.dimension_count")) != c.head_dim) {
    throw field_error(source, key("rope.dimension_count"),
                      fmt::format("partial rotary embedding ({} of {} dims) is not supported",
                                  f.get_int(key("rope.dimension_count")), c.head_dim));
  }
  c.max_position_embeddings = get_int(key("context_length"), 2048);
  c.rms_norm_eps = f.has(key("attention.layer_norm_rms_epsilon"))
                       ? f.get_double(key("attention.layer_norm_rms_epsilon"))
                       : 1e-5;
  c.rope_theta = f.has(key("rope.freq_base")) ? f.get_double(key("rope.freq_base")) : 10000.0;
  if (f.has(key("rope.scaling.type"))) {
    std::string type = f.get_string(key("rope.scaling.type"));
    if (type == "linear") {
      c.rope_scaling.type = "linear";
      c.rope_scaling.factor = f.get_double(key("rope.scaling.factor"));
    } else if (type != "none") {
      throw field_error(source, key("rope.scaling.type"),
                        fmt::format("unsupported rope scaling '{}'", type));
    }
  }
  if (f.has(key("vocab_size"))) {
    c.vocab_size = f.get_int(key("vocab_size"));
  } else if (f.has("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(f.get_string_array("tokenizer.ggml.tokens").size());
  } else if (const gguf::TensorInfo* emb = f.tensor("token_embd.weight");
             emb && emb->dims.size() == 2) {
    c.vocab_size = emb->dims[1];
  }
  c.tie_word_embeddings = f.tensor("output.weight") == nullptr;
  c.qkv_bias = f.tensor("blk.0.attn_q.bias") != nullptr;
  c.o_bias = f.tensor("blk.0.attn_output.bias") != nullptr;
  if (f.has("tokenizer.ggml.bos_token_id"))
    c.bos_token_id = static_cast<int32_t>(f.get_int("tokenizer.ggml.bos_token_id"));
  if (f.has("tokenizer.ggml.eos_token_id"))
    c.eos_token_ids.push_back(static_cast<int32_t>(f.get_int("tokenizer.ggml.eos_token_id")));
  if (f.has("tokenizer.ggml.eot_token_id")) {
    auto eot = static_cast<int32_t>(f.get_int("tokenizer.ggml.eot_token_id"));
    if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), eot) == c.eos_token_ids.end())
      c.eos_token_ids.push_back(eot);
  }
  c.validate(source);
  return c;
}

ModelConfig config_from_llama2c(const Llama2cHeader& h, const std::string& source) {
  ModelConfig c;
  c.architecture = "llama";
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_layers = h.n_layers;
  c.num_heads = h.n_heads;
  c.num_kv_heads = h.n_kv_heads;
  c.tie_word_embeddings = h.vocab_size > 0;
  c.vocab_size = h.vocab_size < 0 ? -static_cast<int64_t>(h.vocab_size) : h.vocab_size;
  c.max_position_embeddings = h.seq_len;
  c.head_dim = h.n_heads > 0 ? h.dim / h.n_heads : 0;
  if (h.n_heads > 0 && h.dim % h.n_heads != 0) {
    throw field_error(source, "dim",
                      fmt::format("dim {} is not a multiple of n_heads {}", h.dim, h.n_heads));
  }
  // llama2.c's model.py trains with these fixed values and its sentencepiece ids. Its stories are
  // delimited by BOS, not EOS (run.c stops when BOS comes out), so BOS also ends a generation.
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.bos_token_id = 1;
  c.eos_token_ids = {2, 1};
  if (c.vocab_size <= 2) c.bos_token_id.reset(), c.eos_token_ids.clear();
  c.validate(source);
  return c;
}

}  // namespace seqit::model

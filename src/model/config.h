// The shape and hyper-parameters of a Llama-family model (Llama 1/2/3, Mistral, Qwen2, TinyLlama),
// read from an HF config.json, from GGUF `<arch>.*` metadata, or from a llama2.c header, and
// written back as config.json / GGUF metadata.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace seqit::gguf {
class File;
}

namespace seqit::model {

// How RoPE pairs the dimensions of each head. seqit computes in the `half` layout (HF/NeoX: dim i
// pairs with i + D/2); checkpoints stored for `interleaved` rotation (Meta, llama2.c, GGUF "llama":
// dim 2i pairs with 2i+1) get their q/k rows permuted on load and permuted back on GGUF export.
enum class RopeLayout { half, interleaved };

struct RopeScaling {
  std::string type = "none";  // none | linear | llama3
  double factor = 1.0;
  // llama3 only:
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture =
      "llama";  // llama | mistral | qwen2 (the family; decides names and defaults)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  // Per-frequency divisors of the rotary inverse frequencies (GGUF `rope_freqs.weight`, which
  // llama.cpp writes for llama3-scaled models); empty when not given. Size head_dim / 2 when
  // present.
  std::vector<float> rope_freq_factors;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2 (and Llama with attention_bias)
  bool o_bias = false;    // Llama with attention_bias
  std::optional<int64_t>
      sliding_window;  // Mistral: attention window; generation refuses to exceed it
  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;

  // Throws seqit::Error (field named) when the numbers do not describe a model seqit can run.
  void validate(const std::string& source) const;
  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  int64_t parameter_count() const;
  // Rotary inverse frequencies (head_dim / 2 values), with rope_scaling / rope_freq_factors
  // applied.
  std::vector<double> rope_inv_freq() const;
};

// HF config.json (a file, or a folder holding one).
ModelConfig read_hf_config(const std::filesystem::path& path);
ModelConfig parse_hf_config(const std::string& json_text, const std::string& source);
// config.json text for `config` (architectures, model_type, sizes, rope, ids, torch_dtype).
std::string hf_config_json(const ModelConfig& config, const std::string& torch_dtype);

// From GGUF metadata (general.architecture llama | qwen2, `<arch>.*` keys,
// tokenizer.ggml.*_token_id). The vocabulary size comes from `<arch>.vocab_size`, else the
// tokenizer, else token_embd.weight; tie_word_embeddings is true when the file has no
// output.weight.
ModelConfig config_from_gguf(const gguf::File& file);

// llama2.c checkpoint header: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len); a negative vocab_size means the classifier is stored separately (not shared).
struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};
ModelConfig config_from_llama2c(const Llama2cHeader& header, const std::string& source);

}  // namespace seqit::model

// A model checkpoint opened from any supported format, seen through one canonical view: the weights
// under their Hugging Face names and shapes, in seqit's RoPE layout (half rotation; see
// RopeLayout), decoded to fp32 on request. Opening validates everything that can be checked without
// reading the weights (config, every expected tensor present, shapes, types, extents inside the
// file), so a truncated, corrupt or mismatched file fails before any weight is used.
//
// Formats: an HF folder (config.json + model.safetensors or a sharded set with
// model.safetensors.index.json; F32/F16/BF16), GGUF v2/v3 (architectures llama and qwen2; F32, F16,
// BF16, F64, Q8_0 dequantised), and llama2.c legacy .bin (7 int32 header, fp32 weights).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/storage.h"
#include "util/mapped_file.h"

namespace seqit::gguf {
class File;
}

namespace seqit::model {

class SafetensorsSet;

enum class CheckpointFormat { hf, gguf, llama2c };
std::string_view format_name(CheckpointFormat format);

// A weight by its canonical name and shape.
struct WeightSpec {
  std::string name;            // e.g. "model.layers.3.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // e.g. {q_dim, hidden_size}
  int64_t elements() const;
};

// The weights a model with `config` has, in a fixed order (embedding, layers, final norm, head).
std::vector<WeightSpec> expected_weights(const ModelConfig& config);

// Anything that can hand out a model's canonical weights: an opened checkpoint, or a model in
// memory. The writers (HF, GGUF) take this, so conversion and saving a trained model share one
// path.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const ModelConfig& config() const = 0;
  // fp32 values of weight `spec` (one of expected_weights(config())), canonical layout, into `out`.
  virtual void read_f32(const WeightSpec& spec, float* out) const = 0;
  // The float type most 2-D weights are stored in (the default for conversion).
  virtual StorageType preferred_type() const = 0;
};

class Checkpoint : public WeightSource {
 public:
  // `path`: an HF folder (or its config.json / *.safetensors / index JSON), a .gguf file, or a
  // llama2.c .bin. Throws seqit::Error naming the file and, where it applies, the tensor or field.
  static std::unique_ptr<Checkpoint> open(const std::filesystem::path& path);
  ~Checkpoint() override;

  CheckpointFormat format() const { return format_; }
  const std::string& path() const { return path_; }
  const ModelConfig& config() const override { return config_; }
  void read_f32(const WeightSpec& spec, float* out) const override;
  StorageType preferred_type() const override { return preferred_type_; }
  // The stored tensor behind a canonical weight (type, file), for reporting.
  const StoredTensor& stored(const std::string& name) const;
  // The tokenizer that belongs with this checkpoint, when one is known: the HF folder
  // (tokenizer.json or tokenizer.model), the GGUF file itself (tokenizer.ggml.*), or for llama2.c a
  // tokenizer.bin or tok<vocab_size>.bin next to the .bin.
  std::optional<std::filesystem::path> tokenizer_path() const { return tokenizer_path_; }
  // The GGUF file, for a GGUF checkpoint (metadata such as the tokenizer); null otherwise.
  const gguf::File* gguf_file() const { return gguf_.get(); }

 private:
  Checkpoint();
  static void open_hf(Checkpoint& c, const std::filesystem::path& path);
  static void open_gguf(Checkpoint& c, const std::filesystem::path& path);
  static void open_llama2c(Checkpoint& c, const std::filesystem::path& path);
  void bind_weights();  // checks and indexes every expected weight

  CheckpointFormat format_ = CheckpointFormat::hf;
  std::string path_;
  ModelConfig config_;
  RopeLayout layout_ = RopeLayout::half;
  StorageType preferred_type_ = StorageType::f32;
  std::optional<std::filesystem::path> tokenizer_path_;
  std::unique_ptr<SafetensorsSet> safetensors_;
  std::unique_ptr<gguf::File> gguf_;
  std::unique_ptr<MappedFile> llama2c_map_;
  // canonical name -> stored tensor (owned here for GGUF and llama2.c, pointing into the maps)
  std::vector<StoredTensor> owned_;
  std::vector<std::pair<std::string, const StoredTensor*>> bound_;
};

// llama.cpp's GGUF tensor name for a canonical weight name ("blk.3.attn_q.weight").
std::string gguf_tensor_name(const std::string& canonical);

// Converts q/k projection rows (weights or biases) of `heads` heads of `head_dim` between the
// interleaved and half RoPE layouts; `row_elems` values per row (1 for a bias).
void permute_rope_rows(const float* in, float* out, int64_t heads, int64_t head_dim,
                       int64_t row_elems, RopeLayout from, RopeLayout to);

}  // namespace seqit::model

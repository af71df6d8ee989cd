// Writing models in the ecosystem's formats, from any WeightSource (an opened checkpoint, or a
// model in memory): an HF folder (config.json + model.safetensors + tokenizer files) or one GGUF
// file (llama.cpp metadata, q/k permuted for its interleaved RoPE, tokenizer.ggml.* vocabulary when
// the tokenizer is known). Every file is written atomically.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "model/checkpoint.h"
#include "model/storage.h"

namespace seqit::model {

enum class ExportFormat { hf, gguf };

struct ExportOptions {
  // f32, f16 or bf16 for the 2-D weights (GGUF keeps 1-D norms and biases in F32, as llama.cpp
  // does).
  StorageType type = StorageType::f32;
  // The tokenizer to ship with the model: an HF folder or tokenizer.json, a GGUF file, or a
  // llama2.c tokenizer.bin. Nothing is written for it when absent.
  std::optional<std::filesystem::path> tokenizer;
  std::string name = "seqit model";  // general.name in GGUF
  // HF folders: a Jinja chat template to ship (chat_template.jinja, and the "chat_template" field
  // of tokenizer_config.json when that file is written). Empty: none.
  std::string chat_template;
  // HF folders: weights above this many bytes are split into model-0000i-of-0000n.safetensors
  // shards with a model.safetensors.index.json, as transformers' save_pretrained does (its default
  // max_shard_size is 5 GB).
  uint64_t max_shard_bytes = uint64_t{5} * 1000 * 1000 * 1000;
};

// Writes `out` as an HF model folder (created if missing; existing files of the same names
// replaced): config.json, model.safetensors (or shards + index), generation_config.json (BOS/EOS of
// the config, unless the tokenizer's folder has one) and the chat template when given. Tokenizer
// files: an HF source's tokenizer.json, tokenizer_config.json, tokenizer.model,
// special_tokens_map.json and generation_config.json are copied; a llama2.c tokenizer.bin is copied
// as tokenizer.bin (seqit reads it; HF tools do not); a GGUF vocabulary is not exported to HF
// files.
void write_hf_model(const WeightSource& source, const std::filesystem::path& out,
                    const ExportOptions& options);

// Writes `out` as a GGUF v3 file (architecture "llama", or "qwen2" for Qwen2 models).
void write_gguf_model(const WeightSource& source, const std::filesystem::path& out,
                      const ExportOptions& options);

// `seqit convert`: opens `in` (any format), writes `out` as `to`. `type` defaults to the source's
// stored type (Q8_0 sources become F32); `tokenizer` defaults to the one found with the source.
void convert_model(const std::filesystem::path& in, const std::filesystem::path& out,
                   ExportFormat to, std::optional<StorageType> type,
                   std::optional<std::filesystem::path> tokenizer);

}  // namespace seqit::model

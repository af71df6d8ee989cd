// Adapters and trained models in the ecosystem's formats.
//
// A LoRA network is written as a PEFT adapter folder, exactly what PEFT's save_pretrained writes
// and what PEFT (PeftModel.from_pretrained), vLLM (LoRARequest) and transformers load:
//   adapter_config.json         {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r", "lora_alpha",
//                                "lora_dropout", "target_modules": ["q_proj", ...], "use_rslora",
//                                "bias": "none", "base_model_name_or_path", ...}
//   adapter_model.safetensors   "base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight"
//                               [r, in] and "...lora_B.weight" [out, r] for every adapted module
//                               (f32, or bf16 when asked).
// The q/k rows are in Hugging Face's layout (seqit computes in it; a GGUF or llama2.c base is
// converted when loaded), so the adapter belongs to the HF form of the base model.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "model/convert.h"
#include "model/storage.h"
#include "model/train_network.h"

namespace seqit::model {
class LlamaModel;
struct ModelConfig;
}  // namespace seqit::model

namespace seqit::train {

// "q" -> "q_proj", ..., "down" -> "down_proj" (full names pass through); throws for anything else,
// listing the valid names.
std::string peft_module_name(const std::string& target);

// Writes `dir`/adapter_config.json and `dir`/adapter_model.safetensors from a LoRA network
// (atomically, file by file; the folder is created). `base_model` goes to base_model_name_or_path.
void write_peft_adapter(model::TrainNetwork& network, const std::filesystem::path& dir,
                        const std::string& base_model,
                        model::StorageType type = model::StorageType::f32);

// A PEFT LoRA adapter as read from a folder.
struct PeftAdapter {
  model::LoraSpec spec;    // r, alpha, dropout, rslora, targets (short names: q k v o gate up down)
  std::string base_model;  // base_model_name_or_path
  // The adapter matrices in the network's parameter order, by the network's names (without the
  // "base_model.model." prefix), f32.
  std::vector<std::pair<std::string, std::vector<float>>> tensors;
};

// Reads an adapter folder written by seqit or PEFT and checks it against `config`: every tensor an
// adapter of that rank on those modules must have, with the right shape, and nothing else. Throws
// seqit::Error naming the file and the field or tensor.
PeftAdapter read_peft_adapter(const std::filesystem::path& dir, const model::ModelConfig& config);

// Copies the adapter's matrices into a LoRA network created with the same spec (throws naming the
// first tensor that does not match).
void load_adapter(model::TrainNetwork& network, const PeftAdapter& adapter);

// Merges the adapter into the model's weights (W += scale · B·A); the model must hold plain (not
// packed) weights.
void merge_peft_adapter(model::LlamaModel& model, const PeftAdapter& adapter);

// `seqit export`: a base model, optionally with a PEFT adapter merged into it, written as an HF
// folder (sharded when large, generation_config.json, tokenizer files, the chat template) or a GGUF
// file that llama.cpp loads.
struct ExportRequest {
  std::filesystem::path model;                   // any format seqit reads
  std::optional<std::filesystem::path> adapter;  // a PEFT adapter folder to merge
  std::filesystem::path out;
  model::ExportFormat to = model::ExportFormat::hf;
  std::optional<model::StorageType> dtype;  // f32, f16, bf16; default: the model's stored type
  std::optional<std::filesystem::path> tokenizer;  // default: the one found with the model
  // A builtin format name (tulu, chatml, ...) or a template file / model folder; empty = none
  // (the tokenizer folder's own tokenizer_config.json still travels).
  std::string chat_template;
  uint64_t max_shard_bytes = uint64_t{5} * 1000 * 1000 * 1000;
};
void export_model(const ExportRequest& request);

}  // namespace seqit::train

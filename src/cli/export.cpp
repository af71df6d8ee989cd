// `seqit export`: a model (optionally with a LoRA adapter merged in) as an HF folder or a GGUF
// file.
#include <string>

#include "cli/command.h"
#include "train/export.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::cli {
namespace {
struct ExportOptions {
  std::string model, adapter, out, to = "hf", dtype, tokenizer, chat_template;
  double max_shard_gb = 5.0;
};

void setup(CLI::App& cmd) {
  auto o = std::make_shared<ExportOptions>();
  cmd.description(
      "Write a model for other tools: an HF folder (config.json, safetensors sharded above "
      "--max-shard-gb, "
      "generation_config.json, tokenizer files, the chat template) that transformers and vLLM "
      "load, or a GGUF "
      "file that llama.cpp loads. With --adapter, a PEFT LoRA adapter (what `seqit train` writes "
      "for LoRA runs, "
      "or any PEFT adapter of this model) is merged into the weights first.\n\n"
      "  seqit export --model base/ --adapter run/final/adapter --to hf --out merged/\n"
      "  seqit export --model run/final/model --to gguf --dtype bf16 --out model.gguf");
  cmd.add_option("--model", o->model, "The base model: HF folder, GGUF file or llama2.c .bin")
      ->required();
  cmd.add_option("--adapter", o->adapter, "A PEFT LoRA adapter folder to merge into the model");
  cmd.add_option("--out", o->out, "Output folder (hf) or file (gguf)")->required();
  cmd.add_option("--to", o->to, "Output format: hf or gguf (default hf)")
      ->check(CLI::IsMember({"hf", "gguf"}));
  cmd.add_option("--dtype", o->dtype, "Weight type: f32, f16 or bf16 (default: the model's)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd.add_option("--tokenizer", o->tokenizer,
                 "Tokenizer to ship (default: the one found with the model)");
  cmd.add_option("--chat-template", o->chat_template,
                 "Chat template to ship with an HF folder: a builtin name (tulu, chatml, llama3, "
                 "...) or a file");
  cmd.add_option("--max-shard-gb", o->max_shard_gb,
                 "Largest safetensors shard, in GB (default 5, as transformers)")
      ->check(CLI::PositiveNumber);
  cmd.callback([o] {
    train::ExportRequest r;
    r.model = o->model;
    if (!o->adapter.empty()) r.adapter = o->adapter;
    r.out = o->out;
    r.to = o->to == "gguf" ? model::ExportFormat::gguf : model::ExportFormat::hf;
    if (!o->dtype.empty()) r.dtype = model::parse_storage_type(o->dtype);
    if (!o->tokenizer.empty()) r.tokenizer = o->tokenizer;
    r.chat_template = o->chat_template;
    r.max_shard_bytes = static_cast<uint64_t>(o->max_shard_gb * 1e9);
    train::export_model(r);
    log::info("wrote {} ({}{})", o->out, o->to, o->adapter.empty() ? "" : ", adapter merged");
  });
}
}  // namespace
SEQIT_COMMAND("export", "Write a model (with a LoRA adapter merged) as an HF folder or GGUF file",
              setup);
}  // namespace seqit::cli

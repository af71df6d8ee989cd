// `seqit convert`: rewrites a model checkpoint in another format (HF folder or GGUF file).
#include <string>

#include "cli/command.h"
#include "model/checkpoint.h"
#include "model/convert.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::cli {
namespace {
struct ConvertOptions {
  std::string in, out, to, dtype, tokenizer;
};

void setup(CLI::App& cmd) {
  auto o = std::make_shared<ConvertOptions>();
  cmd.description(
      "Convert a model between formats. Reads an HF folder (config.json + *.safetensors, sharded "
      "or not), a GGUF "
      "file (llama/qwen2; F32/F16/BF16/Q8_0) or a llama2.c .bin; writes an HF folder (config.json, "
      "model.safetensors, tokenizer files) or one GGUF file (with the tokenizer's vocabulary when "
      "known). RoPE "
      "layouts are converted, so every output gives the same logits.");
  cmd.add_option("--in", o->in, "Source model: folder or file")->required();
  cmd.add_option("--out", o->out, "Output folder (hf) or file (gguf)")->required();
  cmd.add_option("--to", o->to, "Output format: hf or gguf")
      ->required()
      ->check(CLI::IsMember({"hf", "gguf"}));
  cmd.add_option("--dtype", o->dtype,
                 "Weight type of the output: f32, f16 or bf16 (default: the source's; Q8_0 -> f32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd.add_option("--tokenizer", o->tokenizer,
                 "Tokenizer to ship with the output (default: the one found with the source)");
  cmd.callback([o] {
    std::optional<model::StorageType> type;
    if (o->dtype == "f32") type = model::StorageType::f32;
    if (o->dtype == "f16") type = model::StorageType::f16;
    if (o->dtype == "bf16") type = model::StorageType::bf16;
    std::optional<std::filesystem::path> tokenizer;
    if (!o->tokenizer.empty()) tokenizer = o->tokenizer;
    model::convert_model(o->in, o->out,
                         o->to == "hf" ? model::ExportFormat::hf : model::ExportFormat::gguf, type,
                         tokenizer);
    log::info("wrote {} ({})", o->out, o->to);
  });
}
}  // namespace
SEQIT_COMMAND("convert", "Convert a model between HF (safetensors), GGUF and llama2.c formats",
              setup);
}  // namespace seqit::cli

// Options shared by the commands that run a local model (generate, chat): which model, tokenizer,
// compute dtype and chat template, and the sampling / stopping flags.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "infer/engine.h"
#include "infer/generate_job.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace seqit::cli {

struct ModelOptions {
  std::string model, tokenizer, dtype = "f32", kv_cache = "f32";
  bool chat = false;
  std::string system, chat_template;
};
void add_model_options(CLI::App& cmd, ModelOptions& o, bool chat_flag = true);

struct LoadedModel {
  std::unique_ptr<model::LlamaModel> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::filesystem::path tokenizer_file;
};
// Loads the model (threads from --threads) and its tokenizer (--tokenizer, else the one found with
// the model; an error when there is none).
LoadedModel load_model(const ModelOptions& o);
// How a prompt record becomes ids: the text encoded, or with --chat the messages through the
// model's chat template. `stop_tokens` receives the template's end-of-turn tokens when --chat is
// on.
infer::PromptBuilder prompt_builder(const LoadedModel& m, const ModelOptions& o,
                                    std::vector<infer::TokenId>* stop_tokens = nullptr);
// The chat template --chat uses: --chat-template, else the model's own (an error when it has none).
chat::ChatTemplate chat_template(const LoadedModel& m, const ModelOptions& o);

struct SamplingOptions {
  float temperature = 0.0f, top_p = 1.0f, min_p = 0.0f, repeat_penalty = 1.0f;
  int32_t top_k = 0, repeat_last_n = 64;
  uint64_t seed = 0;
  int64_t max_tokens = 256;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  infer::SamplingParams sampling() const;
  infer::StopParams stop_params() const;
};
void add_sampling_options(CLI::App& cmd, SamplingOptions& o);

}  // namespace seqit::cli

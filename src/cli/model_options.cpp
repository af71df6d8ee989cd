// Shared model and sampling options of `seqit generate` and `seqit chat` (no command of its own).
#include "cli/model_options.h"

#include <nlohmann/json.hpp>

#include "chat/model_template.h"
#include "cli/command.h"
#include "tensor/threading.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::cli {

void add_model_options(CLI::App& cmd, ModelOptions& o, bool chat_flag) {
  cmd.add_option("--model,-m", o.model, "Model: HF folder, .gguf file or llama2.c .bin")
      ->required();
  cmd.add_option("--tokenizer", o.tokenizer,
                 "Tokenizer (tokenizer.json / folder / .model / tokenizer.bin / .gguf); default: "
                 "found with the model");
  cmd.add_option("--dtype", o.dtype, "Compute dtype of the weights: f32 or bf16")
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd.add_option(
         "--kv-cache", o.kv_cache,
         "KV cache element type: f32, f16 or bf16 (half the cache memory and reads; llama.cpp's "
         "default is f16)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  if (chat_flag)
    cmd.add_flag("--chat", o.chat,
                 "Wrap prompts in the model's chat template (records may give \"messages\")");
  cmd.add_option("--system", o.system, "System message for chat prompts");
  cmd.add_option(
      "--chat-template", o.chat_template,
      "Chat template: a builtin format (tulu, alpaca, chatml, llama3, mistral), a .jinja / "
      "tokenizer_config.json file or a tokenizer folder; default: the model's own");
}

LoadedModel load_model(const ModelOptions& o) {
  tensor::set_num_threads(thread_count());
  LoadedModel m;
  model::LoadOptions load;
  load.dtype = o.dtype == "bf16" ? tensor::DType::bf16 : tensor::DType::f32;
  load.pack_for_inference = true;  // generation only: the decoding layout
  load.kv_cache = model::kv_cache_dtype(o.kv_cache);
  m.model = model::LlamaModel::load(o.model, load);
  std::filesystem::path tok;
  if (!o.tokenizer.empty()) {
    tok = o.tokenizer;
  } else if (m.model->tokenizer_path()) {
    tok = *m.model->tokenizer_path();
  } else {
    throw Error("no tokenizer found with the model; pass --tokenizer PATH").in_file(o.model);
  }
  m.tokenizer = tokenizer::load_tokenizer(tok);
  m.tokenizer_file = tok;
  if (static_cast<int64_t>(m.tokenizer->vocab_size()) > m.model->config().vocab_size) {
    throw Error(fmt::format("the tokenizer has {} tokens but the model only {}",
                            m.tokenizer->vocab_size(), m.model->config().vocab_size))
        .in_file(tok.string());
  }
  log::debug("model {} ({} layers, {} parameters), tokenizer {}", o.model,
             m.model->config().num_layers, m.model->config().parameter_count(),
             m.tokenizer->describe());
  return m;
}

chat::ChatTemplate chat_template(const LoadedModel& m, const ModelOptions& o) {
  return chat::resolve_chat_template(o.chat_template, o.model, m.tokenizer_file, *m.tokenizer);
}

infer::PromptBuilder prompt_builder(const LoadedModel& m, const ModelOptions& o,
                                    std::vector<infer::TokenId>* stop_tokens) {
  if (!o.chat) {
    if (!o.chat_template.empty()) throw Error("--chat-template is used with --chat");
    return infer::text_prompt_builder(*m.tokenizer);
  }
  auto tmpl = std::make_shared<chat::ChatTemplate>(chat_template(m, o));
  if (stop_tokens) *stop_tokens = chat::end_of_turn_tokens(*tmpl, *m.tokenizer);
  log::debug("chat template {}", tmpl->name());
  const tokenizer::Tokenizer* tok = m.tokenizer.get();
  std::string system = o.system;
  return [tmpl, tok, system](const nlohmann::json& record, bool* standalone) {
    std::vector<chat::Message> messages;
    if (!system.empty()) messages.push_back({"system", system});
    if (auto it = record.find("messages"); it != record.end()) {
      if (!it->is_array())
        throw Error("\"messages\" must be a list of {role, content}").in_field("messages");
      for (size_t i = 0; i < it->size(); ++i) {
        const nlohmann::json& msg = (*it)[i];
        if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string() ||
            !msg.contains("content") || !msg["content"].is_string()) {
          throw Error(fmt::format("message {} needs string \"role\" and \"content\"", i))
              .in_field("messages");
        }
        messages.push_back({msg["role"].get<std::string>(), msg["content"].get<std::string>()});
      }
    } else if (auto p = record.find("prompt"); p != record.end() && p->is_string()) {
      messages.push_back({"user", p->get<std::string>()});
    } else {
      throw Error("the record has neither \"messages\" nor a string \"prompt\"")
          .in_field("messages");
    }
    chat::ChatPromptText prompt = chat::render_chat_prompt(*tmpl, messages);
    *standalone = true;
    tokenizer::EncodeOptions enc;
    enc.add_special = prompt.add_special_tokens;
    return tok->encode(prompt.text, enc);
  };
}

infer::SamplingParams SamplingOptions::sampling() const {
  infer::SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.repetition_penalty = repeat_penalty;
  p.repetition_window = repeat_last_n;
  p.seed = seed;
  return p;
}

infer::StopParams SamplingOptions::stop_params() const {
  infer::StopParams s;
  s.max_new_tokens = max_tokens;
  s.stop_strings = stop;
  s.ignore_eos = ignore_eos;
  return s;
}

void add_sampling_options(CLI::App& cmd, SamplingOptions& o) {
  cmd.add_option("--temperature", o.temperature, "Sampling temperature; 0 = greedy (default)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--top-k", o.top_k, "Keep only the k most likely tokens (0 = off)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--top-p", o.top_p,
                 "Nucleus sampling: smallest set with probability >= p (1 = off)")
      ->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--min-p", o.min_p, "Drop tokens below min-p x the top probability (0 = off)")
      ->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--repeat-penalty", o.repeat_penalty,
                 "Repetition penalty (1 = off; 1.1 is typical)");
  cmd.add_option("--repeat-last-n", o.repeat_last_n,
                 "Tokens the repetition penalty looks back at (0 = all)");
  cmd.add_option("--seed", o.seed, "Random seed (same seed, same text)");
  cmd.add_option("--max-tokens,-n", o.max_tokens, "Maximum new tokens per prompt")
      ->check(CLI::PositiveNumber);
  cmd.add_option("--stop", o.stop, "Stop string (repeatable); the output ends before it");
  cmd.add_flag("--ignore-eos", o.ignore_eos, "Keep generating past the end-of-sequence token");
}

}  // namespace seqit::cli

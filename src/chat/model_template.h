// The chat template a model ships with, and what a generator needs from it: the rendered prompt,
// whether the tokenizer still adds BOS, and which tokens end an assistant turn.
//
// Used by `seqit generate --chat`, `seqit chat` and `seqit serve` so that all three format a
// conversation the same way.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace seqit::chat {

// The template that comes with a model, looked up in this order: chat_template.jinja or a
// tokenizer_config.json "chat_template" in the model folder (or beside the tokenizer file), then
// the GGUF metadata key tokenizer.chat_template. nullopt when the model ships none (base models
// such as stories260K, llama2.c files).
std::optional<ChatTemplate> find_model_chat_template(
    const std::filesystem::path& model, const std::optional<std::filesystem::path>& tokenizer_file);

// `spec` is a builtin format name (tulu, alpaca, chatml, llama3, mistral), a template file or a
// tokenizer folder; empty means the model's own template, and an error that lists the choices when
// it has none. The template's BOS/EOS are completed from `tok`.
ChatTemplate resolve_chat_template(std::string_view spec, const std::filesystem::path& model,
                                   const std::optional<std::filesystem::path>& tokenizer_file,
                                   const tokenizer::Tokenizer& tok);

struct ChatPromptText {
  std::string text;
  bool add_special_tokens = false;  // encode with the tokenizer's BOS (builtin tulu/alpaca) or not
};
// The conversation rendered for generation (add_generation_prompt on).
ChatPromptText render_chat_prompt(const ChatTemplate& tmpl, const std::vector<Message>& messages);

// Token ids that end an assistant turn: the tokenizer's EOS, plus the special tokens the template
// text writes that are end-of-turn markers (<|eot_id|>, <|im_end|>, <|end|>, </s>, ...).
std::vector<tokenizer::TokenId> end_of_turn_tokens(const ChatTemplate& tmpl,
                                                   const tokenizer::Tokenizer& tok);

}  // namespace seqit::chat

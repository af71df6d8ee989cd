#include "chat/model_template.h"

#include <fmt/format.h>
#include <algorithm>
#include <nlohmann/json.hpp>

#include "chat/assistant_mask.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/gguf.h"
#include "util/json_io.h"

namespace seqit::chat {
namespace fs = std::filesystem;

namespace {

// Does this folder hold a template (a chat_template.jinja, or a tokenizer_config.json with one)?
bool folder_has_template(const fs::path& dir) {
  if (fs::exists(dir / "chat_template.jinja")) return true;
  const fs::path config = dir / "tokenizer_config.json";
  if (!fs::exists(config)) return false;
  nlohmann::json j = parse_json(read_file(config), config.string());
  return j.contains("chat_template") && !j["chat_template"].is_null();
}

bool is_gguf(const fs::path& p) {
  return fs::is_regular_file(p) && p.extension() == ".gguf";
}

}  // namespace

std::optional<ChatTemplate> find_model_chat_template(
    const fs::path& model, const std::optional<fs::path>& tokenizer_file) {
  std::vector<fs::path> folders;
  if (fs::is_directory(model)) folders.push_back(model);
  if (tokenizer_file) {
    folders.push_back(fs::is_directory(*tokenizer_file) ? *tokenizer_file
                                                        : tokenizer_file->parent_path());
  }
  for (const fs::path& dir : folders) {
    if (!dir.empty() && folder_has_template(dir)) return ChatTemplate::from_file(dir);
  }
  for (const fs::path& file : {model, tokenizer_file.value_or(fs::path())}) {
    if (file.empty() || !is_gguf(file)) continue;
    auto gguf = gguf::File::open(file);
    if (gguf->find("tokenizer.chat_template")) {
      return ChatTemplate::from_source(gguf->get_string("tokenizer.chat_template"),
                                       file.string() + ":tokenizer.chat_template");
    }
  }
  return std::nullopt;
}

ChatTemplate resolve_chat_template(std::string_view spec, const fs::path& model,
                                   const std::optional<fs::path>& tokenizer_file,
                                   const tokenizer::Tokenizer& tok) {
  std::optional<ChatTemplate> tmpl;
  const std::vector<std::string> builtins = ChatTemplate::builtin_names();
  if (spec.empty()) {
    tmpl = find_model_chat_template(model, tokenizer_file);
    if (!tmpl) {
      throw Error(
          fmt::format(
              "the model has no chat template (no chat_template.jinja, tokenizer_config.json "
              "template or "
              "GGUF tokenizer.chat_template); pass --chat-template with a file or one of: {}",
              fmt::join(builtins, ", ")))
          .in_file(model.string());
    }
  } else if (std::find(builtins.begin(), builtins.end(), spec) != builtins.end()) {
    tmpl = ChatTemplate::builtin(spec);
  } else if (fs::exists(fs::path(std::string(spec)))) {
    tmpl = ChatTemplate::from_file(fs::path(std::string(spec)));
  } else {
    throw Error(fmt::format("--chat-template {}: not a file and not a builtin format ({})", spec,
                            fmt::join(builtins, ", ")));
  }
  tmpl->special_tokens().fill_from(tok);
  return std::move(*tmpl);
}

ChatPromptText render_chat_prompt(const ChatTemplate& tmpl, const std::vector<Message>& messages) {
  RenderOptions options;
  options.add_generation_prompt = true;
  ChatPromptText out;
  out.text = tmpl.render(messages, options).text;
  out.add_special_tokens = tmpl.tokenizer_adds_special_tokens();
  return out;
}

std::vector<tokenizer::TokenId> end_of_turn_tokens(const ChatTemplate& tmpl,
                                                   const tokenizer::Tokenizer& tok) {
  std::vector<tokenizer::TokenId> ids;
  auto add = [&](tokenizer::TokenId id) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  if (auto eos = tok.eos_id()) add(*eos);
  const std::optional<std::string> eos_text = tmpl.special_tokens().eos();
  std::vector<std::string> candidates = tmpl.special_tokens().all;
  if (eos_text) candidates.push_back(*eos_text);
  // Special tokens of the vocabulary that the template writes literally (e.g. "<|im_end|>").
  for (size_t id = 0; id < tok.vocab_size(); ++id) {
    const auto t = static_cast<tokenizer::TokenId>(id);
    if (!tok.is_special(t)) continue;
    std::string text = tok.token_text(t);
    if (!text.empty() && tmpl.source().find(text) != std::string::npos)
      candidates.push_back(std::move(text));
  }
  for (const std::string& text : candidates) {
    if (text.find("header") != std::string::npos) continue;  // <|end_header_id|> closes a role name
    if (!is_end_marker_text(text, eos_text)) continue;
    if (auto id = tok.token_id(text); id && tok.is_special(*id)) add(*id);
  }
  return ids;
}

}  // namespace seqit::chat

// Chat templates: where they come from (tokenizer_config.json, chat_template.jinja, a plain file,
// mistral.rs-style JSON, or a builtin format for base models) and rendering a conversation to
// text exactly as transformers' apply_chat_template does, while recording which output bytes are
// each assistant message's content.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/jinja.h"

namespace seqit::tokenizer {
class Tokenizer;
}

namespace seqit::chat {

// The tokenizer's special tokens as transformers passes them to templates.
struct SpecialTokens {
  // bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token (those set).
  std::vector<std::pair<std::string, std::string>> named;
  std::vector<std::string> additional;  // additional_special_tokens
  // Texts of every special token the config declares (added tokens with "special": true), used to
  // recognise end-of-turn markers when no tokenizer is at hand.
  std::vector<std::string> all;
  // tokenizer_config.json "add_bos_token" when present.
  std::optional<bool> add_bos_token;
  // Read from a tokenizer config: then a token it leaves unset (Qwen's bos_token: null) stays
  // unset, as transformers passes it.
  bool from_config = false;

  std::optional<std::string> get(std::string_view name) const;
  std::optional<std::string> bos() const { return get("bos_token"); }
  std::optional<std::string> eos() const { return get("eos_token"); }
  void set(std::string_view name, std::string text);
  // Fills BOS/EOS from a loaded tokenizer when no config gave the tokens, and adds the names to
  // `all`.
  void fill_from(const tokenizer::Tokenizer& tok);
};

// Reads the special tokens of a tokenizer_config.json (strings or AddedToken objects).
SpecialTokens read_special_tokens(const std::filesystem::path& tokenizer_config);

struct ByteRange {
  size_t begin = 0, end = 0;
  bool operator==(const ByteRange&) const = default;
};

struct RenderOptions {
  bool add_generation_prompt = false;
  // Passed as `tools` and `documents` (None when not set, as transformers does).
  jinja::Value tools = jinja::Value::none();
  jinja::Value documents = jinja::Value::none();
  // Extra template variables (transformers' **kwargs, e.g. enable_thinking=false).
  std::vector<std::pair<std::string, jinja::Value>> variables;
  // strftime_now() time (seconds since the epoch, UTC); the local clock when unset.
  std::optional<int64_t> now_unix;
};

// Where one message's content landed in the rendered text.
struct MessageText {
  size_t message_index = 0;  // index in the messages list
  std::string role;
  std::vector<ByteRange> content;  // sorted, disjoint; the template may trim or split the content
};

struct Rendered {
  std::string text;
  // One entry per message whose content (or part of it) appears in the text, in message order.
  std::vector<MessageText> messages;
  // Output of {% generation %} blocks (transformers' assistant-mask markers), when the template has
  // them.
  std::vector<ByteRange> generation;

  // The entry for message `index`, or nullptr when none of its content is in the text.
  const MessageText* find(size_t index) const;
};

// A message for the convenience overloads; any other field needs a jinja::Value message.
struct Message {
  std::string role, content;
};
jinja::Value messages_value(const std::vector<Message>& messages);

class ChatTemplate {
 public:
  // Jinja source text; `name` is used in error messages.
  static ChatTemplate from_source(std::string_view source, std::string name,
                                  SpecialTokens tokens = {});
  // A file or folder: a tokenizer folder (chat_template.jinja, else tokenizer_config.json), a
  // tokenizer_config.json / mistral.rs JSON ("chat_template" string or [{name, template}] list;
  // `template_name` picks one, "default" otherwise), or any other file as Jinja text. Special
  // tokens come from the same JSON or the folder's tokenizer_config.json.
  static ChatTemplate from_file(const std::filesystem::path& path,
                                const std::string& template_name = "");
  // tulu, alpaca, chatml, llama3, mistral (see builtin_formats.cpp and docs/chat.md).
  static ChatTemplate builtin(std::string_view name, SpecialTokens tokens = {});
  static std::vector<std::string> builtin_names();

  // Renders `messages` (a list of dicts with role and content, as in transformers).
  Rendered render(const jinja::Value& messages, const RenderOptions& options = {}) const;
  Rendered render(const std::vector<Message>& messages, const RenderOptions& options = {}) const;

  const std::string& name() const { return template_.name(); }
  const std::string& source() const { return source_; }
  const jinja::Template& jinja() const { return template_; }
  const SpecialTokens& special_tokens() const { return tokens_; }
  SpecialTokens& special_tokens() { return tokens_; }
  // Whether the tokenizer should add its own special tokens (BOS) when encoding the rendered
  // text: false for Hugging Face templates (apply_chat_template tokenizes with
  // add_special_tokens=False: the template writes BOS itself), true for the builtin base-model
  // formats tulu and alpaca (open-instruct and Alpaca tokenize with the defaults).
  bool tokenizer_adds_special_tokens() const { return tokenizer_adds_special_; }
  // Does add_generation_prompt change the text (probed once with a one-message conversation)?
  // nullopt when the probe fails (the template refuses it).
  std::optional<bool> has_generation_prompt() const;

 private:
  std::string source_;
  jinja::Template template_;
  SpecialTokens tokens_;
  bool tokenizer_adds_special_ = false;
  // has_generation_prompt() cache: -2 not probed, -1 probe failed, 0 no, 1 yes (shared by copies).
  std::shared_ptr<std::atomic<int>> has_generation_prompt_ = std::make_shared<std::atomic<int>>(-2);
};

}  // namespace seqit::chat

// Pitfall checks on real templates (clean ones stay quiet) and on templates built to show each
// mistake.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>

#include "chat/pitfalls.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"

namespace seqit::chat {
namespace {
using testing::shared_data;
using tokenizer::Tokenizer;

const Tokenizer& load(const char* relative) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[relative];
  if (!slot) slot = tokenizer::load_tokenizer(shared_data(relative));
  return *slot;
}

std::vector<Finding> of(const std::vector<Finding>& all, const std::string& check, Severity s) {
  std::vector<Finding> out;
  for (const auto& f : all) {
    if (f.check == check && f.severity == s) out.push_back(f);
  }
  return out;
}

size_t warnings(const std::vector<Finding>& all) {
  return size_t(std::count_if(all.begin(), all.end(),
                              [](const Finding& f) { return f.severity == Severity::warning; }));
}

std::string dump(const std::vector<Finding>& all) {
  std::string s;
  for (const auto& f : all) s += "[" + f.check + "] " + f.message + "\n";
  return s;
}

ChatTemplate qwen25() {
  ChatTemplate t = ChatTemplate::from_file(
      shared_data("tokenizers/chat_templates/llamacpp/Qwen-Qwen2.5-7B-Instruct.jinja"));
  t.special_tokens() =
      read_special_tokens(shared_data("tokenizers/qwen/qwen3_tokenizer_config.json"));
  return t;
}

TEST(Pitfalls, CleanTemplatesHaveNoWarnings) {
  auto f = check_template(qwen25(), &load("tokenizers/qwen/qwen3_tokenizer.json"));
  EXPECT_EQ(warnings(f), 0u) << dump(f);
  f = check_template(qwen25(), nullptr);
  EXPECT_EQ(warnings(f), 0u) << dump(f);
  SpecialTokens llama3 =
      read_special_tokens(shared_data("tokenizers/llama3/tokenizer_config.json"));
  f = check_template(ChatTemplate::builtin("tulu", llama3),
                     &load("tokenizers/llama3/tokenizer.json"));
  EXPECT_EQ(warnings(f), 0u) << dump(f);
  f = check_template(ChatTemplate::builtin("llama3", llama3),
                     &load("tokenizers/llama3/tokenizer.json"));
  EXPECT_EQ(warnings(f), 0u) << dump(f);
}

TEST(Pitfalls, NoEndMarkerAfterTheAssistantTurn) {
  ChatTemplate t = ChatTemplate::from_source(
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% if m.role != 'assistant' "
      "%}<|im_end|>{% endif %}\n"
      "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
      "forgets-im_end.jinja", qwen25().special_tokens());
  auto with_tokenizer = check_template(t, &load("tokenizers/qwen/qwen3_tokenizer.json"));
  EXPECT_EQ(of(with_tokenizer, "end-marker", Severity::warning).size(), 2u) << dump(with_tokenizer);
  auto text_only = check_template(t, nullptr);
  EXPECT_EQ(of(text_only, "end-marker", Severity::warning).size(), 2u) << dump(text_only);
}

TEST(Pitfalls, BosAddedTwice) {
  // mistral.rs' Mistral template writes <s>; a tokenizer that adds <s> too doubles it.
  const Tokenizer& tok = load("tokenizers/mistral/tokenizer.model.v1");
  ChatTemplate t =
      ChatTemplate::from_file(shared_data("tokenizers/chat_templates/mistralrs_mistral.json"));
  t.special_tokens().fill_from(tok);
  CheckOptions add;
  add.add_special = true;
  auto f = check_template(t, &tok, add);
  ASSERT_EQ(of(f, "double-bos", Severity::warning).size(), 1u) << dump(f);
  EXPECT_NE(f[0].message.find("two BOS"), std::string::npos);
  EXPECT_TRUE(of(check_template(t, &tok), "double-bos", Severity::warning)
                  .empty());  // HF's default: no extra BOS
  CheckOptions text_only;
  text_only.add_special = true;
  EXPECT_EQ(of(check_template(t, nullptr, text_only), "double-bos", Severity::warning).size(), 1u);
}

TEST(Pitfalls, SystemMessageDroppedOrRefused) {
  ChatTemplate drops = ChatTemplate::from_source(
      "{% for m in messages %}{% if m.role != 'system' %}<|im_start|>{{ m.role }}\n{{ m.content "
      "}}<|im_end|>\n"
      "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
      "drops-system.jinja", qwen25().special_tokens());
  auto f = check_template(drops, nullptr);
  EXPECT_EQ(of(f, "system-dropped", Severity::warning).size(), 1u) << dump(f);
  // Gemma 2 raises on a system message: a note, with the template's own words.
  ChatTemplate gemma = ChatTemplate::from_file(
      shared_data("tokenizers/chat_templates/llamacpp/google-gemma-2-2b-it.jinja"));
  f = check_template(gemma, nullptr);
  auto notes = of(f, "system-dropped", Severity::info);
  ASSERT_EQ(notes.size(), 1u) << dump(f);
  EXPECT_NE(notes[0].message.find("System role not supported"), std::string::npos);
  EXPECT_EQ(warnings(f), 0u) << dump(f);
}

TEST(Pitfalls, GenerationPrompt) {
  // No generation prompt at all: the model would have to write the header itself.
  ChatTemplate missing = ChatTemplate::from_source(
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}",
      "no-prompt.jinja", qwen25().special_tokens());
  auto f = check_template(missing, nullptr);
  auto w = of(f, "generation-prompt", Severity::warning);
  ASSERT_EQ(w.size(), 1u) << dump(f);
  EXPECT_NE(w[0].message.find("'<|im_start|>assistant\\n'"), std::string::npos) << w[0].message;
  // A prompt that differs from the training text.
  ChatTemplate differs = ChatTemplate::from_source(
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant \n{% endif %}",
      "wrong-prompt.jinja", qwen25().special_tokens());
  f = check_template(differs, nullptr);
  w = of(f, "generation-prompt", Severity::warning);
  ASSERT_EQ(w.size(), 1u) << dump(f);
  EXPECT_NE(w[0].message.find("not the start of the training text"), std::string::npos)
      << w[0].message;
  // Qwen3 writes an empty think block before the reply: a note, learned with the reply.
  ChatTemplate qwen3 =
      ChatTemplate::from_file(shared_data("tokenizers/qwen/qwen3_tokenizer_config.json"));
  f = check_template(qwen3, &load("tokenizers/qwen/qwen3_tokenizer.json"));
  EXPECT_EQ(warnings(f), 0u) << dump(f);
  auto notes = of(f, "generation-prompt", Severity::info);
  ASSERT_EQ(notes.size(), 1u) << dump(f);
  EXPECT_NE(notes[0].message.find("<think>"), std::string::npos) << notes[0].message;
  // Llama-3's first template appends the assistant header even without add_generation_prompt.
  ChatTemplate llama3 =
      ChatTemplate::from_file(shared_data("tokenizers/llama3/tokenizer_config.json"));
  f = check_template(llama3, &load("tokenizers/llama3/tokenizer.json"));
  EXPECT_EQ(warnings(f), 0u) << dump(f);
  notes = of(f, "generation-prompt", Severity::info);
  ASSERT_EQ(notes.size(), 1u) << dump(f);
  EXPECT_NE(notes[0].message.find("after the last assistant turn"), std::string::npos)
      << notes[0].message;
}

TEST(Pitfalls, FiltersTransformersDoesNotHave) {
  ChatTemplate t = ChatTemplate::from_file(
      shared_data("tokenizers/chat_templates/llamacpp/deepseek-ai-DeepSeek-V3.2.jinja"));
  auto f = check_template(t, nullptr);
  auto w = of(f, "unknown-filter", Severity::warning);
  ASSERT_EQ(w.size(), 1u) << dump(f);
  EXPECT_NE(w[0].message.find("from_json"), std::string::npos);
}

}  // namespace
}  // namespace seqit::chat

// The template a model ships with (folder, tokenizer config, GGUF metadata, builtin by name) and
// the end-of-turn tokens generation stops at, on real tokenizers.
#include <gtest/gtest.h>

#include <algorithm>

#include "chat/model_template.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace seqit::chat {
namespace {
using testing::shared_data;

bool contains(const std::vector<tokenizer::TokenId>& ids, std::optional<tokenizer::TokenId> id) {
  return id && std::find(ids.begin(), ids.end(), *id) != ids.end();
}

TEST(ModelTemplate, Llama3FolderStopsAtEotAndEndOfText) {
  const auto folder = shared_data("tokenizers/llama3");
  auto tok = tokenizer::load_tokenizer(folder / "tokenizer.json");
  ChatTemplate tmpl = resolve_chat_template("", folder, folder / "tokenizer.json", *tok);
  const auto ids = end_of_turn_tokens(tmpl, *tok);
  EXPECT_TRUE(contains(ids, tok->token_id("<|eot_id|>")));
  EXPECT_TRUE(contains(ids, tok->token_id("<|end_of_text|>")));
  EXPECT_FALSE(contains(ids, tok->token_id("<|end_header_id|>")));
  EXPECT_FALSE(contains(ids, tok->token_id("<|start_header_id|>")));
  EXPECT_FALSE(contains(ids, tok->token_id("<|begin_of_text|>")));

  // The rendered prompt ends with the assistant header, and the template writes BOS itself.
  ChatPromptText p = render_chat_prompt(tmpl, {{"user", "Hi"}});
  EXPECT_FALSE(p.add_special_tokens);
  EXPECT_EQ(p.text.rfind("<|begin_of_text|>", 0), 0u) << p.text;
  const std::string tail = "<|start_header_id|>assistant<|end_header_id|>\n\n";
  ASSERT_GE(p.text.size(), tail.size());
  EXPECT_EQ(p.text.substr(p.text.size() - tail.size()), tail);
}

TEST(ModelTemplate, QwenConfigFileStopsAtImEnd) {
  auto tok = tokenizer::load_tokenizer(shared_data("tokenizers/qwen/qwen3_tokenizer.json"));
  ChatTemplate tmpl =
      resolve_chat_template(shared_data("tokenizers/qwen/qwen3_tokenizer_config.json").string(),
                            "unused", std::nullopt, *tok);
  const auto ids = end_of_turn_tokens(tmpl, *tok);
  EXPECT_TRUE(contains(ids, tok->token_id("<|im_end|>")));
  EXPECT_FALSE(contains(ids, tok->token_id("<|im_start|>")));
}

TEST(ModelTemplate, BuiltinByNameUsesTheTokenizersEos) {
  auto tok = tokenizer::load_tokenizer(shared_data("models/stories260K/tok512.bin"));
  ChatTemplate tmpl = resolve_chat_template(
      "tulu", shared_data("models/stories260K/stories260K.bin"), std::nullopt, *tok);
  EXPECT_EQ(tmpl.special_tokens().eos(), tok->token_text(*tok->eos_id()));
  EXPECT_EQ(end_of_turn_tokens(tmpl, *tok), std::vector<tokenizer::TokenId>{*tok->eos_id()});
  ChatPromptText p = render_chat_prompt(tmpl, {{"user", "Hi"}});
  EXPECT_TRUE(p.add_special_tokens);  // open-instruct tokenizes tulu text with BOS
  EXPECT_EQ(p.text, "<|user|>\nHi\n<|assistant|>\n");
}

TEST(ModelTemplate, ModelsWithoutTemplateAreFoundAndReported) {
  const auto stories = shared_data("models/stories260K/stories260K.bin");
  const auto gguf = shared_data("models/gguf-fixtures/llama-2-tiny-random.gguf");
  EXPECT_FALSE(find_model_chat_template(stories, shared_data("models/stories260K/tok512.bin")));
  EXPECT_FALSE(find_model_chat_template(gguf, gguf));
  auto tok = tokenizer::load_tokenizer(shared_data("models/stories260K/tok512.bin"));
  try {
    resolve_chat_template("", stories, std::nullopt, *tok);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stories260K.bin"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("chatml"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_chat_template("no-such-format", stories, std::nullopt, *tok), Error);
  // A folder with a tokenizer_config.json template is found through the tokenizer file beside it.
  EXPECT_TRUE(find_model_chat_template("unused", shared_data("tokenizers/llama3/tokenizer.json")));
}

}  // namespace
}  // namespace seqit::chat

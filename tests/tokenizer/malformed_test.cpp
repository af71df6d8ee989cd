// Malformed or unsupported tokenizer files give seqit::Error naming the file and the component.
#include <gtest/gtest.h>

#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace seqit::tokenizer {
namespace {

using seqit::testing::TempDir;

// Loads `content` as `name` and returns the error text (fails the test when it loads).
std::string load_error(const std::string& name, const std::string& content) {
  TempDir dir;
  seqit::testing::spit(dir / name, content);
  try {
    load_tokenizer(dir / name);
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find(name), std::string::npos) << "error does not name the file: " << what;
    return what;
  }
  ADD_FAILURE() << name << " loaded";
  return {};
}

const char* kTinyBpe =
    R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]} %s})";

std::string tiny(const std::string& extra) {
  char buf[512];
  std::snprintf(buf, sizeof buf, kTinyBpe, extra.c_str());
  return buf;
}

TEST(Malformed, TokenizerJsonComponents) {
  EXPECT_NE(load_error("tokenizer.json", "{\"model\": ").find("tokenizer.json"), std::string::npos);
  EXPECT_NE(load_error("tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {}}})")
                .find("WordPiece"),
            std::string::npos);
  EXPECT_NE(load_error("tokenizer.json", tiny(R"(, "normalizer": {"type": "Precompiled"})"))
                .find("Precompiled"),
            std::string::npos);
  EXPECT_NE(load_error("tokenizer.json", tiny(R"(, "pre_tokenizer": {"type": "BertPreTokenizer"})"))
                .find("BertPreTokenizer"),
            std::string::npos);
  EXPECT_NE(load_error("tokenizer.json", tiny(R"(, "decoder": {"type": "WordPiece"})"))
                .find("decoder type 'WordPiece'"),
            std::string::npos);
  EXPECT_NE(load_error("tokenizer.json", tiny(R"(, "post_processor": {"type": "Mystery"})"))
                .find("Mystery"),
            std::string::npos);
  EXPECT_NE(load_error("tokenizer.json",
                       R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a zz"]}})")
                .find("zz"),
            std::string::npos);
  EXPECT_NE(
      load_error(
          "tokenizer.json",
          tiny(
              R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})"))
          .find("(unclosed"),
      std::string::npos);
  EXPECT_NE(load_error("tokenizer.json",
                       R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})")
                .find("vocab"),
            std::string::npos);
}

TEST(Malformed, TinyTokenizerJsonWorks) {
  TempDir dir;
  seqit::testing::spit(dir / "tokenizer.json", tiny(""));
  auto tok = load_tokenizer(dir / "tokenizer.json");
  EXPECT_EQ(tok->encode("abba"), (std::vector<TokenId>{2, 1, 0}));
  EXPECT_EQ(tok->decode(std::vector<TokenId>{2, 1, 0}),
            "ab b a");  // no decoder: HF joins with spaces
}

TEST(Malformed, OtherFormats) {
  EXPECT_NE(load_error("vocab.gguf", std::string("GGUF\x03\x00\x00\x00", 8)).find("vocab.gguf"),
            std::string::npos);
  EXPECT_NE(load_error("bad.model", std::string("\x0A\xFF\xFF\xFF\xFF\x0F garbage", 14))
                .find("bad.model"),
            std::string::npos);
  EXPECT_NE(load_error("random.bin", "\x01\x02\x03").find("unrecognised"), std::string::npos);
}

TEST(Malformed, GgufWithoutVocabularyOrUnsupportedModel) {
  auto bert = seqit::testing::shared_data("tokenizers/llamacpp-vocab/ggml-vocab-bert-bge.gguf");
  try {
    load_tokenizer(bert);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bert"), std::string::npos) << e.what();
  }
  auto deepseek =
      seqit::testing::shared_data("tokenizers/llamacpp-vocab/ggml-vocab-deepseek-llm.gguf");
  try {
    load_tokenizer(deepseek);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deepseek-llm"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace seqit::tokenizer

namespace seqit::tokenizer {
namespace {

// Issue 17: ids that do not fit were accepted and silently truncated ("hello" became id 0), and an
// empty vocabulary loaded and dropped every text.
TEST(Malformed, TokenIdsOutOfRangeAndEmptyVocabularies) {
  std::string e = load_error(
      "tokenizer.json",
      R"({"model": {"type": "BPE", "vocab": {"hello": 1099511627776, "a": 0}, "merges": []}})");
  EXPECT_NE(e.find("'hello' has id 1099511627776"), std::string::npos) << e;
  EXPECT_NE(e.find("model.vocab"), std::string::npos) << e;
  e = load_error("tokenizer.json",
                 R"({"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}})");
  EXPECT_NE(e.find("id -3"), std::string::npos) << e;
  e = load_error("tokenizer.json",
                 R"({"added_tokens": [{"id": 4611686018427387904, "content": "<x>"}],
                     "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  EXPECT_NE(e.find("'<x>' has id 4611686018427387904"), std::string::npos) << e;
  EXPECT_NE(e.find("added_tokens"), std::string::npos) << e;
  e = load_error("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {}, "merges": []}})");
  EXPECT_NE(e.find("vocabulary is empty"), std::string::npos) << e;
}

}  // namespace
}  // namespace seqit::tokenizer

// decode(encode(x)) == x wherever the tokenizer is lossless (byte-level BPE; SentencePiece BPE with
// byte fallback, whose decoder removes exactly the "▁" the encoder prepended), on the oracle's
// 10,000 generated strings; special-token text is encoded as text (parse_special = false).
#include <gtest/gtest.h>

#include "oracle_strings.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"

namespace seqit::tokenizer {
namespace {

using seqit::testing::shared_data;

// SentencePiece-style tokenizers turn spaces into "▁", so text that itself contains "▁" does not
// come back (it decodes as a space); those strings are left out for them.
void expect_lossless(const char* path, bool spm_style = false) {
  auto tok = load_tokenizer(shared_data(path));
  auto strings = testing::oracle_strings(10000, 20251126);
  if (spm_style) {
    std::erase_if(strings,
                  [](const std::string& s) { return s.find("\xE2\x96\x81") != std::string::npos; });
    EXPECT_GT(strings.size(), 9000u);
  }
  size_t equal = 0, seen = 0;
  for (const auto& s : strings) {
    ++seen;
    auto ids = tok->encode(s, {.add_special = false, .parse_special = false});
    std::string back = tok->decode(ids);
    if (back == s)
      ++equal;
    else
      ADD_FAILURE() << path << ": " << s << " -> " << back;
    if (equal + 5 < seen) break;  // stop flooding the log on a systematic failure
  }
  EXPECT_EQ(equal, strings.size()) << path;
}

TEST(RoundTrip, Gpt2IsLossless) {
  expect_lossless("tokenizers/gpt2/tokenizer.json");
}
TEST(RoundTrip, Llama3IsLossless) {
  expect_lossless("tokenizers/llama3/tokenizer.json");
}
TEST(RoundTrip, Llama2JsonIsLossless) {
  expect_lossless("tokenizers/llama2/tokenizer.json", true);
}
TEST(RoundTrip, Llama2SentencePieceModelIsLossless) {
  expect_lossless("tokenizers/llama2/tokenizer.model", true);
}
TEST(RoundTrip, Llama2GgufIsLossless) {
  expect_lossless("tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf", true);
}
TEST(RoundTrip, Gpt2GgufIsLossless) {
  expect_lossless("tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
}

// Qwen normalises to NFC, so the round trip gives the NFC form: identical for NFC input.
TEST(RoundTrip, QwenIsLosslessOnNfcText) {
  auto tok = load_tokenizer(shared_data("tokenizers/qwen/qwen3_tokenizer.json"));
  for (std::string s : {"café", "한글 음절", "e\xCC\x81", "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"}) {
    auto ids = tok->encode(s);
    std::string back = tok->decode(ids);
    if (s == "e\xCC\x81")
      EXPECT_EQ(back, "\xC3\xA9");  // NFC composes e + U+0301
    else if (s[0] == '\xE1')
      EXPECT_EQ(back, "\xED\x95\x9C");  // jamo compose to 한
    else
      EXPECT_EQ(back, s);
  }
}

}  // namespace
}  // namespace seqit::tokenizer

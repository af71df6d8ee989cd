// Token spans (the bytes of the input each id came from), which assistant-token masks stand on:
// through SentencePiece "▁" replacement and prefix, NFC, byte-level splits and special tokens.
#include <gtest/gtest.h>

#include "oracle_strings.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"

namespace seqit::tokenizer {
namespace {

using seqit::testing::shared_data;

std::vector<std::pair<size_t, size_t>> spans_of(const Tokenizer& tok, const std::string& text,
                                                EncodeOptions o = {}) {
  std::vector<Span> spans;
  auto ids = tok.encode(text, o, &spans);
  EXPECT_EQ(ids.size(), spans.size());
  std::vector<std::pair<size_t, size_t>> out;
  for (const Span& s : spans) out.emplace_back(s.begin, s.end);
  return out;
}
using P = std::vector<std::pair<size_t, size_t>>;

TEST(Spans, SentencePieceStyle) {
  auto tok = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.json"));
  // <s>, "▁Hello" (the prefix "▁" has no input bytes), "▁world" (its "▁" is the space).
  EXPECT_EQ(spans_of(*tok, "Hello world"), (P{{0, 0}, {0, 5}, {5, 11}}));
  // A lone prefix "▁" gets the empty span where it was inserted.
  EXPECT_EQ(tok->encode("1"), (std::vector<TokenId>{1, 29871, 29896}));
  EXPECT_EQ(spans_of(*tok, "1"), (P{{0, 0}, {0, 0}, {0, 1}}));
  // Byte-fallback pieces span their own byte.
  auto s = spans_of(*tok, "a🙂", {.add_special = false});
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[1], (std::pair<size_t, size_t>{1, 2}));
  EXPECT_EQ(s[4], (std::pair<size_t, size_t>{4, 5}));
  // Special tokens span their text; normalized ones include the space they absorb.
  EXPECT_EQ(spans_of(*tok, "Hi <s> x", {.add_special = false}), (P{{0, 2}, {2, 6}, {6, 8}}));
  auto bin = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.model"));
  EXPECT_EQ(spans_of(*bin, "Hello world"), (P{{0, 0}, {0, 5}, {5, 11}}));
}

TEST(Spans, ByteLevelAndSpecialTokens) {
  auto gpt2 = load_tokenizer(shared_data("tokenizers/gpt2/tokenizer.json"));
  EXPECT_EQ(spans_of(*gpt2, "Hello world"), (P{{0, 5}, {5, 11}}));
  auto llama3 = load_tokenizer(shared_data("tokenizers/llama3/tokenizer.json"));
  EXPECT_EQ(spans_of(*llama3, "<|begin_of_text|>hi<|eot_id|>"), (P{{0, 17}, {17, 19}, {19, 29}}));
  // Invalid UTF-8 is repaired to U+FFFD, spanning the bad byte.
  auto bad = spans_of(*gpt2, std::string("a\xFF"
                                         "b"));
  ASSERT_FALSE(bad.empty());
  EXPECT_EQ(bad.front(), (std::pair<size_t, size_t>{0, 1}));
  EXPECT_EQ(bad.back().second, 3u);
}

TEST(Spans, ThroughNfc) {
  auto qwen = load_tokenizer(shared_data("tokenizers/qwen/qwen3_tokenizer.json"));
  // "e" + U+0301 composes to "é": the composed bytes span the whole decomposed input.
  std::string text = "e\xCC\x81x";
  auto spans = spans_of(*qwen, text);
  ASSERT_FALSE(spans.empty());
  EXPECT_EQ(spans.front().first, 0u);
  EXPECT_EQ(spans.back().second, text.size());
}

// On the generated strings, spans are ordered, inside the input, and cover every input byte that
// is not a special token stripped by nothing (all bytes here, as parse_special is off).
TEST(Spans, CoverTheInputInOrder) {
  for (const char* path : {"tokenizers/gpt2/tokenizer.json", "tokenizers/llama2/tokenizer.json",
                           "tokenizers/qwen/qwen3_tokenizer.json"}) {
    auto tok = load_tokenizer(shared_data(path));
    for (const auto& s : testing::oracle_strings(1500, 5)) {
      std::vector<Span> spans;
      tok->encode(s, {.add_special = false, .parse_special = false}, &spans);
      size_t covered_to = 0, last_begin = 0;
      for (const Span& sp : spans) {
        ASSERT_LE(sp.begin, sp.end) << path << ": " << s;
        ASSERT_LE(sp.end, s.size()) << path << ": " << s;
        ASSERT_GE(sp.begin, last_begin) << path << ": " << s;
        if (sp.begin > covered_to) {
          ADD_FAILURE() << path << ": bytes " << covered_to << ".." << sp.begin << " uncovered in "
                        << s;
        }
        covered_to = std::max(covered_to, sp.end);
        last_begin = sp.begin;
      }
      if (!s.empty()) {
        EXPECT_EQ(covered_to, s.size()) << path << ": " << s;
      }
    }
  }
}

}  // namespace
}  // namespace seqit::tokenizer

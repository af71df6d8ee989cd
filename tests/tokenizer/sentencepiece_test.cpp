// SentencePiece .model files (Mistral v1 and v3): they load, round-trip text, and control pieces
// written in the text ("[INST]") become their ids when parse_special, splitting the text around
// them.
#include <gtest/gtest.h>

#include "oracle_strings.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"

namespace seqit::tokenizer {
namespace {

using seqit::testing::shared_data;

TEST(SentencePiece, MistralModelsLoadAndRoundTrip) {
  auto v1 = load_tokenizer(shared_data("tokenizers/mistral/tokenizer.model.v1"));
  auto v3 =
      load_tokenizer(shared_data("tokenizers/mistral/mistral_instruct_tokenizer_240323.model.v3"));
  EXPECT_EQ(v1->vocab_size(), 32000u);
  EXPECT_EQ(v3->vocab_size(), 32768u);
  for (const auto* tok : {v1.get(), v3.get()}) {
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    auto strings = testing::oracle_strings(500, 3);
    for (const auto& s : strings) {
      if (s.find("\xE2\x96\x81") != std::string::npos) continue;  // "▁" reads back as a space
      auto ids = tok->encode(s, {.add_special = false, .parse_special = false});
      EXPECT_EQ(tok->decode(ids), s);
    }
  }
}

TEST(SentencePiece, ControlPiecesInTextAreSplitOut) {
  auto v3 =
      load_tokenizer(shared_data("tokenizers/mistral/mistral_instruct_tokenizer_240323.model.v3"));
  auto inst = v3->token_id("[INST]"), inst_end = v3->token_id("[/INST]");
  ASSERT_TRUE(inst && inst_end);
  EXPECT_TRUE(v3->is_special(*inst));
  auto body = v3->encode(" Hi there ", {.add_special = false});
  std::vector<TokenId> expected = {1, *inst};
  expected.insert(expected.end(), body.begin(), body.end());
  expected.push_back(*inst_end);
  EXPECT_EQ(v3->encode("[INST] Hi there [/INST]"), expected);
  // Without parse_special the brackets are text.
  auto plain = v3->encode("[INST]", {.add_special = false, .parse_special = false});
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(v3->decode(plain), "[INST]");
  // Spans point at the control text.
  std::vector<Span> spans;
  v3->encode("ab[INST]", {}, &spans);
  EXPECT_EQ(spans.back().begin, 2u);
  EXPECT_EQ(spans.back().end, 8u);
}

}  // namespace
}  // namespace seqit::tokenizer

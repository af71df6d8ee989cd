// Streaming detokenisation with a small byte-level vocabulary written here: UTF-8 split across
// tokens, invalid bytes, stop strings across token boundaries, special tokens, the leading-space
// rule.
#include <gtest/gtest.h>

#include <map>

#include "infer/text_stream.h"

using namespace seqit::infer;
using seqit::tokenizer::TokenId;

namespace {
// Token i < 256 is byte i; 256 = "<s>" (special); 257 = "▁the" (SentencePiece style: decode drops
// the leading space at the start of a text); 258 = " and" (byte-level style: keeps it).
class ToyTokenizer : public seqit::tokenizer::Tokenizer {
 public:
  std::vector<TokenId> encode(std::string_view, const seqit::tokenizer::EncodeOptions&,
                              std::vector<seqit::tokenizer::Span>*) const override {
    return {};
  }
  std::string decode(std::span<const TokenId> ids, bool skip_special) const override {
    std::string out;
    for (TokenId id : ids) {
      if (skip_special && id == 256) continue;
      out += token_bytes(id);
    }
    if (!ids.empty() && ids[0] == 257) out.erase(0, 1);
    return out;
  }
  std::string token_bytes(TokenId id) const override {
    if (id < 256) return std::string(1, static_cast<char>(id));
    if (id == 256) return "<s>";
    if (id == 257) return " the";
    return " and";
  }
  size_t vocab_size() const override { return 259; }
  std::string token_text(TokenId id) const override { return token_bytes(id); }
  std::optional<TokenId> token_id(std::string_view) const override { return std::nullopt; }
  bool is_special(TokenId id) const override { return id == 256; }
  std::optional<TokenId> bos_id() const override { return 256; }
  std::optional<TokenId> eos_id() const override { return std::nullopt; }
  std::string describe() const override { return "toy"; }
};

std::vector<TokenId> bytes_of(std::string_view s) {
  std::vector<TokenId> ids;
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

// Pushes every token, returning the pieces as they came out.
std::vector<std::string> run(TextStream& stream, const std::vector<TokenId>& ids) {
  std::vector<std::string> pieces;
  for (TokenId id : ids) pieces.push_back(stream.push(id));
  pieces.push_back(stream.finish());
  return pieces;
}
}  // namespace

TEST(TextStream, HoldsMultiByteCharactersUntilComplete) {
  ToyTokenizer tok;
  TextStream s(tok, {}, false);
  auto pieces = run(s, bytes_of("a\xC3\xA9\xE2\x82\xAC!"));  // "aé€!"
  EXPECT_EQ(pieces,
            (std::vector<std::string>{"a", "", "\xC3\xA9", "", "", "\xE2\x82\xAC", "!", ""}));
  EXPECT_EQ(s.text(), "a\xC3\xA9\xE2\x82\xAC!");
}

TEST(TextStream, InvalidBytesBecomeReplacementCharacters) {
  ToyTokenizer tok;
  TextStream s(tok, {}, false);
  // A stray continuation byte, a lead followed by ASCII, and an unfinished sequence at the end.
  run(s, bytes_of("x\x80y\xC3z\xE2\x82"));
  EXPECT_EQ(s.text(), "x\xEF\xBF\xBDy\xEF\xBF\xBDz\xEF\xBF\xBD\xEF\xBF\xBD");
  for (size_t i = 0; i < s.text().size(); ++i)
    ASSERT_NE(static_cast<unsigned char>(s.text()[i]), 0x80u);
}

TEST(TextStream, StopStringsAcrossTokensAreHeldBackAndCut) {
  ToyTokenizer tok;
  TextStream s(tok, {"\n\nUser:", "END"}, false);
  auto pieces = run(s, bytes_of("Hi\n\nUs there\n\nUser: more"));
  // "\n\nUs" is held until " " shows it is not the stop string; the second "\n\nUser:" stops it.
  std::string joined;
  for (const auto& p : pieces) joined += p;
  EXPECT_EQ(joined, "Hi\n\nUs there");
  EXPECT_EQ(s.text(), "Hi\n\nUs there");
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.stop_string(), "\n\nUser:");
  EXPECT_EQ(pieces[2], "") << "the first newline could begin the stop string";
  EXPECT_EQ(s.push('x'), "") << "nothing after a stop";
}

TEST(TextStream, PrefixOfStopStringIsReleasedAtTheEnd) {
  ToyTokenizer tok;
  TextStream s(tok, {"END"}, false);
  auto pieces = run(s, bytes_of("the EN"));
  EXPECT_EQ(pieces.back(), "EN");
  EXPECT_EQ(s.text(), "the EN");
  EXPECT_FALSE(s.stopped());
}

TEST(TextStream, SpecialTokensAreLeftOutAndLeadingSpaceFollowsTheTokenizer) {
  ToyTokenizer tok;
  TextStream start(tok, {}, true);
  run(start, {256, 257, 258});
  EXPECT_EQ(start.text(), "the and") << "SentencePiece-style space dropped at the start of a text";
  TextStream cont(tok, {}, false);
  run(cont, {257, 258});
  EXPECT_EQ(cont.text(), " the and") << "continuing a prompt keeps it";
  TextStream bytelevel(tok, {}, true);
  run(bytelevel, {258, 257});
  EXPECT_EQ(bytelevel.text(), " and the") << "a byte-level tokenizer keeps it even at the start";
}

TEST(Utf8, AppendValidLeavesAnUnfinishedTailUnconsumed) {
  std::string out;
  EXPECT_EQ(append_valid_utf8(out, "ab\xF0\x9F", false), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(append_valid_utf8(out, "ab\xF0\x9F\x98\x80", false), 6u);
  EXPECT_EQ(out, "ab\xF0\x9F\x98\x80");
  out.clear();
  // 0xED 0xA0 starts a surrogate: never valid, so not held.
  EXPECT_EQ(append_valid_utf8(out, "\xED\xA0", false), 2u);
  EXPECT_EQ(out, "\xEF\xBF\xBD\xEF\xBF\xBD");
}

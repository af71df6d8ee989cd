// The streaming decoder against decode(): token by token, every chunk is complete UTF-8 and the
// chunks add up to decode(all ids) exactly, for byte-level and SentencePiece-style tokenizers,
// with and without special tokens; plus batch encoding and token counting.
#include <gtest/gtest.h>

#include "oracle_strings.h"
#include "testing.h"
#include "tokenizer/batch.h"
#include "tokenizer/streaming.h"
#include "tokenizer/tokenizer.h"
#include "util/utf8.h"

namespace seqit::tokenizer {
namespace {

using seqit::testing::shared_data;

void expect_stream_matches_decode(const char* path) {
  auto tok = load_tokenizer(shared_data(path));
  auto strings = testing::oracle_strings(600, 7);
  strings.push_back("Once upon a time, 🎉 there was a café in 東京.");
  strings.push_back(" leading space, then <s> and </s>");
  // Strings during which the decoder held a token back (an incomplete UTF-8 sequence or a piece
  // that may still merge): what streaming is for, so the test must meet some.
  size_t held_back = 0;
  for (bool skip : {true, false}) {
    StreamingDecoder stream(*tok, skip);
    for (const auto& s : strings) {
      auto ids = tok->encode(s);
      stream.reset();
      std::string streamed;
      bool held = false;
      for (TokenId id : ids) {
        std::string chunk = stream.push(id);
        held |= chunk.empty();
        EXPECT_TRUE(utf8::is_valid(chunk)) << path << ": chunk of " << s;
        streamed += chunk;
      }
      streamed += stream.finish();
      EXPECT_EQ(streamed, tok->decode(ids, skip)) << path << " skip=" << skip << ": " << s;
      held_back += held;
    }
  }
  EXPECT_GT(held_back, 0u) << path << ": no string made the decoder hold a token back";
}

TEST(Streaming, Gpt2) {
  expect_stream_matches_decode("tokenizers/gpt2/tokenizer.json");
}
TEST(Streaming, Llama2Json) {
  expect_stream_matches_decode("tokenizers/llama2/tokenizer.json");
}
TEST(Streaming, Llama2SentencePiece) {
  expect_stream_matches_decode("tokenizers/llama2/tokenizer.model");
}
TEST(Streaming, Stories260k) {
  expect_stream_matches_decode("models/stories260K/tok512.bin");
}

TEST(Streaming, HoldsBackSplitCharactersAndKeepsLaterSpaces) {
  auto tok = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.json"));
  // "🎉" is four byte-fallback tokens in Llama-2: nothing comes out until the last one.
  auto ids = tok->encode("🎉 x", {.add_special = false});
  StreamingDecoder stream(*tok);
  std::vector<std::string> chunks;
  for (TokenId id : ids) chunks.push_back(stream.push(id));
  ASSERT_GE(chunks.size(), 5u);
  EXPECT_EQ(chunks[0], "");
  EXPECT_EQ(chunks[4], "🎉");
  // The space before "x" survives even though "▁x" starts a new chunk.
  std::string rest;
  for (size_t k = 5; k < chunks.size(); ++k) rest += chunks[k];
  EXPECT_EQ(rest + stream.finish(), " x");
  // An unfinished character at the end becomes U+FFFD.
  stream.reset();
  auto lead = tok->token_id("<0xF0>");
  ASSERT_TRUE(lead);
  EXPECT_EQ(stream.push(*lead), "");
  EXPECT_EQ(stream.finish(), "\xEF\xBF\xBD");
}

TEST(Batch, EncodeBatchEqualsEncodeAndCountsTokens) {
  auto tok = load_tokenizer(shared_data("tokenizers/gpt2/tokenizer.json"));
  auto strings = testing::oracle_strings(2000, 11);
  std::vector<std::string_view> views(strings.begin(), strings.end());
  auto batch = encode_batch(*tok, views, {}, 2);
  ASSERT_EQ(batch.size(), strings.size());
  for (size_t i = 0; i < strings.size(); ++i) {
    EXPECT_EQ(batch[i], tok->encode(strings[i]));
    EXPECT_EQ(count_tokens(*tok, strings[i]),
              tok->encode(strings[i], {.add_special = false}).size());
  }
  auto llama = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.json"));
  EXPECT_EQ(count_tokens(*llama, "Hello world"), 2u);                         // no BOS
  EXPECT_EQ(count_tokens(*llama, "Hello world", {.add_special = true}), 3u);  // with BOS
}

}  // namespace
}  // namespace seqit::tokenizer

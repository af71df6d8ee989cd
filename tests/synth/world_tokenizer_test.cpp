// The world tokenizer (synth/world_tokenizer.h): written as tokenizer.json, loaded by seqit's own
// tokenizer module; one token per world token, exact round trips, the tulu chat format's markers,
// and how it compares with stories260K's tok512 on the same texts.
#include <gtest/gtest.h>

#include <cstdio>

#include "chat/chat_template.h"
#include "seqinstruct/prompts.h"
#include "synth/split.h"
#include "synth/vocabulary.h"
#include "synth/world_tokenizer.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"

using namespace seqit;
using namespace seqit::synth;

namespace {

const tokenizer::Tokenizer& world_tokenizer() {
  static const std::unique_ptr<tokenizer::Tokenizer> tok = [] {
    seqit::testing::TempDir dir;
    write_world_tokenizer(dir.path());
    return tokenizer::load_tokenizer(dir.path());
  }();
  return *tok;
}

constexpr tokenizer::EncodeOptions kPlain{.add_special = false, .parse_special = true};

// Every text of an item: instruction, input, response, and the user turn the pipeline joins.
std::vector<std::string> texts(const std::vector<Item>& items) {
  std::vector<std::string> out;
  for (const Item& item : items) {
    out.push_back(item.instruction);
    out.push_back(item.input);
    out.push_back(item.response);
    out.push_back(seqinstruct::join_prompt(item.instruction, item.input));
  }
  return out;
}

std::vector<Item> sample_items() {
  std::vector<Item> items = make_it_items(1, 3000);
  for (Item& i : make_train_chain_items(2, 3000)) items.push_back(std::move(i));
  for (Item& i : make_eval_items(3, 300)) items.push_back(std::move(i));
  return items;
}

}  // namespace

TEST(SynthWorldTokenizer, LoadsWithTheSpecialTokensOfTheTuluFormat) {
  const auto& tok = world_tokenizer();
  EXPECT_EQ(tok.bos_id(), kWorldBosId);
  EXPECT_EQ(tok.eos_id(), kWorldEosId);
  EXPECT_EQ(tok.token_id("<pad>"), kWorldPadId);
  for (const char* marker : {"<|system|>", "<|user|>", "<|assistant|>"}) {
    ASSERT_TRUE(tok.token_id(marker)) << marker;
    EXPECT_TRUE(tok.is_special(*tok.token_id(marker)));
  }
  // 6 special + 256 byte tokens + each world token bare and with a space (the line break bare only,
  // single letters and marks already among the byte tokens).
  EXPECT_GT(tok.vocab_size(), 262 + 2 * world_vocabulary().size() - 20);
  EXPECT_LE(tok.vocab_size(), 262 + 2 * world_vocabulary().size());
  std::printf("world tokenizer: %zu ids (%zu world tokens)\n", tok.vocab_size(),
              world_vocabulary().size());
  // BOS is added by the post-processor, EOS is not (the template writes it).
  auto ids = tok.encode("Sort the words.", {.add_special = true, .parse_special = true});
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), kWorldBosId);
  EXPECT_NE(ids.back(), kWorldEosId);
}

TEST(SynthWorldTokenizer, EveryWorldTokenIsOneToken) {
  const auto& tok = world_tokenizer();
  for (const std::string& word : world_vocabulary()) {
    ASSERT_EQ(tok.encode(word, kPlain).size(), 1u) << word;
    if (word == "\n") continue;
    const auto spaced = tok.encode(" " + word, kPlain);
    ASSERT_EQ(spaced.size(), 1u) << word;
    EXPECT_EQ(tok.decode(spaced), " " + word);
  }
}

TEST(SynthWorldTokenizer, WorldTextsRoundTripOneIdPerWorldToken) {
  seqit::testing::allow_seconds(120);
  const auto& tok = world_tokenizer();
  const std::vector<Item> items = sample_items();
  size_t checked = 0;
  for (const std::string& text : texts(items)) {
    const auto ids = tok.encode(text, kPlain);
    ASSERT_EQ(tok.decode(ids), text);
    // World texts are in canonical spelling, so each world token is exactly one id.
    ASSERT_EQ(ids.size(), split_world_tokens(text).size()) << text;
    ++checked;
  }
  EXPECT_EQ(checked, 4 * items.size());

  // A whole training example in the tulu format: markers are single special tokens.
  chat::SpecialTokens special;
  special.named = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};
  const chat::ChatTemplate tulu = chat::ChatTemplate::builtin("tulu", special);
  const Item& item = items[3100];  // a chain
  const std::string text =
      tulu.render({{"system", ""},
                   {"user", seqinstruct::join_prompt(item.instruction, item.input)},
                   {"assistant", item.response}})
          .text;
  const auto ids = tok.encode(text, kPlain);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_EQ(ids[0], *tok.token_id("<|system|>"));
  EXPECT_EQ(ids.back(), kWorldEosId);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tok.token_id("<|user|>")), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), *tok.token_id("<|assistant|>")), 1);
  // tulu adds 3 markers, 3 line breaks between blocks, one after each marker (2 + the empty
  // system's own) and EOS: 9 tokens around the world tokens.
  EXPECT_EQ(ids.size(),
            split_world_tokens(seqinstruct::join_prompt(item.instruction, item.input)).size() +
                split_world_tokens(item.response).size() + 9)
      << text;
}

TEST(SynthWorldTokenizer, OtherTextStillRoundTripsThroughByteTokens) {
  const auto& tok = world_tokenizer();
  for (const std::string text : {"Hello, World!", "  two  spaces\tand a tab\r\n",
                                 "h\xc3\xa9llo w\xc3\xb6rld \xf0\x9f\x99\x82", "SORT the Words",
                                 "upper-case-ish; ok?", "<|user|>x</s>"}) {
    const auto ids = tok.encode(text, kPlain);
    EXPECT_EQ(tok.decode(ids), text);
  }
  // Unknown words fall back to byte tokens (more than one id), never to an unknown token.
  EXPECT_GT(tok.encode("zebra", kPlain).size(), 1u);
}

// The choice of from-scratch training: how many tokens the world's texts take under stories260K's
// tok512 (512 SentencePiece pieces learned on TinyStories) and under the world tokenizer.
TEST(SynthWorldTokenizer, TakesFarFewerTokensThanTok512) {
  seqit::testing::allow_seconds(120);
  const auto tok512 =
      tokenizer::load_tokenizer(seqit::testing::shared_data("models/stories260K/tok512.bin"));
  const auto& world = world_tokenizer();
  struct Count {
    double world = 0, tok512 = 0;
  };
  auto measure = [&](const std::vector<Item>& items) {
    Count c;
    for (const Item& item : items) {
      for (const std::string& text :
           {seqinstruct::join_prompt(item.instruction, item.input), item.response}) {
        c.world += static_cast<double>(world.encode(text, kPlain).size());
        c.tok512 += static_cast<double>(tok512->encode(text, kPlain).size());
      }
      EXPECT_EQ(tok512->decode(tok512->encode(item.response, kPlain)), item.response);
    }
    c.world /= static_cast<double>(items.size());
    c.tok512 /= static_cast<double>(items.size());
    return c;
  };
  const Count it = measure(make_it_items(1, 2000));
  const Count chains = measure(make_train_chain_items(2, 2000));
  const Count eval5 = measure(make_eval_items(3, 400));
  std::printf(
      "tokens per item (prompt + response), world vs tok512:\n"
      "  IT single tasks      %6.1f  %6.1f\n"
      "  train chains (1-3)   %6.1f  %6.1f\n"
      "  eval chains (1-5)    %6.1f  %6.1f\n",
      it.world, it.tok512, chains.world, chains.tok512, eval5.world, eval5.tok512);
  EXPECT_LT(it.world * 2, it.tok512);
  EXPECT_LT(chains.world * 2, chains.tok512);
}

// Parity with Hugging Face transformers on real vocabularies: the conformance corpus (ids and
// decoded strings produced by transformers 4.57.1) and the long encoded passages from
// swift-transformers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/json_io.h"

namespace seqit::tokenizer {
namespace {

using nlohmann::json;
using seqit::testing::shared_data;

struct Case {
  std::string id, text;
  std::vector<TokenId> ids;
  std::string decoded_with_special, decoded_skip_special;
};

// inputs.json texts with one model's expectations.
std::vector<Case> corpus_cases(const std::string& expectations) {
  json inputs = read_json_file(shared_data("tokenizers/conformance/inputs.json"));
  json expected = read_json_file(shared_data("tokenizers/conformance/" + expectations));
  std::vector<Case> cases;
  for (const auto& in : inputs["inputs"]) {
    const json& e = expected["entries"].at(in["id"].get<std::string>());
    cases.push_back({in["id"], in["text"], e["input_ids"].get<std::vector<TokenId>>(),
                     e["decoded_with_special"], e["decoded_skip_special"]});
  }
  return cases;
}

// The multilingual set ships no inputs; GPT-2's byte-level decode is lossless, so its decoded text
// is the input (the test checks that too).
std::vector<Case> multilingual_cases(const std::string& expectations) {
  json texts = read_json_file(shared_data("tokenizers/conformance/gpt2_multilingual.json"));
  json expected = read_json_file(shared_data("tokenizers/conformance/" + expectations));
  std::vector<Case> cases;
  for (size_t k = 0; k < texts["entries"].size(); ++k) {
    const json& e = expected["entries"][k];
    EXPECT_EQ(e["id"], texts["entries"][k]["id"]);
    cases.push_back({e["id"], texts["entries"][k]["decoded_skip_special"],
                     e["input_ids"].get<std::vector<TokenId>>(), e["decoded_with_special"],
                     e["decoded_skip_special"]});
  }
  return cases;
}

void check_cases(const Tokenizer& tok, const std::vector<Case>& cases, size_t expected_count) {
  ASSERT_EQ(cases.size(), expected_count);
  size_t id_matches = 0, decode_matches = 0;
  for (const Case& c : cases) {
    auto ids = tok.encode(c.text);
    if (ids == c.ids) ++id_matches;
    EXPECT_EQ(ids, c.ids) << c.id << ": " << c.text;
    std::string with = tok.decode(c.ids, false), skip = tok.decode(c.ids, true);
    if (with == c.decoded_with_special && skip == c.decoded_skip_special) ++decode_matches;
    EXPECT_EQ(with, c.decoded_with_special) << c.id;
    EXPECT_EQ(skip, c.decoded_skip_special) << c.id;
  }
  EXPECT_EQ(id_matches, cases.size());
  EXPECT_EQ(decode_matches, cases.size());
}

TEST(Conformance, Gpt2) {
  auto tok = load_tokenizer(shared_data("tokenizers/gpt2/tokenizer.json"));
  check_cases(*tok, corpus_cases("openai-community__gpt2.json"), 30);
  check_cases(*tok, multilingual_cases("gpt2_multilingual.json"), 83);
}

TEST(Conformance, TinyLlama) {
  auto tok = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.json"));
  check_cases(*tok, corpus_cases("TinyLlama__TinyLlama-1.1B-Chat-v1.0.json"), 30);
  check_cases(*tok, multilingual_cases("tinyllama_multilingual.json"), 83);
}

TEST(Conformance, Qwen25) {
  auto tok = load_tokenizer(shared_data("tokenizers/qwen/qwen3_tokenizer.json"));
  check_cases(*tok, corpus_cases("Qwen__Qwen2.5-0.5B.json"), 30);
  check_cases(*tok, multilingual_cases("qwen2_5_multilingual.json"), 83);
}

TEST(Conformance, SwiftGpt2Passage) {
  auto tok = load_tokenizer(shared_data("tokenizers/gpt2/tokenizer.json"));
  json d = read_json_file(shared_data("tokenizers/gpt2/swift_gpt2_encoded_tokens.json"));
  auto expected = d["token_ids"].get<std::vector<TokenId>>();
  EXPECT_EQ(tok->encode(d["text"].get<std::string>()), expected);
  EXPECT_EQ(tok->decode(expected), d["decoded_text"].get<std::string>());
  std::vector<std::string> tokens;
  for (TokenId id : expected) tokens.push_back(tok->token_text(id));
  EXPECT_EQ(tokens, d["bpe_tokens"].get<std::vector<std::string>>());
}

TEST(Conformance, SwiftLlama2Passage) {
  auto tok = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.json"));
  json d = read_json_file(shared_data("tokenizers/llama2/swift_llama_encoded.json"));
  auto expected = d["token_ids"].get<std::vector<TokenId>>();
  EXPECT_EQ(tok->encode(d["text"].get<std::string>()), expected);
  EXPECT_EQ(tok->decode(expected), d["decoded_text"].get<std::string>());
}

// The swift-transformers ids come from the Llama-3.2 tokenizer, whose post-processor adds
// <|begin_of_text|>; the Llama-3 tokenizer.json here has only a ByteLevel post-processor (so HF
// adds nothing), and shares the 128000 base ids. The text ids must match after the BOS.
TEST(Conformance, SwiftLlama3Passage) {
  auto tok = load_tokenizer(shared_data("tokenizers/llama3/tokenizer.json"));
  json d = read_json_file(shared_data("tokenizers/llama3/swift_llama_3.2_encoded.json"));
  auto expected = d["token_ids"].get<std::vector<TokenId>>();
  ASSERT_EQ(expected.front(), 128000);
  EXPECT_EQ(tok->bos_id(), 128000);
  std::vector<TokenId> body(expected.begin() + 1, expected.end());
  EXPECT_EQ(tok->encode(d["text"].get<std::string>(), {.add_special = false}), body);
  EXPECT_EQ(tok->decode(expected), d["decoded_text"].get<std::string>());
}

}  // namespace
}  // namespace seqit::tokenizer

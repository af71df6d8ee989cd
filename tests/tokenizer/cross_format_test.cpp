// The same vocabulary in different file formats must give the same ids: GPT-2 tokenizer.json vs
// its GGUF vocabulary; Llama-2 tokenizer.json vs tokenizer.model (libsentencepiece) vs GGUF
// llama-spm vs llama2.c tokenizer.bin. Texts: the conformance corpus, the swift passage, and the
// first 400 lines of War and Peace cut into paragraphs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/json_io.h"

namespace seqit::tokenizer {
namespace {

using nlohmann::json;
using seqit::testing::shared_data;

const std::vector<std::string>& texts() {
  static const std::vector<std::string> all = [] {
    std::vector<std::string> t;
    json inputs = read_json_file(shared_data("tokenizers/conformance/inputs.json"));
    for (const auto& in : inputs["inputs"]) t.push_back(in["text"]);
    json multi = read_json_file(shared_data("tokenizers/conformance/gpt2_multilingual.json"));
    for (const auto& e : multi["entries"]) t.push_back(e["decoded_skip_special"]);
    t.push_back(read_json_file(shared_data("tokenizers/llama2/swift_llama_encoded.json"))["text"]);
    std::istringstream book(seqit::testing::slurp(shared_data("text/war-and-peace.txt")));
    std::string line, paragraph;
    for (int n = 0; n < 400 && std::getline(book, line); ++n) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) {
        if (!paragraph.empty()) t.push_back(paragraph);
        paragraph.clear();
      } else {
        paragraph += (paragraph.empty() ? "" : "\n") + line;
      }
    }
    for (std::string extra : {"", " ", "  leading", "trailing  ", "tabs\tand\nnewlines\r\n",
                              "ünïcödé ☃ 🤖", "12345678901234567890", "a  b   c    d"}) {
      t.push_back(extra);
    }
    return t;
  }();
  return all;
}

void expect_same_ids(const Tokenizer& a, const Tokenizer& b, const char* what) {
  size_t same = 0;
  for (const auto& text : texts()) {
    auto x = a.encode(text), y = b.encode(text);
    if (x == y) ++same;
    EXPECT_EQ(x, y) << what << ": " << text;
    EXPECT_EQ(a.decode(x, true), b.decode(y, true)) << what << ": " << text;
  }
  EXPECT_EQ(same, texts().size()) << what;
  EXPECT_GT(texts().size(), 150u);
}

TEST(CrossFormat, Gpt2JsonAndGguf) {
  auto json_tok = load_tokenizer(shared_data("tokenizers/gpt2/tokenizer.json"));
  auto gguf_tok = load_tokenizer(shared_data("tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf"));
  EXPECT_NE(gguf_tok->describe().find("GGUF"), std::string::npos);
  EXPECT_EQ(json_tok->vocab_size(), gguf_tok->vocab_size());
  EXPECT_EQ(json_tok->eos_id(), gguf_tok->eos_id());
  expect_same_ids(*json_tok, *gguf_tok, "gpt2 json vs gguf");
  std::string special = "a<|endoftext|>b";
  EXPECT_EQ(json_tok->encode(special), gguf_tok->encode(special));
}

TEST(CrossFormat, Llama2JsonModelGgufAndLlama2c) {
  auto json_tok = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.json"));
  auto model_tok = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.model"));
  auto gguf_tok =
      load_tokenizer(shared_data("tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf"));
  auto bin_tok = load_tokenizer(shared_data("tokenizers/llama2/llama2c_tokenizer.bin"));
  for (const auto* t : {model_tok.get(), gguf_tok.get(), bin_tok.get()}) {
    EXPECT_EQ(t->vocab_size(), 32000u);
    EXPECT_EQ(t->bos_id(), 1);
    EXPECT_EQ(t->eos_id(), 2);
  }
  expect_same_ids(*json_tok, *model_tok, "llama2 json vs tokenizer.model");
  expect_same_ids(*json_tok, *gguf_tok, "llama2 json vs gguf");
  expect_same_ids(*json_tok, *bin_tok, "llama2 json vs tokenizer.bin");
}

TEST(CrossFormat, GgufModelFixtureCarriesItsVocabulary) {
  auto gguf_tok = load_tokenizer(shared_data("models/gguf-fixtures/llama-2-tiny-random.gguf"));
  auto json_tok = load_tokenizer(shared_data("tokenizers/llama2/tokenizer.json"));
  for (const auto& text : texts())
    EXPECT_EQ(gguf_tok->encode(text), json_tok->encode(text)) << text;
}

}  // namespace
}  // namespace seqit::tokenizer

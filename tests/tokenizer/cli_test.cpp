// `seqit tokenize` end to end: ids for stdin and files, tokens, counts, special tokens, errors.
#include <gtest/gtest.h>

#include "testing.h"
#include "tokenizer/tokenizer.h"

namespace seqit::tokenizer {
namespace {

using seqit::testing::run_command;
using seqit::testing::shared_data;
using seqit::testing::shell_quote;

std::string seqit_tokenize(const std::string& args, int* rc = nullptr) {
  std::string out;
  int code =
      run_command(shell_quote(seqit::testing::seqit_binary().string()) + " tokenize " + args, &out);
  if (rc) *rc = code;
  return out;
}

TEST(TokenizeCli, IdsTokensAndCounts) {
  std::string gpt2 = shell_quote(shared_data("tokenizers/gpt2/tokenizer.json").string());
  // The ids of GPT-2's conformance entry "ascii_simple".
  std::string out;
  run_command("printf '%s' 'The quick brown fox jumps over the lazy dog.' | " +
                  shell_quote(seqit::testing::seqit_binary().string()) + " tokenize --tokenizer " +
                  gpt2,
              &out);
  EXPECT_EQ(out, "464 2068 7586 21831 18045 625 262 16931 3290 13\n");
  seqit::testing::TempDir dir;
  seqit::testing::spit(dir / "in.txt", "Hello world<|endoftext|>");
  std::string file = shell_quote((dir / "in.txt").string());
  EXPECT_EQ(seqit_tokenize("--tokenizer " + gpt2 + " " + file), "15496 995 50256\n");
  EXPECT_EQ(seqit_tokenize("--tokenizer " + gpt2 + " --no-parse-special --count " + file), "9\n");
  std::string llama = shell_quote(shared_data("tokenizers/llama2").string());
  EXPECT_EQ(
      seqit_tokenize("--tokenizer " + llama + " --tokens --add-special " + file),
      "\"<s>\"\n\"▁Hello\"\n\"▁world\"\n\"<\"\n\"|\"\n\"end\"\n\"of\"\n\"text\"\n\"|\"\n\">\"\n");
  std::string stories = shell_quote(shared_data("models/stories260K/tok512.bin").string());
  EXPECT_NE(seqit_tokenize("--tokenizer " + stories + " --describe").find("512"),
            std::string::npos);
}

TEST(TokenizeCli, ErrorsNameTheFile) {
  int rc = 0;
  std::string out = seqit_tokenize("--tokenizer /no/such/tokenizer.json /dev/null", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("/no/such/tokenizer.json"), std::string::npos) << out;
  seqit::testing::TempDir dir;
  seqit::testing::spit(dir / "tokenizer.json",
                       "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
  out = seqit_tokenize(
      "--tokenizer " + shell_quote((dir / "tokenizer.json").string()) + " /dev/null", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("Unigram"), std::string::npos) << out;
}

}  // namespace
}  // namespace seqit::tokenizer

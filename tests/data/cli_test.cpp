// `seqit data ...` end to end through the built binary.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "data_testing.h"
#include "testing.h"

using seqit::data::test::contains;
using seqit::testing::run_command;
using seqit::testing::seqit_binary;
using seqit::testing::shared_data;
using seqit::testing::shell_quote;
using seqit::testing::slurp;
using seqit::testing::spit;
using seqit::testing::TempDir;

namespace {
int run_seqit(const std::string& args, std::string* output) {
  return run_command(shell_quote(seqit_binary().string()) + " " + args, output);
}
std::string q(const std::filesystem::path& p) {
  return shell_quote(p.string());
}

size_t occurrences(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (size_t at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
  return n;
}
}  // namespace

TEST(Cli, ConvertsAlpacaToShareGptAndReportsIt) {
  TempDir dir;
  std::string out;
  int rc = run_seqit("data convert --in " + q(shared_data("train/alpaca/alpaca_5000.json")) +
                         " --to sharegpt --out " + q(dir / "s.jsonl"),
                     &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(contains(out, "wrote 5000 records as sharegpt-jsonl")) << out;
  EXPECT_TRUE(contains(out, "5000 read as alpaca-json")) << out;
  std::string content = slurp(dir / "s.jsonl");
  EXPECT_EQ(occurrences(content, "\n"), 5000u);
  auto last = nlohmann::json::parse(content.substr(content.rfind('\n', content.size() - 2) + 1));
  EXPECT_EQ(last["conversations"][0]["from"], "human");
  EXPECT_EQ(last["conversations"][0]["value"], "What year did the Great Recession start in?");
  EXPECT_EQ(last["conversations"][1]["value"], "The Great Recession started in 2007.");

  // And back, with Python's layout: the original bytes.
  rc = run_seqit("-q data convert --in " + q(dir / "s.jsonl") +
                     " --to alpaca --ascii --no-final-newline --out " + q(dir / "a.json"),
                 &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(out.empty()) << out;
  EXPECT_TRUE(slurp(dir / "a.json") == slurp(shared_data("train/alpaca/alpaca_5000.json")));
}

TEST(Cli, StatsAsJsonAndAsTable) {
  std::string out;
  int rc = run_seqit("data stats --json " + q(shared_data("train/flan_cot/gsm8k_train.tsv")), &out);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["format"], "flancot-tsv");
  EXPECT_EQ(j["records"], 7473);
  EXPECT_EQ(j["bad_records"]["count"], 0);
  rc = run_seqit("data stats --from seqeval " + q(shared_data("eval/seqeval/seqEval.json")), &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(contains(out, "records            805 (805 instructions")) << out;
  EXPECT_TRUE(contains(out, "prompt words")) << out;
}

TEST(Cli, ErrorsArePrintedOnceWithTheirLocation) {
  TempDir dir;
  spit(dir / "u.jsonl", "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
  std::string out;
  int rc = run_seqit(
      "data convert --in " + q(dir / "u.jsonl") + " --to alpaca --out " + q(dir / "o.json"), &out);
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(occurrences(out, "error:"), 1u) << out;
  EXPECT_TRUE(contains(out, "u.jsonl:1: record 0: unknown format")) << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "o.json"));
  rc = run_seqit(
      "data convert --in " + q(dir / "u.jsonl") + " --to nonsense --out " + q(dir / "o.json"),
      &out);
  EXPECT_EQ(rc, 1);
  EXPECT_TRUE(contains(out, "unknown format 'nonsense'")) << out;
}

TEST(Cli, SkipReportsTheCountAndFirstLocations) {
  TempDir dir;
  std::string out;
  int rc = run_seqit("data convert --on-error skip --in " + q(shared_data("eval/sifo/math.jsonl")) +
                         " --to alpaca --out " + q(dir / "o.jsonl"),
                     &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(contains(out, "wrote 0 records as alpaca-jsonl")) << out;
  EXPECT_TRUE(contains(out, "200 not representable as alpaca-jsonl")) << out;
  EXPECT_TRUE(contains(out, "200 bad records skipped")) << out;
  EXPECT_TRUE(
      contains(out, "math.jsonl:1: record 0, field 'messages': the conversation has 8 messages"))
      << out;
  EXPECT_TRUE(contains(out, "... and 195 more")) << out;
  EXPECT_EQ(slurp(dir / "o.jsonl"), "");
  // stop (the default) fails on the first and writes nothing.
  rc = run_seqit("data convert --in " + q(shared_data("eval/sifo/math.jsonl")) +
                     " --to alpaca --out " + q(dir / "p.jsonl"),
                 &out);
  EXPECT_EQ(rc, 1);
  EXPECT_FALSE(std::filesystem::exists(dir / "p.jsonl"));
}

TEST(Cli, HelpEverywhere) {
  for (const char* args : {"data --help", "data convert --help", "data stats --help"}) {
    std::string out;
    EXPECT_EQ(run_seqit(args, &out), 0) << args;
    EXPECT_TRUE(contains(out, "sharegpt")) << args << "\n" << out;
    EXPECT_TRUE(contains(out, "flancot")) << args;
  }
  std::string out;
  run_seqit("data convert --help", &out);
  EXPECT_TRUE(contains(out, "--on-error")) << out;
  EXPECT_TRUE(contains(out, "--from")) << out;
  run_seqit("--help", &out);
  EXPECT_TRUE(contains(out, "data")) << out;
}

// Token counts against Hugging Face transformers' own GPT-2 ids for the 30 multilingual inputs of
// tokenizers/conformance (GPT-2 adds no special tokens, so its input_ids are the plain encoding).
TEST(Cli, StatsCountsTokensWithTheGivenTokenizer) {
  TempDir dir;
  auto inputs =
      nlohmann::json::parse(slurp(shared_data("tokenizers/conformance/inputs.json")))["inputs"];
  auto expected = nlohmann::json::parse(
      slurp(shared_data("tokenizers/conformance/openai-community__gpt2.json")))["entries"];
  std::string jsonl;
  std::vector<int64_t> lengths;
  for (const auto& in : inputs) {
    // Prompt and response are the same text, so both distributions must match HF's lengths.
    jsonl += nlohmann::json{{"instruction", in["text"]}, {"output", in["text"]}}.dump() + "\n";
    lengths.push_back(
        static_cast<int64_t>(expected[in["id"].get<std::string>()]["input_ids"].size()));
  }
  ASSERT_EQ(lengths.size(), 30u);
  spit(dir / "multilingual.jsonl", jsonl);
  std::string out;
  int rc = run_seqit("data stats --json --tokenizer " +
                         q(shared_data("tokenizers/gpt2/tokenizer.json")) + " " +
                         q(dir / "multilingual.jsonl"),
                     &out);
  ASSERT_EQ(rc, 0) << out;
  auto stats = nlohmann::json::parse(out);
  int64_t sum = 0;
  for (int64_t n : lengths) sum += n;
  for (const char* side : {"prompt_tokens", "response_tokens"}) {
    const auto& s = stats["lengths"][side];
    EXPECT_EQ(s["min"].get<double>(),
              static_cast<double>(*std::min_element(lengths.begin(), lengths.end())));
    EXPECT_EQ(s["max"].get<double>(),
              static_cast<double>(*std::max_element(lengths.begin(), lengths.end())));
    EXPECT_NEAR(s["mean"].get<double>() * 30, static_cast<double>(sum), 1e-6) << side;
  }
  EXPECT_TRUE(contains(stats["tokenizer"].get<std::string>(), "tokenizer.json")) << out;
  rc = run_seqit("data stats --tokenizer " + q(shared_data("tokenizers/gpt2/tokenizer.json")) +
                     " " + q(dir / "multilingual.jsonl"),
                 &out);
  EXPECT_TRUE(contains(out, "prompt tokens")) << out;
  EXPECT_TRUE(
      contains(out, fmt::format("{:>8}", *std::max_element(lengths.begin(), lengths.end()))))
      << out;
}

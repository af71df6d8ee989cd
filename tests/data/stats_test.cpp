// Dataset statistics against values computed independently with python3 from the same files:
//   prompt = instruction + (" " + input if input else ""), response = output;
//   chars = len(s), words = len(s.split());
//   percentiles by linear interpolation, checked equal to statistics.quantiles(v, n=100,
//   method="inclusive")[89] / [98] and statistics.median(v).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/stats.h"
#include "data_testing.h"
#include "testing.h"

using namespace seqit::data;
using seqit::testing::shared_data;
using seqit::testing::spit;
using seqit::testing::TempDir;

namespace {
void expect_summary(const LengthSummary& s, double min, double mean, double median, double p90,
                    double p99, double max, const char* what) {
  EXPECT_EQ(s.min, min) << what;
  EXPECT_NEAR(s.mean, mean, 1e-9 * mean) << what;
  EXPECT_NEAR(s.median, median, 1e-9) << what;
  EXPECT_NEAR(s.p90, p90, 1e-9) << what;
  EXPECT_NEAR(s.p99, p99, 1e-9) << what;
  EXPECT_EQ(s.max, max) << what;
}
}  // namespace

TEST(Stats, Alpaca5000MatchesPython) {
  DatasetStats s = compute_stats(shared_data("train/alpaca/alpaca_5000.json"));
  EXPECT_EQ(s.records, 5000);
  EXPECT_EQ(s.instructions, 5000);
  EXPECT_EQ(s.empty_input, 3057);
  EXPECT_EQ(s.empty_response, 2);
  EXPECT_EQ(s.empty_prompt, 0);
  EXPECT_EQ(s.exact_duplicates, 0);
  expect_summary(s.prompt_chars, 12, 82.4032, 68.0, 134.0, 342.0100000000002, 1312, "prompt chars");
  expect_summary(s.prompt_words, 4, 13.8288, 11.0, 22.100000000000364, 55.0, 198, "prompt words");
  expect_summary(s.response_chars, 0, 275.893, 196.0, 617.1000000000004, 1222.0600000000013, 2609,
                 "response chars");
  expect_summary(s.response_words, 0, 45.1714, 32.0, 101.0, 202.0, 471, "response words");
  EXPECT_FALSE(s.prompt_tokens.has_value());
}

// Chain-of-Instructions text has no-break spaces (U+00A0), which Python's split() treats as
// whitespace: counting ASCII whitespace only would give 325399 prompt words instead of 325459.
TEST(Stats, WordsSplitOnUnicodeWhitespaceLikePython) {
  DatasetStats s = compute_stats(shared_data("eval/chain-of-instructions/train/coi_2.json"));
  EXPECT_EQ(s.records, 2933);
  EXPECT_EQ(s.exact_duplicates, 0);
  EXPECT_EQ(s.duplicate_prompts, 1);
  EXPECT_EQ(s.empty_input, 0);
  expect_summary(s.prompt_words, 20, 325459.0 / 2933, 61.0, 287.2000000000007, 701.0, 1024,
                 "prompt words");
  expect_summary(s.response_words, 11, 56.35049437436072, 36.0, 96.0, 210.0, 11795,
                 "response words");
  expect_summary(s.prompt_chars, 111, 676.9372655983634, 374.0, 1716.2000000000007, 4319.0, 6694,
                 "prompt chars");
  expect_summary(s.response_chars, 49, 332.2311626321173, 197.0, 544.4000000000005,
                 1402.079999999999, 66834, "response chars");
  EXPECT_EQ(count_words("a\u00a0b c\u3000d\u200be"), 4);  // U+200B (zero width) is not whitespace
  EXPECT_EQ(count_chars("caf\u00e9 \U0001F389"), 6);
}

TEST(Stats, SeqEvalHasOneEmptyPrompt) {
  DatasetStats s = compute_stats(shared_data("eval/seqeval/seqEval.json"));
  EXPECT_EQ(s.records, 805);
  EXPECT_EQ(s.empty_prompt, 1);  // record 547
  EXPECT_EQ(s.empty_response, 805);
  expect_summary(s.prompt_words, 0, 76.40869565217392, 69.0, 122.60000000000002, 201.8800000000001,
                 363, "prompt words");
}

TEST(Stats, DuplicatesConversationsAndTheTokenHook) {
  TempDir dir;
  spit(
      dir / "d.jsonl",
      R"({"id": "1", "messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello you"}], "meta": {}})"
      "\n"
      R"({"id": "2", "messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello you"}], "meta": {"x": 1}})"
      "\n"
      R"({"id": "3", "messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Other"}], "meta": {}})"
      "\n"
      R"({"id": "4", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "a b"}, {"role": "assistant", "content": "c"}, {"role": "user", "content": "d"}], "meta": {}})"
      "\n"
      R"({"id": "5", "system": "", "instruction": "Hi", "input": "there", "output": "Hello you", "meta": {}})"
      "\n");
  StatsOptions options;
  // A stand-in tokenizer (one token per byte) proves the hook reaches every prompt and response.
  options.count_tokens = [](std::string_view text) { return static_cast<int64_t>(text.size()); };
  options.tokenizer_name = "bytes";
  DatasetStats s = compute_stats(dir / "d.jsonl", options);
  EXPECT_EQ(s.records, 5);
  EXPECT_EQ(s.conversations, 4);
  EXPECT_EQ(s.instructions, 1);
  EXPECT_EQ(s.messages, 2 + 2 + 2 + 4 + 2);
  EXPECT_EQ(s.multi_turn, 1);
  EXPECT_EQ(s.exact_duplicates, 1);   // record 2 repeats record 1 (ids and meta do not count)
  EXPECT_EQ(s.duplicate_prompts, 2);  // records 2 and 3 repeat record 1's prompt
  EXPECT_EQ(s.empty_input, 0);
  EXPECT_EQ(s.empty_response, 0);
  // Prompt chars: 8, 8, 8, "a b" + "d" = 4, "Hi there" = 8.
  expect_summary(s.prompt_chars, 4, 36.0 / 5, 8, 8, 8, 8, "prompt chars");
  ASSERT_TRUE(s.prompt_tokens.has_value());
  expect_summary(*s.prompt_tokens, 4, 36.0 / 5, 8, 8, 8, 8, "prompt tokens");
  expect_summary(*s.response_tokens, 1, (9 + 9 + 5 + 1 + 9) / 5.0, 9, 9, 9, 9, "response tokens");

  auto json = nlohmann::json::parse(stats_to_json(s));
  EXPECT_EQ(json["format"], "seqit-jsonl");
  EXPECT_EQ(json["exact_duplicates"], 1);
  EXPECT_EQ(json["lengths"]["prompt_tokens"]["median"], 8.0);
  EXPECT_EQ(json["tokenizer"], "bytes");
  std::string text = stats_to_text(s);
  EXPECT_TRUE(test::contains(text, "exact duplicates   1 (20.0%)")) << text;
  EXPECT_TRUE(test::contains(text, "prompt tokens")) << text;
}

TEST(Stats, PercentilesInterpolateBetweenRanks) {
  LengthSummary s = summarize_lengths({10, 1, 4, 7});
  EXPECT_EQ(s.count, 4);
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.max, 10);
  EXPECT_DOUBLE_EQ(s.mean, 5.5);
  EXPECT_DOUBLE_EQ(s.median, 5.5);  // between 4 and 7
  EXPECT_DOUBLE_EQ(s.p90, 9.1);     // numpy.percentile([1, 4, 7, 10], 90)
  EXPECT_DOUBLE_EQ(s.p99, 9.91);
  EXPECT_EQ(summarize_lengths({}).count, 0);
  EXPECT_EQ(summarize_lengths({3}).p99, 3);
}

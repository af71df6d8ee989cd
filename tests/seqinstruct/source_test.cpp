// Format handling over the real training data, and the overlap check against the real eval sets.
#include <gtest/gtest.h>

#include <fstream>

#include "seqinstruct/pipeline.h"
#include "seqinstruct/report.h"
#include "testing.h"
#include "util/error.h"

namespace seqit::seqinstruct {
namespace {
namespace fs = std::filesystem;

TEST(Source, EveryAlpacaAndFlanCotRecordLoads) {
  seqit::testing::allow_seconds(120);
  LoadReport report;
  const auto alpaca =
      load_source(seqit::testing::shared_data("train/alpaca/alpaca_5000.json"), {}, &report);
  EXPECT_EQ(alpaca.size(), 5000u);
  EXPECT_EQ(report.bad.count, 0);
  for (const auto& item : alpaca) ASSERT_FALSE(item.instruction.empty()) << item.id;
  int64_t flan = 0;
  for (const auto& e : fs::directory_iterator(seqit::testing::shared_data("train/flan_cot"))) {
    if (e.path().extension() != ".tsv") continue;
    LoadReport r;
    const auto items = load_source(e.path(), {}, &r);
    EXPECT_GT(items.size(), 0u) << e.path();
    EXPECT_EQ(r.bad.count, 0) << e.path();
    for (const auto& item : items)
      ASSERT_FALSE(item.instruction.empty()) << e.path() << " " << item.id;
    flan += static_cast<int64_t>(items.size());
  }
  EXPECT_GT(flan, 1000);
}

TEST(Source, BadRecordsNameFileAndLineOrAreSkippedAndCounted) {
  seqit::testing::TempDir tmp;
  const fs::path path = tmp / "bad.jsonl";
  seqit::testing::spit(path,
                       "{\"instruction\": \"a\", \"input\": \"\", \"output\": \"x\"}\n"
                       "{\"instruction\": \"b\", \"input\": \"\", \"output\": \"y\"}\n"
                       "{\"instruction\": 7, \"input\": \"\", \"output\": \"z\"}\n"
                       "{\"instruction\": \"d\", \"input\": \"\", \"output\": \"w\"}\n");
  try {
    load_source(path, {}, nullptr);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:3"), std::string::npos) << e.what();
  }
  data::ReadOptions skip;
  skip.on_error = data::OnError::skip;
  LoadReport report;
  const auto items = load_source(path, skip, &report);
  EXPECT_EQ(items.size(), 3u);
  EXPECT_EQ(report.bad.count, 1);
  // Ids must be unique: the trace is keyed by them.
  seqit::testing::spit(
      path,
      "{\"id\": \"q\", \"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n"
      "{\"id\": \"q\", \"messages\": [{\"role\": \"user\", \"content\": \"b\"}]}\n");
  EXPECT_THROW(load_source(path, {}, nullptr), Error);
}

TEST(Decontamination, FindsEvalPromptsInTrainingItems) {
  EvalOverlap overlap;
  const auto counts = overlap.load(seqit::testing::shared_data("eval"));
  EXPECT_GT(counts.at("gsm8k"), 1000);
  EXPECT_GT(counts.at("mmlu"), 1000);
  EXPECT_EQ(counts.at("seqeval"), 805);
  EXPECT_EQ(counts.at("alpaca_eval"), 805);
  EXPECT_GT(counts.at("mgsm"), 0);
  EXPECT_GT(counts.at("sifo"), 0);
  // The first GSM8K test question, inside a rewritten instruction.
  std::ifstream in(seqit::testing::shared_data("eval/gsm8k/test.jsonl"));
  std::string line;
  std::getline(in, line);
  const std::string question = line.substr(line.find(':') + 3, 120);
  // (MGSM's English set is 250 of these questions, and the first one is among them.)
  EXPECT_EQ(overlap.match("First restate the problem, then solve it: " + question),
            (std::vector<std::string>{"gsm8k", "mgsm"}));
  // A short AlpacaEval prompt, matched whole.
  EXPECT_EQ(overlap.match("Please answer: How did US states get their names? Then summarize."),
            std::vector<std::string>{"alpaca_eval"});
  EXPECT_TRUE(overlap.match("Arrange the following musical notes: G, B, E").empty());
}

}  // namespace
}  // namespace seqit::seqinstruct

// SeqEval through scripted backends: the response requests, and the judge's four judgements per
// item with a retry for an unparsable reply, order-combined pairwise verdicts, per-iteration
// grouping, and the raw and length-controlled win rates.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "eval/report.h"
#include "eval/runner.h"
#include "eval/seqeval.h"
#include "scripted_backend.h"
#include "testing.h"

namespace seqit::testing {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

eval::TaskOptions options(int64_t limit) {
  eval::TaskOptions o;
  o.data_dir = shared_data("eval").string();
  o.limit = limit;
  return o;
}

TEST(SeqEval, ResponsesAreGreedyChatsOfTheInstruction) {
  const auto task = eval::make_seqeval_responses(options(3));
  ASSERT_EQ(task->size(), 3u);
  const auto r = task->requests(0).at(0);
  EXPECT_EQ(r.kind, llm::RequestKind::chat);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_TRUE(r.messages[0].content.starts_with("Do some research about famous actors"));
  EXPECT_EQ(r.params.temperature, 0);
  EXPECT_EQ(r.params.max_tokens, 2048);
  const auto s = task->score(0, {ScriptedBackend::reply("\n\nHello.\n")});
  EXPECT_EQ(s.replies.at(0), "Hello.");
  EXPECT_EQ(s.group, "4");  // item 0 is an iteration-4 instruction
}

TEST(SeqEval, JudgeRetriesUnparsableRepliesAndCombinesBothOrders) {
  const int n = 4;
  std::vector<std::optional<std::string>> responses;
  for (int i = 0; i < n; ++i)
    responses.push_back(fmt::format("MODELRESP{} {}", i, std::string(i * 50, 'x')));
  responses[3].reset();  // no response: left out
  eval::SeqEvalJudgeOptions jo;
  jo.judge_backend = "scripted judge";
  const auto task = eval::make_seqeval_judge(options(n), responses, jo);
  ASSERT_EQ(task->size(), 3u);
  ASSERT_EQ(task->requests(0).size(), 4u);

  // item 0: follows, quality parses only on the retry, the model wins in both orders;
  // item 1: does not follow, quality 2, a judge that always prefers the first shown: a tie;
  // item 2: quality never parses; the reference wins in both orders.
  ScriptedBackend judge([](const llm::Request& r) -> llm::Result<llm::Response> {
    const std::string& p = r.messages.at(0).content;
    const size_t mark = p.find("MODELRESP");
    const int item = p[mark + 9] - '0';
    const bool retry = r.params.temperature > 0;
    std::string reply;
    if (p.find("PREFERRED") != std::string::npos) {
      // Is the model's response shown first? It is when no other response text comes before it.
      const bool model_first = p.find("[Response 2]") > mark;
      if (item == 0) reply = model_first ? "PREFERRED: 1" : "PREFERRED: 2";
      if (item == 1) reply = "PREFERRED: 1";
      if (item == 2) reply = model_first ? "PREFERRED: 2" : "PREFERRED: 1";
    } else if (p.find("FOLLOWED") != std::string::npos) {
      reply = item == 1 ? "FOLLOWED: NO" : "FOLLOWED: YES";
    } else {
      if (item == 0) reply = retry ? "SCORE: 5" : "I would give it a five.";
      if (item == 1) reply = "Fine.\nSCORE: 2";
      if (item == 2) reply = "SCORE: 9";
    }
    return ScriptedBackend::reply(reply);
  });
  TempDir tmp;
  eval::RunOptions ro;
  ro.config = "t";
  const auto result = eval::run_task(judge, *task, tmp / "results.jsonl", ro);
  ASSERT_TRUE(result.complete);
  // 12 first requests + the two retried quality replies (items 0 and 2).
  EXPECT_EQ(judge.requests().size(), 14u);
  const auto& items = result.items;
  EXPECT_EQ(items[0].scores.at("followed"), 1);
  EXPECT_EQ(items[0].scores.at("quality"), 5);
  EXPECT_EQ(items[0].scores.at("preference"), 1);
  EXPECT_EQ(items[0].fields.at("retried"), "1");
  EXPECT_EQ(items[1].scores.at("followed"), 0);
  EXPECT_EQ(items[1].scores.at("quality"), 2);
  EXPECT_EQ(items[1].scores.at("preference"), 0.5);
  EXPECT_EQ(items[2].scores.at("quality_unparsable"), 1);
  EXPECT_EQ(items[2].scores.count("quality"), 0u);
  EXPECT_EQ(items[2].scores.at("preference"), 0);
  EXPECT_FALSE(items[2].answer_found);

  const auto report =
      eval::build_report(*task, items, static_cast<int64_t>(task->size()), {{"k", "v"}});
  EXPECT_DOUBLE_EQ(report.metrics.at("followed").mean, 2.0 / 3);
  EXPECT_DOUBLE_EQ(report.metrics.at("quality").mean, 3.5);  // over the two that parsed
  EXPECT_EQ(report.metrics.at("quality").n, 2);
  EXPECT_DOUBLE_EQ(report.metrics.at("quality_unparsable").mean, 1.0 / 3);
  EXPECT_DOUBLE_EQ(report.aggregates.at("raw_win_rate"), 0.5);
  EXPECT_TRUE(report.aggregates.count("lc_win_rate"));
  EXPECT_EQ(report.aggregates.at("pairs_judged"), 3);
  EXPECT_EQ(report.group_label, "iteration");
  EXPECT_FALSE(report.group_means.empty());
  eval::write_report(tmp.path(), report);
  const std::string md = slurp(tmp / "report.md");
  EXPECT_NE(md.find("| lc_win_rate |"), std::string::npos) << md;
  EXPECT_NE(md.find("Per iteration"), std::string::npos) << md;
}

}  // namespace
}  // namespace seqit::testing

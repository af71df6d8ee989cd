#include "study/report.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing.h"

namespace seqit::study {
namespace {

synth::Grade grade(size_t steps, bool all_right) {
  synth::Grade g;
  for (size_t s = 0; s < steps; ++s) g.steps.push_back({"x", "x", true, all_right});
  g.following = true;
  g.final_correct = all_right;
  g.depth = all_right ? static_cast<int>(steps) : 0;
  return g;
}

// IT solves single tasks (and, for seed 2, half of the 2-step chains); SIT solves everything.
std::vector<ArmRun> runs(const std::vector<synth::Item>& items, double it_single) {
  std::vector<ArmRun> out;
  for (uint64_t seed : {1, 2}) {
    ArmRun it{"it", seed, {}, {}, {}, "it.jsonl", {}},
        sit{"sit", seed, {}, {}, {}, "sit.jsonl", {}};
    size_t k = 0, single = 0;
    for (const auto& item : items) {
      const size_t n = item.chain.steps.size();
      bool right = false;
      if (n == 1) right = static_cast<double>(single++) < it_single * 4;
      if (n == 2 && seed == 2) right = (k++ % 2) == 0;
      it.grades.push_back(grade(n, right));
      sit.grades.push_back(grade(n, true));
    }
    auto row = [](int64_t step, double loss) {
      train::MetricsRow m;
      m.step = step;
      m.loss = loss;
      return m;
    };
    it.metrics = {row(1, 2.0), row(2, 1.5)};
    sit.metrics = {row(1, 2.1), row(2, 1.4)};
    out.push_back(it);
    out.push_back(sit);
  }
  return out;
}

TEST(StudyReport, TableDifferencesGateAndVerdictComeFromTheGrades) {
  const auto items = synth::make_eval_items(5, 4, 3);  // 4 chains of each length 1..3
  const auto r = runs(items, 1.0);
  const StudyReport report = build_study_report(items, r);
  // IT: single tasks all right; 2-step: seed 1 none, seed 2 half -> mean 0.25, std 0.3536.
  EXPECT_DOUBLE_EQ(report.table.at("it").at(1).at("final_accuracy").mean, 1.0);
  EXPECT_DOUBLE_EQ(report.table.at("it").at(2).at("final_accuracy").mean, 0.25);
  EXPECT_NEAR(report.table.at("it").at(2).at("final_accuracy").std, std::sqrt(0.125), 1e-12);
  EXPECT_DOUBLE_EQ(report.table.at("sit").at(3).at("final_accuracy").mean, 1.0);
  EXPECT_DOUBLE_EQ(report.table.at("sit").at(3).at("depth").mean, 3.0);
  // SIT - IT on the 8 multi-step items: SIT 1.0; IT per item: 2-step 0.25 average, 3-step 0.
  ASSERT_FALSE(report.comparisons.empty());
  const Comparison& c = report.comparisons.front();
  EXPECT_EQ(c.treatment, "sit");
  EXPECT_EQ(c.metric, "final_accuracy");
  EXPECT_EQ(c.items, 8);
  EXPECT_DOUBLE_EQ(c.difference, 1.0 - (4 * 0.25 + 4 * 0.0) / 8);
  EXPECT_GT(c.lower, 0);
  EXPECT_TRUE(report.meaningful);
  EXPECT_NE(report.verdict.find("SIT beats IT"), std::string::npos) << report.verdict;

  seqit::testing::TempDir tmp;
  write_study_report(tmp.path(), report, r, "- quick");
  const auto json = nlohmann::json::parse(seqit::testing::slurp(tmp / "report.json"));
  EXPECT_EQ(json["verdict"], report.verdict);
  EXPECT_EQ(json["runs"].size(), 4u);
  EXPECT_NE(seqit::testing::slurp(tmp / "report.md").find("| it | final_accuracy | 100.0 ± 0.0 |"),
            std::string::npos);
  EXPECT_GT(std::filesystem::file_size(tmp / "scores.png"), 1000u);
  EXPECT_GT(std::filesystem::file_size(tmp / "loss.png"), 1000u);
}

TEST(StudyReport, MissedGateGivesNoVerdict) {
  const auto items = synth::make_eval_items(5, 4, 3);
  const StudyReport report = build_study_report(items, runs(items, 0.5));
  EXPECT_DOUBLE_EQ(report.gate_value, 0.5);
  EXPECT_FALSE(report.meaningful);
  EXPECT_EQ(report.verdict.rfind("No verdict", 0), 0u) << report.verdict;
}

TEST(StudyReport, GateItemsDecideTheGateWhenPresent) {
  const auto items = synth::make_eval_items(5, 4, 3);
  auto r = runs(items, 0.0);  // IT misses every held-out single-step chain ...
  for (auto& run : r)
    if (run.arm == "it")  // ... but does 9 of 10 gate tasks (training phrasings, new inputs)
      for (int i = 0; i < 10; ++i) {
        run.gate_grades.push_back(grade(1, i != 0));
        run.gate_tasks.push_back(i < 4 ? "reverse" : "count");  // the miss is a reverse item
      }
  const StudyReport report = build_study_report(items, r);
  EXPECT_TRUE(report.gate_on_gate_items);
  EXPECT_DOUBLE_EQ(report.gate_value, 0.9);
  EXPECT_TRUE(report.meaningful);
  // Per task, summed over the baseline's runs (two seeds): which tasks the models have learned.
  ASSERT_EQ(report.gate_by_task.size(), 2u);
  EXPECT_EQ(report.gate_by_task.at("reverse"), std::make_pair(int64_t{6}, int64_t{8}));
  EXPECT_EQ(report.gate_by_task.at("count"), std::make_pair(int64_t{12}, int64_t{12}));
}

}  // namespace
}  // namespace seqit::study

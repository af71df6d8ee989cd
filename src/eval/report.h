// The report of one evaluation run (report.json + report.md) and the comparison of several runs
// (compare.json + compare.md + compare.png).
//
// Aggregation is generic over ItemResult::scores: for every score, the mean over items with a 95%
// percentile bootstrap CI (eval/metrics.h, seeded, so a report is the same on every rerun); per
// group the mean and count, and the macro average (the mean of the group means); the rate of items
// with no extractable answer. report.json depends only on the stored results and the settings,
// never on timing, so a resumed run's report is identical to a straight run's.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "eval/task.h"

namespace seqit::eval {

struct MetricSummary {
  double mean = 0, lower = 0, upper = 0;  // 95% bootstrap CI
  int64_t n = 0;
};

struct EvalReport {
  std::string task;
  std::string group_label;
  std::vector<MetricSpec> main_metrics;
  // Settings in the header, in order: (key, value).
  std::vector<std::pair<std::string, std::string>> settings;
  int64_t items = 0;                             // scored
  int64_t items_total = 0;                       // in the task (with --limit)
  double no_answer_rate = 0;                     // items without an extractable answer
  std::map<std::string, MetricSummary> metrics;  // over all items
  std::map<std::string, std::map<std::string, double>> group_means;  // group -> metric -> mean
  std::map<std::string, int64_t> group_items;                        // group -> items
  std::map<std::string, double> macro;  // metric -> mean of the group means (when groups exist)
  std::map<std::string, double> aggregates;  // Task::aggregate (e.g. the LC win rate)
};

EvalReport build_report(const Task& task, const std::vector<ItemResult>& items, int64_t items_total,
                        std::vector<std::pair<std::string, std::string>> settings);

// The header settings every report carries, then the task's own: chat template on/off and the
// prompt layout, shots (the task's), BOS handling, max tokens, seed, limit, backend and model.
std::vector<std::pair<std::string, std::string>> report_settings(const Task& task,
                                                                 const TaskOptions& options,
                                                                 const std::string& backend);

// Writes DIR/report.json and DIR/report.md (atomically).
void write_report(const std::filesystem::path& dir, const EvalReport& report);

// ---- compare
// A run folder holds report.json and results.jsonl. For every metric of the first run, a row per
// run with its mean and CI; for each later run, the difference to the first and, over the items
// both runs scored, its paired bootstrap CI.
struct CompareOptions {
  std::vector<std::string> labels;  // one per run (default: the folder names)
};
// Writes OUT/compare.json, OUT/compare.md and OUT/compare.png; returns the Markdown.
std::string compare_runs(const std::vector<std::filesystem::path>& runs,
                         const std::filesystem::path& out, const CompareOptions& options = {});

}  // namespace seqit::eval

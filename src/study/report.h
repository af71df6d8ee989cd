// The study's answer: per arm and chain length, the world scores (final-answer accuracy, following
// rate, per-step accuracy, following depth) as mean and spread over seeds; the difference SIT − IT
// (and SIT − token-matched IT, ...) on multi-step chains with a paired bootstrap interval over the
// evaluation items; a sanity gate (the IT arm must solve single tasks, else no verdict); the
// verdict in one sentence; charts (scores against chain length per arm; training loss per arm).
//
// Every number is computed here from the per-item grades and the training metrics handed in — the
// report has no other input — so each table cell can be traced to results.jsonl files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "synth/grade.h"
#include "synth/split.h"
#include "train/metrics.h"

namespace seqit::study {

struct ArmRun {
  std::string arm;  // "it", "sit", "it_matched", "sit_corrupted"
  uint64_t seed = 0;
  std::vector<synth::Grade> grades;  // one per evaluation item, in item order
  // The sanity gate's items (single tasks, training phrasings, held-out inputs); empty: the gate
  // reads the single-step evaluation chains instead.
  std::vector<synth::Grade> gate_grades;
  std::vector<train::MetricsRow> metrics;  // the training run's rows
  std::string results_file;                // where the grades came from (for traceability)
  std::vector<std::string> gate_tasks;     // the task of each gate item (the per-task table)
};

struct Comparison {
  std::string treatment, baseline;              // "sit" vs "it"
  std::string metric;                           // "final_accuracy" or "following"
  double difference = 0, lower = 0, upper = 0;  // treatment − baseline, 95% CI
  int64_t items = 0;                            // multi-step evaluation items
};

struct StudyReport {
  // arm -> length -> metric -> {mean, std over seeds}
  struct Cell {
    double mean = 0, std = 0;
  };
  std::map<std::string, std::map<int, std::map<std::string, Cell>>> table;
  std::vector<Comparison> comparisons;
  bool gate_on_gate_items = false;  // measured on the gate items (else on 1-step eval chains)
  double gate_value = 0;            // the baseline's single-task final accuracy (mean over seeds)
  // The baseline's gate items per task over all seeds: task -> {right, asked}. Which tasks the
  // models have not learned when the gate is missed.
  std::map<std::string, std::pair<int64_t, int64_t>> gate_by_task;
  double gate = 0.8;
  bool meaningful = false;
  std::string verdict;
};

struct ReportOptions {
  double gate = 0.8;
  std::string baseline = "it";
  std::vector<std::string> arm_order = {"it", "sit", "it_matched", "sit_corrupted"};
  uint64_t bootstrap_seed = 0;
};

StudyReport build_study_report(const std::vector<synth::Item>& items,
                               const std::vector<ArmRun>& runs, const ReportOptions& options = {});

// report.md, report.json, scores.png, loss.png in `dir`. `settings` (Markdown) goes to the header.
void write_study_report(const std::filesystem::path& dir, const StudyReport& report,
                        const std::vector<ArmRun>& runs, const std::string& settings,
                        const ReportOptions& options = {});

}  // namespace seqit::study

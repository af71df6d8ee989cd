// The run's metrics log, OUTPUT/metrics.jsonl: one JSON object per line, one line per logged step
// (and per evaluation), in step order:
//
//   {"step": 120, "epoch": 0.31, "loss": 1.8321, "lr": 1.9e-05, "grad_norm": 0.94, "tokens":
//   245760,
//    "tokens_per_s": 2210.5, "mfu": 0.41, "rss_mb": 1834.2, "elapsed_s": 111.2}
//   {"step": 200, ..., "eval_loss": 1.7710, ...}
//
// Keys whose value is unknown (no eval at this step, no MFU estimate, a NaN loss) are left out; a
// reader takes a missing key as "not measured". Resume-safe: opening the log of a run resumed from
// the checkpoint at step S drops the rows with step > S (written after that checkpoint; the resumed
// run writes them again) and a torn last line, so no step appears twice.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace seqit {
class ResumableJsonlWriter;
}

namespace seqit::train {

struct MetricsRow {
  int64_t step = 0;  // optimizer updates done
  double epoch = 0;  // epochs done, fractional
  std::optional<double>
      loss;  // mean training loss of the step (or of the steps since the last row)
  std::optional<double> eval_loss;  // when evaluated at this step
  double lr = 0;                    // the lr the step used
  std::optional<double> grad_norm;  // global gradient norm before clipping
  int64_t tokens = 0;               // trained tokens so far
  double tokens_per_s = 0;          // since the last row
  std::optional<double> mfu;        // model FLOPs utilisation, 0..1, when the peak is known
  double rss_mb = 0;                // resident memory of the process
  double elapsed_s = 0;             // training time so far (resumed runs continue the count)
  bool operator==(const MetricsRow&) const = default;
};

// One line of JSON (no newline), keys in the order above.
std::string metrics_json(const MetricsRow& row);
// Throws seqit::Error (field named) for a line that is not a metrics row.
MetricsRow parse_metrics_row(std::string_view json_line);
// Every row of a metrics log (a torn last line is ignored); errors name the file and line.
std::vector<MetricsRow> read_metrics(const std::filesystem::path& path);

class MetricsLog {
 public:
  // A fresh run (resume_step nullopt) starts an empty log, replacing any old one. A resumed run
  // keeps the rows with step <= *resume_step and drops the later ones (the file is rewritten
  // atomically when anything is dropped).
  MetricsLog(std::filesystem::path path, std::optional<int64_t> resume_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Appends one row; it reaches the file (the OS) before this returns.
  void append(const MetricsRow& row);
  // Every row in the log, kept ones first: what the loss chart draws.
  const std::vector<MetricsRow>& rows() const { return rows_; }
  // Rows dropped on open because they came after the resume step.
  int64_t dropped_rows() const { return dropped_rows_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::vector<MetricsRow> rows_;
  int64_t dropped_rows_ = 0;
  std::unique_ptr<ResumableJsonlWriter> writer_;
};

// Resident set size of this process in MiB (Linux /proc/self/statm; 0 when unknown).
double current_rss_mb();

}  // namespace seqit::train

#include "train/metrics.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file_io.h"
#include "util/jsonl_writer.h"

namespace seqit::train {
namespace fs = std::filesystem;

std::string metrics_json(const MetricsRow& row) {
  nlohmann::ordered_json j;
  auto put = [&](const char* key, double v) {
    if (std::isfinite(v)) j[key] = v;  // JSON has no NaN: an unknown value is a missing key
  };
  j["step"] = row.step;
  put("epoch", row.epoch);
  if (row.loss) put("loss", *row.loss);
  if (row.eval_loss) put("eval_loss", *row.eval_loss);
  put("lr", row.lr);
  if (row.grad_norm) put("grad_norm", *row.grad_norm);
  j["tokens"] = row.tokens;
  put("tokens_per_s", row.tokens_per_s);
  if (row.mfu) put("mfu", *row.mfu);
  put("rss_mb", row.rss_mb);
  put("elapsed_s", row.elapsed_s);
  return j.dump();
}

MetricsRow parse_metrics_row(std::string_view json_line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_line);
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("not JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error("a metrics row is a JSON object");
  MetricsRow row;
  auto number = [&](const char* key) -> std::optional<double> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_number()) throw Error("expected a number").in_field(key);
    return it->get<double>();
  };
  auto integer = [&](const char* key) -> std::optional<int64_t> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer()) throw Error("expected an integer").in_field(key);
    return it->get<int64_t>();
  };
  std::optional<int64_t> step = integer("step");
  if (!step) throw Error("missing").in_field("step");
  row.step = *step;
  row.epoch = number("epoch").value_or(0);
  row.loss = number("loss");
  row.eval_loss = number("eval_loss");
  row.lr = number("lr").value_or(0);
  row.grad_norm = number("grad_norm");
  row.tokens = integer("tokens").value_or(0);
  row.tokens_per_s = number("tokens_per_s").value_or(0);
  row.mfu = number("mfu");
  row.rss_mb = number("rss_mb").value_or(0);
  row.elapsed_s = number("elapsed_s").value_or(0);
  return row;
}

namespace {

struct LogLine {
  std::string text;
  MetricsRow row;
};

// The complete lines of a log (a torn last line, from a crash mid-append, is not one).
std::vector<LogLine> read_log_lines(const fs::path& path, bool* torn) {
  std::string text = read_file(path);
  std::vector<LogLine> out;
  size_t start = 0;
  int64_t line_no = 0;
  *torn = false;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    ++line_no;
    if (end == std::string::npos) {
      *torn = true;
      break;
    }
    std::string line = text.substr(start, end - start);
    start = end + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back({line, parse_metrics_row(line)});
    } catch (Error& e) {
      e.add_context(ErrorContext{path.string(), line_no, 0, -1, ""});
      throw;
    }
  }
  return out;
}

}  // namespace

std::vector<MetricsRow> read_metrics(const fs::path& path) {
  bool torn = false;
  std::vector<MetricsRow> rows;
  for (LogLine& l : read_log_lines(path, &torn)) rows.push_back(std::move(l.row));
  return rows;
}

MetricsLog::MetricsLog(fs::path path, std::optional<int64_t> resume_step) : path_(std::move(path)) {
  if (resume_step && fs::exists(path_)) {
    bool torn = false;
    std::vector<LogLine> lines = read_log_lines(path_, &torn);
    std::string kept;
    for (LogLine& l : lines) {
      if (l.row.step > *resume_step) {
        ++dropped_rows_;
        continue;
      }
      kept += l.text + "\n";
      rows_.push_back(std::move(l.row));
    }
    if (dropped_rows_ > 0 || torn) write_file_atomic(path_, kept);
  }
  writer_ = std::make_unique<ResumableJsonlWriter>(path_, "", /*fresh=*/!resume_step.has_value());
}

MetricsLog::~MetricsLog() = default;

void MetricsLog::append(const MetricsRow& row) {
  writer_->append_line(metrics_json(row));
  rows_.push_back(row);
}

double current_rss_mb() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return double(pages_resident) * double(::sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

}  // namespace seqit::train

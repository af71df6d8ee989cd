#include "eval/report.h"

#include <fmt/format.h>
#include <plplot/plplot.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "chart/png.h"
#include "eval/metrics.h"
#include "eval/runner.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::eval {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

MetricSummary summarise(const std::vector<double>& values) {
  MetricSummary s;
  s.n = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  const ConfidenceInterval ci = bootstrap_mean_ci(values, {.resamples = 2000, .seed = 0});
  s.mean = ci.estimate;
  s.lower = ci.lower;
  s.upper = ci.upper;
  return s;
}

std::string pct(double v) {
  return fmt::format("{:.1f}", 100.0 * v);
}

// Scores that are not rates in [0, 1] are shown as they are (e.g. a following depth or a ROUGE F1
// is still in [0, 1]; depth is not).
bool is_rate(const std::string& key) {
  return key.find("depth") == std::string::npos && key.find("count") == std::string::npos;
}
std::string show(const std::string& key, double v) {
  return is_rate(key) ? pct(v) : fmt::format("{:.3f}", v);
}

std::string label_of(const EvalReport& r, const std::string& key) {
  for (const auto& m : r.main_metrics)
    if (m.key == key) return m.label;
  return key;
}

json report_json(const EvalReport& r) {
  json j;
  j["task"] = r.task;
  json settings = json::object();
  for (const auto& [k, v] : r.settings) settings[k] = v;
  j["settings"] = settings;
  j["items"] = r.items;
  j["items_total"] = r.items_total;
  j["no_answer_rate"] = r.no_answer_rate;
  json main = json::array();
  for (const auto& m : r.main_metrics) main.push_back({{"key", m.key}, {"label", m.label}});
  j["main_metrics"] = main;
  json metrics = json::object();
  for (const auto& [k, s] : r.metrics)
    metrics[k] = {{"mean", s.mean}, {"ci95", {s.lower, s.upper}}, {"n", s.n}};
  j["metrics"] = metrics;
  if (!r.aggregates.empty()) j["aggregates"] = r.aggregates;
  if (!r.group_label.empty()) {
    j["group_label"] = r.group_label;
    json groups = json::object();
    for (const auto& [g, means] : r.group_means)
      groups[g] = {{"items", r.group_items.at(g)}, {"means", means}};
    j["groups"] = groups;
    j["macro"] = r.macro;
  }
  return j;
}

std::string report_markdown(const EvalReport& r) {
  std::string md = fmt::format("# {} evaluation\n\n## Settings\n\n", r.task);
  for (const auto& [k, v] : r.settings) md += fmt::format("- {}: {}\n", k, v);
  md += fmt::format("\n## Results\n\n{} of {} items scored. No extractable answer: {}%.\n\n",
                    r.items, r.items_total, pct(r.no_answer_rate));
  md += "| metric | value | 95% CI | items |\n|---|---:|---|---:|\n";
  std::set<std::string> shown;
  auto row = [&](const std::string& key) {
    auto it = r.metrics.find(key);
    if (it == r.metrics.end()) return;
    const MetricSummary& s = it->second;
    md += fmt::format("| {} | {} | [{}, {}] | {} |\n", label_of(r, key), show(key, s.mean),
                      show(key, s.lower), show(key, s.upper), s.n);
    shown.insert(key);
  };
  for (const auto& m : r.main_metrics) row(m.key);
  for (const auto& [k, s] : r.metrics)
    if (!shown.count(k)) row(k);
  md += "\nRates are in %; the CI is a 2000-resample percentile bootstrap over items (seed 0).\n";
  if (!r.aggregates.empty()) {
    md += "\n| over the whole run | value |\n|---|---:|\n";
    for (const auto& [k, v] : r.aggregates) md += fmt::format("| {} | {:.4f} |\n", k, v);
  }
  if (!r.group_label.empty() && !r.group_means.empty()) {
    md += fmt::format("\n## Per {}\n\n| {} | items", r.group_label, r.group_label);
    std::vector<std::string> keys;
    for (const auto& m : r.main_metrics) keys.push_back(m.key);
    for (const auto& k : keys) md += fmt::format(" | {}", label_of(r, k));
    md += " |\n|---|---:";
    for (size_t i = 0; i < keys.size(); ++i) md += "|---:";
    md += "|\n";
    for (const auto& [g, means] : r.group_means) {
      md += fmt::format("| {} | {}", g, r.group_items.at(g));
      for (const auto& k : keys) {
        auto it = means.find(k);
        md += fmt::format(" | {}", it == means.end() ? "–" : show(k, it->second));
      }
      md += " |\n";
    }
    md += fmt::format("| **macro average (over {} {} groups)** | {}", r.group_means.size(),
                      r.group_label, r.items);
    for (const auto& k : keys) {
      auto it = r.macro.find(k);
      md += fmt::format(" | {}", it == r.macro.end() ? "–" : show(k, it->second));
    }
    md += " |\n";
  }
  return md;
}

EvalReport report_from_json(const json& j) {
  EvalReport r;
  r.task = j.at("task").get<std::string>();
  r.items = j.at("items").get<int64_t>();
  r.items_total = j.value("items_total", r.items);
  r.no_answer_rate = j.value("no_answer_rate", 0.0);
  for (const auto& [k, v] : j.at("settings").items())
    r.settings.emplace_back(k, v.get<std::string>());
  for (const auto& m : j.at("main_metrics"))
    r.main_metrics.push_back({m.at("key").get<std::string>(), m.at("label").get<std::string>()});
  for (const auto& [k, v] : j.at("metrics").items())
    r.metrics[k] = {v.at("mean").get<double>(), v.at("ci95")[0].get<double>(),
                    v.at("ci95")[1].get<double>(), v.at("n").get<int64_t>()};
  return r;
}

// Grouped bars: for each main metric, one bar per run, with its CI as a whisker.
void write_compare_chart(const fs::path& png, const std::vector<std::string>& labels,
                         const std::vector<EvalReport>& reports) {
  std::vector<MetricSpec> metrics;
  for (const auto& m : reports.front().main_metrics)
    if (reports.front().metrics.count(m.key) && is_rate(m.key)) metrics.push_back(m);
  if (metrics.empty()) return;
  // Background, ink, grid, then one colour per run.
  const chart::Palette palette = {{255, 255, 255}, {40, 40, 40},   {225, 225, 225},
                                  {20, 80, 170},   {220, 110, 30}, {40, 150, 70},
                                  {170, 40, 60},   {120, 80, 160}, {100, 100, 100}};
  chart::write_png(png, 1200, 700, palette, [&] {
    pladv(0);
    plvpor(0.08, 0.97, 0.16, 0.86);
    const double groups = static_cast<double>(metrics.size());
    plwind(0, groups, 0, 105);
    plcol0(2);
    plbox("", 0, 0, "g", 0, 0);
    plcol0(1);
    plbox("bc", 0, 0, "bcnstv", 20, 0);
    const double runs = static_cast<double>(reports.size());
    const double width = 0.8 / runs;
    for (size_t m = 0; m < metrics.size(); ++m) {
      for (size_t k = 0; k < reports.size(); ++k) {
        auto it = reports[k].metrics.find(metrics[m].key);
        if (it == reports[k].metrics.end()) continue;
        const double left = m + 0.1 + k * width, right = left + width * 0.9;
        const double h = 100 * it->second.mean;
        PLFLT xs[4] = {left, left, right, right}, ys[4] = {0, h, h, 0};
        plcol0(3 + static_cast<PLINT>(k % 6));
        plfill(4, xs, ys);
        plcol0(1);
        const double mid = (left + right) / 2;
        pljoin(mid, 100 * it->second.lower, mid, 100 * it->second.upper);
        plschr(0, 0.7);
        plptex(mid, std::min(100.0, 100 * it->second.upper) + 1.5, 1, 0, 0.5,
               fmt::format("{:.1f}", h).c_str());
      }
      plschr(0, 0.8);
      plmtex("b", 1.5, (m + 0.5) / groups, 0.5, metrics[m].label.c_str());
    }
    // Legend: one coloured label per run under the axis.
    for (size_t k = 0; k < reports.size(); ++k) {
      plcol0(3 + static_cast<PLINT>(k % 6));
      plschr(0, 0.9);
      plmtex("b", 3.5 + 1.3 * static_cast<double>(k / 3), 0.05 + 0.32 * static_cast<double>(k % 3),
             0.0, fmt::format("■ {}", labels[k]).c_str());
    }
    plcol0(1);
    plschr(0, 1.0);
    plmtex("l", 3.5, 0.5, 0.5, "% (bar: mean, line: 95% CI)");
    plmtex("t", 2.0, 0.5, 0.5, fmt::format("{}: runs compared", reports.front().task).c_str());
  });
}

}  // namespace

EvalReport build_report(const Task& task, const std::vector<ItemResult>& items, int64_t items_total,
                        std::vector<std::pair<std::string, std::string>> settings) {
  EvalReport r;
  r.task = task.name();
  r.group_label = task.group_label();
  r.main_metrics = task.main_metrics();
  r.settings = std::move(settings);
  r.items = static_cast<int64_t>(items.size());
  r.items_total = items_total;
  std::map<std::string, std::vector<double>> values;
  std::map<std::string, std::map<std::string, std::pair<double, int64_t>>> groups;
  int64_t missing = 0;
  for (const ItemResult& item : items) {
    if (!item.answer_found) ++missing;
    if (!r.group_label.empty()) ++r.group_items[item.group];
    for (const auto& [k, v] : item.scores) {
      values[k].push_back(v);
      if (!r.group_label.empty()) {
        auto& acc = groups[item.group][k];
        acc.first += v;
        ++acc.second;
      }
    }
  }
  r.no_answer_rate = items.empty() ? 0.0 : static_cast<double>(missing) / items.size();
  r.aggregates = task.aggregate(items);
  for (const auto& [k, v] : values) r.metrics[k] = summarise(v);
  for (const auto& [g, metrics] : groups)
    for (const auto& [k, acc] : metrics) r.group_means[g][k] = acc.first / acc.second;
  if (!r.group_label.empty()) {
    std::map<std::string, std::pair<double, int64_t>> macro;
    for (const auto& [g, means] : r.group_means)
      for (const auto& [k, v] : means) {
        macro[k].first += v;
        ++macro[k].second;
      }
    for (const auto& [k, acc] : macro) r.macro[k] = acc.first / acc.second;
  }
  return r;
}

std::vector<std::pair<std::string, std::string>> report_settings(const Task& task,
                                                                 const TaskOptions& o,
                                                                 const std::string& backend) {
  std::vector<std::pair<std::string, std::string>> s;
  s.emplace_back("task", task.name());
  s.emplace_back("chat template", o.chat ? (o.shots_as_turns ? "on (exemplars as separate turns)"
                                                             : "on (exemplars in one user turn)")
                                         : "off (raw completion prompts)");
  s.emplace_back("BOS",
                 "left to the backend: the prompt text carries none; seqit's local engine and "
                 "`seqit serve` add one BOS when they tokenize it, other servers follow their "
                 "own tokenizer's rule");
  if (o.max_prompt_chars > 0)
    s.emplace_back("prompt budget",
                   fmt::format("{} characters: exemplars dropped from the last until a prompt "
                               "fits; 'shots_used' below is the mean kept",
                               o.max_prompt_chars));
  s.emplace_back("max tokens", o.max_tokens > 0 ? std::to_string(o.max_tokens) : "task default");
  s.emplace_back("seed", std::to_string(o.seed));
  s.emplace_back("limit", o.limit >= 0 ? std::to_string(o.limit) : "none");
  if (!o.groups.empty()) {
    std::string groups;
    for (const auto& g : o.groups) groups += (groups.empty() ? "" : ", ") + g;
    s.emplace_back("groups", groups);
  }
  s.emplace_back("backend", backend);
  s.emplace_back("model", o.model.empty() ? "the backend's default" : o.model);
  const auto own = task.settings();
  auto shots = own.find("shots");
  if (shots != own.end()) s.insert(s.begin() + 2, *shots);  // next to the chat template
  for (const auto& [k, v] : own)
    if (k != "shots") s.emplace_back(k, v);
  return s;
}

void write_report(const fs::path& dir, const EvalReport& report) {
  fs::create_directories(dir);
  write_file_atomic(dir / "report.json", report_json(report).dump(2) + "\n");
  write_file_atomic(dir / "report.md", report_markdown(report));
}

std::string compare_runs(const std::vector<fs::path>& runs, const fs::path& out,
                         const CompareOptions& options) {
  if (runs.size() < 2) throw Error("compare needs at least two run folders");
  if (!options.labels.empty() && options.labels.size() != runs.size())
    throw Error(fmt::format("{} labels for {} runs", options.labels.size(), runs.size()));
  std::vector<EvalReport> reports;
  std::vector<std::unordered_map<std::string, const ItemResult*>> by_id(runs.size());
  std::vector<StoredResults> stored;
  std::vector<std::string> labels;
  stored.reserve(runs.size());
  for (size_t k = 0; k < runs.size(); ++k) {
    const fs::path report_path = runs[k] / "report.json";
    if (!fs::exists(report_path))
      throw Error("no report.json here: give the -o folder of a finished `seqit eval` run")
          .in_file(report_path.string());
    try {
      reports.push_back(report_from_json(json::parse(read_file(report_path))));
    } catch (const json::exception& e) {
      throw Error(fmt::format("not a seqit eval report: {}", e.what()))
          .in_file(report_path.string());
    }
    if (reports.back().task != reports.front().task)
      throw Error(fmt::format("runs of different tasks ({} and {}) cannot be compared",
                              reports.front().task, reports.back().task))
          .in_file(report_path.string());
    const fs::path results = runs[k] / "results.jsonl";
    stored.push_back(fs::exists(results) ? read_results(results) : StoredResults{});
    for (const ItemResult& item : stored.back().items) by_id[k][item.id] = &item;
    labels.push_back(options.labels.empty() ? runs[k].filename().string() : options.labels[k]);
    if (labels.back().empty()) labels.back() = runs[k].parent_path().filename().string();
  }
  // Folder names that collide (runs/it/gsm8k, runs/sit/gsm8k) are told apart by their parent.
  if (options.labels.empty()) {
    const std::vector<std::string> names = labels;
    for (size_t k = 0; k < runs.size(); ++k)
      if (std::count(names.begin(), names.end(), names[k]) > 1)
        labels[k] = (runs[k].parent_path().filename() / runs[k].filename()).string();
  }
  const EvalReport& base = reports.front();
  std::vector<std::string> keys;
  for (const auto& m : base.main_metrics)
    if (base.metrics.count(m.key)) keys.push_back(m.key);
  for (const auto& [k, s] : base.metrics)
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);

  json j;
  j["task"] = base.task;
  j["runs"] = json::array();
  for (size_t k = 0; k < runs.size(); ++k)
    j["runs"].push_back(
        {{"label", labels[k]}, {"path", runs[k].string()}, {"items", reports[k].items}});
  std::string md = fmt::format("# {}: {} runs compared\n\nRuns:\n", base.task, runs.size());
  for (size_t k = 0; k < runs.size(); ++k)
    md += fmt::format("- **{}**: `{}` ({} items)\n", labels[k], runs[k].string(), reports[k].items);
  md += fmt::format(
      "\nDifferences are to **{}**; the paired 95% CI resamples the items both runs scored "
      "(2000 resamples, seed 0).\n\n| metric | run | value | 95% CI | Δ vs {} | paired 95% CI of Δ "
      "| "
      "shared items |\n|---|---|---:|---|---:|---|---:|\n",
      labels[0], labels[0]);
  json rows = json::array();
  for (const auto& key : keys) {
    for (size_t k = 0; k < runs.size(); ++k) {
      auto it = reports[k].metrics.find(key);
      if (it == reports[k].metrics.end()) continue;
      const MetricSummary& s = it->second;
      json row = {
          {"metric", key}, {"run", labels[k]}, {"mean", s.mean}, {"ci95", {s.lower, s.upper}}};
      std::string diff = "", paired = "", shared = "";
      if (k > 0) {
        auto b = base.metrics.find(key);
        if (b != base.metrics.end()) {
          row["diff"] = s.mean - b->second.mean;
          diff = fmt::format("{:+.1f}", (is_rate(key) ? 100 : 1) * (s.mean - b->second.mean));
        }
        // The shared items in id order, so the interval does not depend on hash order.
        std::vector<std::string> ids;
        for (const auto& [id, item] : by_id[k]) {
          auto other = by_id[0].find(id);
          if (other != by_id[0].end() && item->scores.count(key) &&
              other->second->scores.count(key))
            ids.push_back(id);
        }
        std::sort(ids.begin(), ids.end());
        std::vector<double> a_scores, b_scores;
        for (const auto& id : ids) {
          a_scores.push_back(by_id[k].at(id)->scores.at(key));
          b_scores.push_back(by_id[0].at(id)->scores.at(key));
        }
        shared = std::to_string(ids.size());
        row["shared_items"] = ids.size();
        if (!ids.empty()) {
          const ConfidenceInterval ci =
              paired_bootstrap_diff_ci(a_scores, b_scores, {.resamples = 2000, .seed = 0});
          row["paired_diff"] = ci.estimate;
          row["paired_ci95"] = {ci.lower, ci.upper};
          const double f = is_rate(key) ? 100 : 1;
          paired = fmt::format("[{:+.1f}, {:+.1f}]", f * ci.lower, f * ci.upper);
        }
      }
      rows.push_back(row);
      md += fmt::format("| {} | {} | {} | [{}, {}] | {} | {} | {} |\n", label_of(base, key),
                        labels[k], show(key, s.mean), show(key, s.lower), show(key, s.upper), diff,
                        paired, shared);
    }
  }
  j["rows"] = rows;
  fs::create_directories(out);
  write_file_atomic(out / "compare.json", j.dump(2) + "\n");
  write_file_atomic(out / "compare.md", md);
  write_compare_chart(out / "compare.png", labels, reports);
  return md;
}

}  // namespace seqit::eval

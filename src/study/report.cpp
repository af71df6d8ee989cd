#include "study/report.h"

#include <fmt/format.h>
#include <plplot.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "chart/png.h"
#include "eval/metrics.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::study {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

const char* kMetrics[] = {"final_accuracy", "following", "step_accuracy", "depth"};

double metric_of(const synth::GradeSummary& s, std::string_view metric) {
  if (metric == "final_accuracy") return s.final_accuracy;
  if (metric == "following") return s.following_rate;
  if (metric == "step_accuracy") return s.step_accuracy;
  return s.mean_depth;
}

double item_metric(const synth::Grade& g, std::string_view metric) {
  if (metric == "final_accuracy") return g.final_correct ? 1 : 0;
  if (metric == "following") return g.following ? 1 : 0;
  if (metric == "step_accuracy") return g.step_accuracy();
  return g.depth;
}

std::vector<std::string> arms_in_order(const std::vector<ArmRun>& runs, const ReportOptions& o) {
  std::vector<std::string> out;
  for (const auto& a : o.arm_order)
    if (std::any_of(runs.begin(), runs.end(), [&](const ArmRun& r) { return r.arm == a; }))
      out.push_back(a);
  for (const auto& r : runs)
    if (std::find(out.begin(), out.end(), r.arm) == out.end()) out.push_back(r.arm);
  return out;
}

std::string pct(double v) {
  return fmt::format("{:.1f}", 100 * v);
}

}  // namespace

StudyReport build_study_report(const std::vector<synth::Item>& items,
                               const std::vector<ArmRun>& runs, const ReportOptions& o) {
  StudyReport report;
  report.gate = o.gate;
  for (const auto& run : runs)
    if (run.grades.size() != items.size())
      throw Error(fmt::format("arm {} seed {}: {} grades for {} items", run.arm, run.seed,
                              run.grades.size(), items.size()));
  std::map<int, std::vector<size_t>> by_length;
  for (size_t i = 0; i < items.size(); ++i)
    by_length[static_cast<int>(items[i].chain.steps.size())].push_back(i);

  // The table: per arm, length and metric, the mean and spread over seeds of each seed's score.
  for (const std::string& arm : arms_in_order(runs, o)) {
    for (const auto& [length, idx] : by_length) {
      for (const char* metric : kMetrics) {
        std::vector<double> per_seed;
        for (const auto& run : runs) {
          if (run.arm != arm) continue;
          std::vector<synth::Grade> g;
          for (size_t i : idx) g.push_back(run.grades[i]);
          per_seed.push_back(metric_of(synth::summarize(g), metric));
        }
        StudyReport::Cell cell;
        for (double v : per_seed) cell.mean += v;
        cell.mean /= static_cast<double>(per_seed.size());
        if (per_seed.size() > 1) {
          double ss = 0;
          for (double v : per_seed) ss += (v - cell.mean) * (v - cell.mean);
          cell.std = std::sqrt(ss / static_cast<double>(per_seed.size() - 1));
        }
        report.table[arm][length][metric] = cell;
      }
    }
  }

  // Comparisons on multi-step chains: per item, each arm's score averaged over its seeds.
  std::vector<size_t> multi;
  for (size_t i = 0; i < items.size(); ++i)
    if (items[i].chain.steps.size() >= 2) multi.push_back(i);
  auto per_item = [&](const std::string& arm, std::string_view metric) {
    std::vector<double> scores(multi.size(), 0.0);
    int seeds = 0;
    for (const auto& run : runs) {
      if (run.arm != arm) continue;
      ++seeds;
      for (size_t k = 0; k < multi.size(); ++k)
        scores[k] += item_metric(run.grades[multi[k]], metric);
    }
    for (double& s : scores) s /= std::max(1, seeds);
    return scores;
  };
  const auto arms = arms_in_order(runs, o);
  const bool has_baseline = std::find(arms.begin(), arms.end(), o.baseline) != arms.end();
  if (has_baseline && !multi.empty()) {
    for (const std::string& arm : arms) {
      if (arm == o.baseline) continue;
      for (const char* metric : {"final_accuracy", "following"}) {
        const auto a = per_item(arm, metric), b = per_item(o.baseline, metric);
        eval::BootstrapOptions bo;
        bo.seed = o.bootstrap_seed;
        const auto ci = eval::paired_bootstrap_diff_ci(a, b, bo);
        report.comparisons.push_back({arm, o.baseline, metric, ci.estimate, ci.lower, ci.upper,
                                      static_cast<int64_t>(multi.size())});
      }
    }
    // Does the quality of the intermediate steps matter? The corrupted arm against clean SIT.
    const auto has = [&](const char* arm) {
      return std::find(arms.begin(), arms.end(), arm) != arms.end();
    };
    if (has("sit_corrupted") && has("sit") && o.baseline != "sit")
      for (const char* metric : {"final_accuracy", "following"}) {
        eval::BootstrapOptions bo;
        bo.seed = o.bootstrap_seed;
        const auto ci = eval::paired_bootstrap_diff_ci(per_item("sit_corrupted", metric),
                                                       per_item("sit", metric), bo);
        report.comparisons.push_back({"sit_corrupted", "sit", metric, ci.estimate, ci.lower,
                                      ci.upper, static_cast<int64_t>(multi.size())});
      }
  }

  // The gate: the baseline must solve single tasks, or nothing it is compared with means much.
  // On the gate items when the runs have them (single tasks in training phrasings on held-out
  // inputs: did the model learn the tasks?), else on the 1-step evaluation chains.
  int gate_runs = 0;
  double gate_sum = 0;
  for (const auto& run : runs) {
    if (run.arm != o.baseline || run.gate_grades.empty()) continue;
    double right = 0;
    for (size_t k = 0; k < run.gate_grades.size(); ++k) {
      const bool ok = run.gate_grades[k].final_correct;
      right += ok ? 1 : 0;
      if (k < run.gate_tasks.size()) {
        auto& [r, n] = report.gate_by_task[run.gate_tasks[k]];
        r += ok ? 1 : 0;
        ++n;
      }
    }
    gate_sum += right / static_cast<double>(run.gate_grades.size());
    ++gate_runs;
  }
  if (gate_runs > 0) {
    report.gate_value = gate_sum / gate_runs;
    report.gate_on_gate_items = true;
  } else if (has_baseline && report.table[o.baseline].count(1)) {
    report.gate_value = report.table[o.baseline][1]["final_accuracy"].mean;
  }
  report.meaningful = has_baseline && report.gate_value >= o.gate;
  const Comparison* main = nullptr;
  for (const auto& c : report.comparisons)
    if (c.treatment == "sit" && c.metric == "final_accuracy") main = &c;
  if (!has_baseline) {
    report.verdict =
        fmt::format("No verdict: the study has no {} arm to compare with.", o.baseline);
  } else if (!report.meaningful) {
    report.verdict = fmt::format(
        "No verdict: the {} arm solves {}% of {}, under the {}% gate, so the comparison is not "
        "meaningful (train longer or on more data).",
        o.baseline, pct(report.gate_value),
        report.gate_on_gate_items ? "single tasks on held-out inputs"
                                  : "held-out single-step chains",
        pct(o.gate));
  } else if (!main) {
    report.verdict = "No verdict: the study has no SIT arm or no multi-step evaluation chains.";
  } else {
    const std::string span =
        fmt::format("{:+.1f} points (95% CI {:+.1f} to {:+.1f}, {} items)", 100 * main->difference,
                    100 * main->lower, 100 * main->upper, main->items);
    if (main->lower > 0)
      report.verdict =
          "SIT beats IT on held-out multi-step chains: final-answer accuracy " + span + ".";
    else if (main->upper < 0)
      report.verdict =
          "SIT is worse than IT on held-out multi-step chains: final-answer accuracy " + span + ".";
    else
      report.verdict =
          "No clear difference between SIT and IT on held-out multi-step chains: final-answer "
          "accuracy " +
          span + ".";
  }
  return report;
}

namespace {

const int kArmColours[][3] = {
    {110, 110, 110}, {20, 80, 170}, {220, 120, 30}, {170, 40, 40}, {40, 140, 60}};

// A PNG drawn by `draw`, with ink, grid and the arm colours in the palette (arm a is colour 3 + a).
void with_png(const fs::path& png, int width, int height, const std::function<void()>& draw) {
  chart::Palette palette = {{255, 255, 255}, {40, 40, 40}, {225, 225, 225}};
  for (const auto& c : kArmColours) palette.push_back({c[0], c[1], c[2]});
  chart::write_png(png, width, height, palette, draw);
}

void legend(const std::vector<std::string>& arms) {
  std::vector<PLINT> opts(arms.size(), PL_LEGEND_LINE), colours(arms.size()),
      styles(arms.size(), 1);
  std::vector<PLFLT> widths(arms.size(), 2.5);
  std::vector<const char*> texts;
  for (size_t a = 0; a < arms.size(); ++a) {
    colours[a] = static_cast<PLINT>(3 + std::min<size_t>(a, 4));
    texts.push_back(arms[a].c_str());
  }
  std::vector<PLINT> zero(arms.size(), 0);
  std::vector<PLFLT> zerof(arms.size(), 0);
  std::vector<const char*> empty(arms.size(), "");
  PLFLT w = 0, h = 0;
  plcol0(1);
  pllegend(&w, &h, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
           PL_POSITION_TOP | PL_POSITION_RIGHT, 0.02, 0.02, 0.1, 0, 1, 1, 0, 0,
           static_cast<PLINT>(arms.size()), opts.data(), 1.0, 1.0, 2.0, 1.0, colours.data(),
           texts.data(), zero.data(), zero.data(), zerof.data(), zerof.data(), colours.data(),
           styles.data(), widths.data(), zero.data(), zerof.data(), zero.data(), empty.data());
}

}  // namespace

void write_study_report(const fs::path& dir, const StudyReport& r, const std::vector<ArmRun>& runs,
                        const std::string& settings, const ReportOptions& o) {
  const auto arms = arms_in_order(runs, o);
  std::set<int> lengths;
  for (const auto& [arm, rows] : r.table)
    for (const auto& [length, cells] : rows) lengths.insert(length);

  json j;
  j["verdict"] = r.verdict;
  j["meaningful"] = r.meaningful;
  j["gate"] = {{"metric", o.baseline + (r.gate_on_gate_items
                                            ? " final accuracy on single tasks (training "
                                              "phrasings, held-out inputs)"
                                            : " final accuracy on held-out single-step chains")},
               {"value", r.gate_value},
               {"threshold", r.gate}};
  for (const auto& [task, rn] : r.gate_by_task)
    j["gate"]["by_task"][task] = {{"right", rn.first}, {"asked", rn.second}};
  json table = json::object();
  for (const auto& [arm, rows] : r.table)
    for (const auto& [length, cells] : rows)
      for (const auto& [metric, cell] : cells)
        table[arm][std::to_string(length)][metric] = {{"mean", cell.mean}, {"std", cell.std}};
  j["table"] = table;
  json comparisons = json::array();
  for (const auto& c : r.comparisons)
    comparisons.push_back({{"treatment", c.treatment},
                           {"baseline", c.baseline},
                           {"metric", c.metric},
                           {"difference", c.difference},
                           {"ci95", {c.lower, c.upper}},
                           {"items", c.items}});
  j["comparisons"] = comparisons;
  json sources = json::array();
  for (const auto& run : runs)
    sources.push_back({{"arm", run.arm},
                       {"seed", run.seed},
                       {"results", run.results_file},
                       {"final_loss", run.metrics.empty() || !run.metrics.back().loss
                                          ? json(nullptr)
                                          : json(*run.metrics.back().loss)}});
  j["runs"] = sources;
  write_file_atomic(dir / "report.json", j.dump(2) + "\n");

  std::string md = "# seqit study: does sequential instruction tuning help?\n\n";
  md += "**" + r.verdict + "**\n\n";
  md += fmt::format("Sanity gate: the {} arm answers {}% of {} (needs {}%): {}.\n\n", o.baseline,
                    pct(r.gate_value),
                    r.gate_on_gate_items ? "single tasks in training phrasings on held-out inputs"
                                         : "held-out single-step chains",
                    pct(r.gate), r.meaningful ? "passed" : "missed");
  if (!r.gate_by_task.empty()) {
    md += fmt::format("| gate task ({}, all seeds) | right | asked | % |\n|---|---|---|---|\n",
                      o.baseline);
    for (const auto& [task, rn] : r.gate_by_task)
      md += fmt::format("| {} | {} | {} | {} |\n", task, rn.first, rn.second,
                        pct(rn.second ? static_cast<double>(rn.first) / rn.second : 0.0));
    md += "\n";
  }
  md +=
      "## Final-answer accuracy and following rate (%) by chain length, mean ± std over seeds\n\n";
  md += "| arm | metric |";
  for (int l : lengths) md += fmt::format(" {} step{} |", l, l == 1 ? "" : "s");
  md += "\n|---|---|";
  for (size_t k = 0; k < lengths.size(); ++k) md += "---|";
  md += "\n";
  for (const auto& arm : arms) {
    for (const char* metric : {"final_accuracy", "following", "step_accuracy"}) {
      md += fmt::format("| {} | {} |", arm, metric);
      for (int l : lengths) {
        const auto& cell = r.table.at(arm).at(l).at(metric);
        md += fmt::format(" {} ± {} |", pct(cell.mean), pct(cell.std));
      }
      md += "\n";
    }
  }
  md += "\n## Differences on multi-step chains (paired bootstrap over items, 95% CI, points)\n\n";
  md += "| comparison | metric | difference | 95% CI |\n|---|---|---|---|\n";
  for (const auto& c : r.comparisons)
    md += fmt::format("| {} − {} | {} | {:+.1f} | [{:+.1f}, {:+.1f}] |\n", c.treatment, c.baseline,
                      c.metric, 100 * c.difference, 100 * c.lower, 100 * c.upper);
  md += "\n![scores by chain length](scores.png)\n\n![training loss](loss.png)\n\n";
  md +=
      "## Where the numbers come from\n\n| arm | seed | per-item results | final training loss "
      "|\n|---|---|---|---|\n";
  for (const auto& run : runs)
    md += fmt::format("| {} | {} | `{}` | {} |\n", run.arm, run.seed, run.results_file,
                      run.metrics.empty() || !run.metrics.back().loss
                          ? std::string("-")
                          : fmt::format("{:.4f}", *run.metrics.back().loss));
  md += "\n## Settings\n\n" + settings + "\n";
  write_file_atomic(dir / "report.md", md);

  // scores.png: final accuracy and following rate against chain length, one line per arm.
  with_png(dir / "scores.png", 1200, 560, [&] {
    const double lo = lengths.empty() ? 1 : *lengths.begin(),
                 hi = lengths.empty() ? 5 : *lengths.rbegin();
    const char* panels[] = {"final_accuracy", "following"};
    const char* titles[] = {"final-answer accuracy", "following rate"};
    pladv(0);
    for (int p = 0; p < 2; ++p) {
      plvpor(0.07 + 0.5 * p, 0.47 + 0.5 * p, 0.14, 0.88);
      plwind(lo - 0.2, hi + 0.2, 0, 105);
      plcol0(2);
      plbox("g", 1, 0, "g", 20, 0);
      plcol0(1);
      plbox("bcnt", 1, 0, "bcnstv", 20, 0);
      plmtex("b", 2.6, 0.5, 0.5, "steps in the chain");
      plmtex("l", 3.0, 0.5, 0.5, "%");
      plmtex("t", 1.2, 0.5, 0.5, titles[p]);
      for (size_t a = 0; a < arms.size(); ++a) {
        std::vector<PLFLT> xs, ys;
        for (int l : lengths) {
          xs.push_back(l);
          ys.push_back(100 * r.table.at(arms[a]).at(l).at(panels[p]).mean);
        }
        plcol0(static_cast<PLINT>(3 + std::min<size_t>(a, 4)));
        plwidth(2.5);
        plline(static_cast<PLINT>(xs.size()), xs.data(), ys.data());
        plpoin(static_cast<PLINT>(xs.size()), xs.data(), ys.data(), 17);
        plwidth(1);
      }
      if (p == 1) legend(arms);
    }
  });

  // loss.png: the training loss of every run, coloured by arm.
  with_png(dir / "loss.png", 1200, 600, [&] {
    double max_step = 1, lo = 1e30, hi = -1e30;
    for (const auto& run : runs)
      for (const auto& row : run.metrics)
        if (row.loss && std::isfinite(*row.loss)) {
          max_step = std::max(max_step, static_cast<double>(row.step));
          lo = std::min(lo, *row.loss);
          hi = std::max(hi, *row.loss);
        }
    if (lo > hi) lo = 0, hi = 1;
    pladv(0);
    plvpor(0.08, 0.97, 0.12, 0.9);
    plwind(0, max_step, std::max(0.0, lo - 0.05 * (hi - lo)), hi + 0.05 * (hi - lo));
    plcol0(2);
    plbox("g", 0, 0, "g", 0, 0);
    plcol0(1);
    plbox("bcnst", 0, 0, "bcnstv", 0, 0);
    plmtex("b", 2.6, 0.5, 0.5, "optimizer step");
    plmtex("l", 3.5, 0.5, 0.5, "training loss");
    plmtex("t", 1.2, 0.5, 0.5, "training loss per arm (one line per seed)");
    for (const auto& run : runs) {
      const size_t a =
          static_cast<size_t>(std::find(arms.begin(), arms.end(), run.arm) - arms.begin());
      std::vector<PLFLT> xs, ys;
      for (const auto& row : run.metrics)
        if (row.loss && std::isfinite(*row.loss)) {
          xs.push_back(static_cast<double>(row.step));
          ys.push_back(*row.loss);
        }
      if (xs.empty()) continue;
      plcol0(static_cast<PLINT>(3 + std::min<size_t>(a, 4)));
      plwidth(1.5);
      plline(static_cast<PLINT>(xs.size()), xs.data(), ys.data());
    }
    plwidth(1);
    legend(arms);
  });
}

}  // namespace seqit::study

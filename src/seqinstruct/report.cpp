#include "seqinstruct/report.h"

#include <fmt/format.h>
#include <plplot.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "chart/png.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::seqinstruct {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// ---- Words and n-grams
// ----------------------------------------------------------------------------

std::vector<std::string> normalized_words(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c >= 0x80) {
      word.push_back(static_cast<char>(std::tolower(c)));
    } else if (!word.empty()) {
      out.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) out.push_back(std::move(word));
  return out;
}

namespace {

uint64_t fnv(std::string_view bytes, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// Hashes of every n-gram of `words` (the whole sequence when shorter than n).
std::vector<uint64_t> gram_hashes(const std::vector<std::string>& words, int n) {
  std::vector<uint64_t> out;
  if (words.empty()) return out;
  const size_t len = std::min(words.size(), static_cast<size_t>(n));
  for (size_t i = 0; i + len <= words.size(); ++i) {
    uint64_t h = 0xcbf29ce484222325ull ^ len;
    for (size_t k = 0; k < len; ++k) h = fnv(words[i + k], fnv(" ", h));
    out.push_back(h);
  }
  return out;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

void EvalOverlap::add(const std::string& set, std::string_view text) {
  auto it = std::find(set_names_.begin(), set_names_.end(), set);
  size_t index = static_cast<size_t>(it - set_names_.begin());
  if (it == set_names_.end()) {
    if (set_names_.size() >= 32) throw Error("too many evaluation sets for the overlap index");
    set_names_.push_back(set);
  }
  const auto words = normalized_words(text);
  // A prompt shorter than n words is indexed whole, and matched only by a text that contains it
  // whole as a window of the same length.
  for (uint64_t h : gram_hashes(words, n_)) grams_[h] |= 1u << index;
}

std::vector<std::string> EvalOverlap::match(std::string_view text) const {
  const auto words = normalized_words(text);
  uint32_t bits = 0;
  // Windows of n words, and of every shorter length (for short eval prompts).
  const int longest = std::min<int>(n_, static_cast<int>(words.size()));
  for (int len = longest; len >= 1 && len >= std::min(4, longest); --len) {
    for (uint64_t h : gram_hashes(words, len)) {
      auto it = grams_.find(h);
      if (it != grams_.end()) bits |= it->second;
    }
  }
  std::vector<std::string> sets;
  for (size_t i = 0; i < set_names_.size(); ++i)
    if (bits & (1u << i)) sets.push_back(set_names_[i]);
  return sets;
}

std::map<std::string, int64_t> EvalOverlap::load(const fs::path& eval_dir) {
  std::map<std::string, int64_t> counts;
  auto add_json_strings = [&](const std::string& set, const json& value,
                              const std::vector<std::string>& keys) {
    auto visit = [&](const json& object) {
      if (!object.is_object()) return;
      for (const auto& [key, v] : object.items()) {
        const bool wanted = std::any_of(keys.begin(), keys.end(), [&](const std::string& k) {
          return key == k || (k.back() == '*' && key.rfind(k.substr(0, k.size() - 1), 0) == 0);
        });
        if (wanted && v.is_string()) {
          add(set, v.get<std::string>());
          ++counts[set];
        }
      }
    };
    if (value.is_array())
      for (const auto& o : value) visit(o);
    else
      visit(value);
  };
  auto jsonl = [&](const std::string& set, const fs::path& path,
                   const std::vector<std::string>& keys) {
    if (!fs::exists(path)) return;
    std::ifstream in(path, std::ios::binary);
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) add_json_strings(set, json::parse(line, nullptr, false), keys);
  };
  auto json_file = [&](const std::string& set, const fs::path& path,
                       const std::vector<std::string>& keys) {
    if (!fs::exists(path)) return;
    add_json_strings(set, json::parse(read_text(path), nullptr, false), keys);
  };
  auto lines = [&](const std::string& set, const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      // TSV: the question is the first column; CSV (MMLU): the whole row (question and options).
      const size_t tab = line.find('\t');
      add(set, tab == std::string::npos ? line : line.substr(0, tab));
      ++counts[set];
    }
  };
  jsonl("gsm8k", eval_dir / "gsm8k" / "test.jsonl", {"question"});
  if (fs::exists(eval_dir / "mgsm"))
    for (const auto& e : fs::directory_iterator(eval_dir / "mgsm"))
      if (e.path().extension() == ".tsv") lines("mgsm", e.path());
  if (fs::exists(eval_dir / "mmlu" / "data" / "test"))
    for (const auto& e : fs::directory_iterator(eval_dir / "mmlu" / "data" / "test"))
      if (e.path().extension() == ".csv") lines("mmlu", e.path());
  json_file("seqeval", eval_dir / "seqeval" / "seqEval.json", {"instruction"});
  json_file("alpaca_eval", eval_dir / "alpaca_eval" / "alpaca_eval_805_instructions.json",
            {"instruction"});
  if (fs::exists(eval_dir / "sifo"))
    for (const auto& e : fs::directory_iterator(eval_dir / "sifo"))
      if (e.path().extension() == ".jsonl") jsonl("sifo", e.path(), {"context", "instruction_*"});
  return counts;
}

// ---- The report
// ----------------------------------------------------------------------------------

const std::vector<std::map<char, double>>& paper_alpaca_options() {
  static const std::vector<std::map<char, double>> table = {
      {{'A', 7.4}, {'B', 51.2}, {'C', 24.5}, {'D', 16.8}},
      {{'A', 30.4}, {'B', 3.8}, {'C', 2.8}, {'D', 63.0}},
      {{'A', 6.1}, {'B', 0.2}, {'C', 0.2}, {'D', 93.5}},
      {{'A', 1.0}, {'B', 0.02}, {'C', 0.02}, {'D', 99.0}},
  };
  return table;
}

namespace {
double word_count(std::string_view text) {
  return static_cast<double>(normalized_words(text).size());
}
std::string near_key(std::string_view text) {
  std::string key;
  for (const auto& w : normalized_words(text)) key += w + " ";
  return key;
}
}  // namespace

RunReport build_report(const PipelineResult& result, const PipelineOptions& options,
                       const EvalOverlap* overlap) {
  RunReport r;
  r.mode = options.mode == Mode::sit ? "sit" : "direct";
  r.iterations = options.mode == Mode::sit ? options.iterations : 0;
  r.items = static_cast<int64_t>(result.items.size());
  r.counts = result.totals;
  r.counts.resumed = result.counts.resumed;
  r.counts.backend_errors = result.counts.backend_errors;
  r.options.resize(static_cast<size_t>(r.iterations));
  std::unordered_set<std::string> exact, near;
  double n_complete = 0;
  for (const ItemResult& item : result.items) {
    if (!item.complete) continue;
    ++r.complete;
    n_complete += 1;
    const SourceItem& src = *item.source;
    r.before.instruction_words += word_count(src.instruction) + word_count(src.input);
    r.before.output_words += word_count(src.output);
    r.after.instruction_words += word_count(item.instruction) + word_count(item.input);
    r.after.output_words += word_count(item.output);
    for (int k = 0; k < r.iterations; ++k) {
      // Frozen (D) items count as D in every later pass, as in the paper's table.
      const char option = k < static_cast<int>(item.options.size()) ? item.options[k] : 'D';
      ++r.options[k][option];
    }
    const std::string text = join_prompt(item.instruction, item.input);
    if (!exact.insert(text).second)
      ++r.exact_duplicates;
    else if (!near.insert(near_key(text)).second)
      ++r.near_duplicates;
    if (overlap) {
      const auto sets = overlap->match(text);
      for (const auto& set : sets) ++r.contaminated[set];
      if (!sets.empty()) r.contaminated_ids.push_back(src.id);
    }
  }
  if (n_complete > 0) {
    for (LengthStats* s : {&r.before, &r.after}) {
      s->instruction_words /= n_complete;
      s->output_words /= n_complete;
    }
  }
  r.decontamination_checked = overlap != nullptr;
  return r;
}

namespace {

// Grouped bars: for each iteration, A/B/C/D of this run (solid) beside the paper's (light).
void write_options_chart(const fs::path& png, const RunReport& report) {
  const auto& paper = paper_alpaca_options();
  const int passes = std::max(1, report.iterations);
  const chart::Palette palette = {{255, 255, 255},   // background
                                  {40, 40, 40},      // ink
                                  {20, 80, 170},     // this run
                                  {170, 200, 235},   // the paper
                                  {225, 225, 225}};  // grid
  chart::write_png(png, 1200, 700, palette, [&] {
    pladv(0);
    plvpor(0.08, 0.97, 0.12, 0.88);
    const double groups = passes * 4.0;
    plwind(0, groups, 0, 110);
    plcol0(4);
    plbox("", 0, 0, "g", 0, 0);
    plcol0(1);
    plbox("bc", 0, 0, "bcnstv", 20, 0);
    const char letters[] = {'A', 'B', 'C', 'D'};
    for (int k = 0; k < passes; ++k) {
      for (int j = 0; j < 4; ++j) {
        const double x0 = k * 4.0 + j;
        double ours = 0;
        if (k < static_cast<int>(report.options.size()) && report.complete > 0) {
          auto it = report.options[k].find(letters[j]);
          if (it != report.options[k].end())
            ours = 100.0 * static_cast<double>(it->second) / static_cast<double>(report.complete);
        }
        const double theirs = k < static_cast<int>(paper.size()) ? paper[k].at(letters[j]) : 0;
        auto bar = [&](double left, double right, double height, PLINT colour) {
          PLFLT xs[4] = {left, left, right, right}, ys[4] = {0, height, height, 0};
          plcol0(colour);
          plfill(4, xs, ys);
        };
        bar(x0 + 0.12, x0 + 0.48, ours, 2);
        bar(x0 + 0.52, x0 + 0.88, theirs, 3);
        plcol0(1);
        plschr(0, 0.8);
        plmtex("b", 1.2, (x0 + 0.5) / groups, 0.5, std::string(1, letters[j]).c_str());
        plptex(x0 + 0.3, ours + 2.5, 1, 0, 0.5, fmt::format("{:.0f}", ours).c_str());
      }
      plschr(0, 1.0);
      plmtex("b", 2.8, (k * 4.0 + 2.0) / groups, 0.5, fmt::format("iteration {}", k + 1).c_str());
    }
    plschr(0, 1.0);
    plmtex("l", 3.5, 0.5, 0.5, "% of items");
    plmtex("t", 2.0, 0.5, 0.5,
           fmt::format(
               "Options per iteration: this run (dark, {} items) vs the paper's Alpaca (light)",
               report.complete)
               .c_str());
  });
}

}  // namespace

void write_report(const fs::path& dir, const RunReport& r, const std::string& settings) {
  json j;
  j["mode"] = r.mode;
  j["iterations"] = r.iterations;
  j["items"] = r.items;
  j["complete"] = r.complete;
  json options = json::array();
  for (size_t k = 0; k < r.options.size(); ++k) {
    json row;
    for (char c : {'A', 'B', 'C', 'D'}) {
      auto it = r.options[k].find(c);
      row[std::string(1, c)] = it == r.options[k].end() ? 0 : it->second;
    }
    options.push_back(row);
  }
  j["options_per_iteration"] = options;
  j["length_words"] = {
      {"before", {{"instruction", r.before.instruction_words}, {"output", r.before.output_words}}},
      {"after", {{"instruction", r.after.instruction_words}, {"output", r.after.output_words}}}};
  j["requests"] = {{"answered", r.counts.requests},
                   {"cached", r.counts.cached},
                   {"per_stage", r.counts.stage_requests},
                   {"resumed_item_iterations", r.counts.resumed}};
  j["parse"] = {{"retries", r.counts.parse_retries}, {"failures", r.counts.parse_failures}};
  j["backend_errors"] = r.counts.backend_errors;
  j["duplicates"] = {{"exact", r.exact_duplicates}, {"near", r.near_duplicates}};
  j["decontamination"] = {{"checked", r.decontamination_checked},
                          {"eval_prompts", r.eval_prompts},
                          {"overlapping_items", r.contaminated},
                          {"overlapping_ids", r.contaminated_ids},
                          {"dropped", r.dropped}};
  write_file_atomic(dir / "report.json", j.dump(2) + "\n");

  std::string md = fmt::format("# Seq-Instruct report ({})\n\n",
                               r.mode == "sit" ? "SIT" : "IT, direct response");
  md += fmt::format("{} items, {} complete.\n\n", r.items, r.complete);
  if (r.iterations > 0) {
    md += "## Options per iteration (% of complete items; the paper's Alpaca run in brackets)\n\n";
    md += "| iteration | A decompose | B prefix | C suffix | D keep |\n|---|---|---|---|---|\n";
    const auto& paper = paper_alpaca_options();
    for (size_t k = 0; k < r.options.size(); ++k) {
      md += fmt::format("| {} |", k + 1);
      for (char c : {'A', 'B', 'C', 'D'}) {
        auto it = r.options[k].find(c);
        const double n = it == r.options[k].end() ? 0 : static_cast<double>(it->second);
        const double pct = r.complete ? 100.0 * n / static_cast<double>(r.complete) : 0;
        if (k < paper.size())
          md += fmt::format(" {:.1f} ({:.1f}) |", pct, paper[k].at(c));
        else
          md += fmt::format(" {:.1f} |", pct);
      }
      md += "\n";
    }
    md += "\n![options per iteration](options.png)\n\n";
  }
  md += "## Lengths (mean words)\n\n| | instruction + input | response |\n|---|---|---|\n";
  md += fmt::format("| before | {:.1f} | {:.1f} |\n| after | {:.1f} | {:.1f} |\n\n",
                    r.before.instruction_words, r.before.output_words, r.after.instruction_words,
                    r.after.output_words);
  md += "## Requests and parsing\n\n";
  md += fmt::format(
      "- requests behind this data (every run): {} ({} answered by the cache); "
      "item-iterations read back from earlier runs: {}\n",
      r.counts.requests, r.counts.cached, r.counts.resumed);
  for (const auto& [stage, n] : r.counts.stage_requests)
    md += fmt::format("  - {}: {}\n", stage, n);
  md += fmt::format("- replies that did not parse and were asked again: {}\n",
                    r.counts.parse_retries);
  md += fmt::format("- stages that never parsed (item kept as D / original kept): {}\n",
                    r.counts.parse_failures);
  md += fmt::format("- items stopped by backend errors (rerun to retry): {}\n\n",
                    r.counts.backend_errors);
  md += fmt::format("## Duplicates\n\n- exact: {}\n- near (same words): {}\n\n", r.exact_duplicates,
                    r.near_duplicates);
  md += "## Overlap with evaluation sets\n\n";
  if (!r.decontamination_checked) {
    md += "Not checked: no evaluation sets were found (give --eval-dir).\n\n";
  } else {
    md += "| set | prompts indexed | overlapping items |\n|---|---|---|\n";
    for (const auto& [set, n] : r.eval_prompts) {
      auto it = r.contaminated.find(set);
      md += fmt::format("| {} | {} | {} |\n", set, n, it == r.contaminated.end() ? 0 : it->second);
    }
    md += fmt::format("\n{} items overlap at least one set; {} were dropped (--decontaminate).\n\n",
                      r.contaminated_ids.size(), r.dropped);
  }
  md += "## Settings\n\n" + settings + "\n";
  write_file_atomic(dir / "report.md", md);
  if (r.iterations > 0) write_options_chart(dir / "options.png", r);
}

}  // namespace seqit::seqinstruct

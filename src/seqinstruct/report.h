// What a Seq-Instruct run produced, in numbers (report.json), words (report.md) and a chart
// (options.png): the option distribution per iteration next to the paper's (SIT_SPEC §1.10), the
// length of instructions and responses before and after, parse failures, exact and near
// duplicates, and overlap with the evaluation sets (decontamination).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "seqinstruct/pipeline.h"

namespace seqit::seqinstruct {

// Word n-grams of the evaluation prompts, to find training items that contain a piece of a test
// prompt. Words are lower-cased runs of letters and digits (any non-ASCII byte counts as a letter,
// so other scripts work too); a prompt shorter than n words is matched whole.
class EvalOverlap {
 public:
  explicit EvalOverlap(int n = 8) : n_(n) {}
  // Adds one evaluation prompt under a set name ("gsm8k", ...).
  void add(const std::string& set, std::string_view text);
  // Loads the evaluation sets seqit knows from `eval_dir` (shared/data/eval layout): GSM8K test,
  // MGSM (all languages), MMLU test, SeqEval, AlpacaEval instructions, SIFo. Returns how many
  // prompts were added per set; sets whose files are missing are left out.
  std::map<std::string, int64_t> load(const std::filesystem::path& eval_dir);
  // The sets `text` overlaps (empty when clean).
  std::vector<std::string> match(std::string_view text) const;
  int n() const { return n_; }

 private:
  int n_;
  std::vector<std::string> set_names_;
  std::unordered_map<uint64_t, uint32_t> grams_;  // n-gram hash -> bit set of set indices
};

std::vector<std::string> normalized_words(std::string_view text);

struct LengthStats {
  double instruction_words = 0;  // mean words of instruction + input
  double output_words = 0;       // mean words of the response
};

struct RunReport {
  std::string mode;  // "sit" or "direct"
  int iterations = 0;
  int64_t items = 0, complete = 0;
  // Per iteration (1-based): count of each option among all items (items frozen earlier count as
  // D, as in the paper's table).
  std::vector<std::map<char, int64_t>> options;
  LengthStats before, after;
  PipelineCounts counts;
  int64_t exact_duplicates = 0;  // items whose instruction+input equals an earlier item's
  int64_t near_duplicates = 0;   // the same after normalisation (case, punctuation, spacing)
  bool decontamination_checked = false;
  std::map<std::string, int64_t> eval_prompts;  // per set, prompts indexed
  std::map<std::string, int64_t> contaminated;  // per set, items that overlap it
  std::vector<std::string> contaminated_ids;
  int64_t dropped = 0;  // items left out of the training file by --decontaminate
};

// overlap may be null (no eval sets found).
RunReport build_report(const PipelineResult& result, const PipelineOptions& options,
                       const EvalOverlap* overlap);

// The paper's option distribution (% of all rows) per pass, Alpaca (SIT_SPEC §1.10).
const std::vector<std::map<char, double>>& paper_alpaca_options();

// report.json, report.md and options.png in `dir`.
void write_report(const std::filesystem::path& dir, const RunReport& report,
                  const std::string& settings_markdown);

}  // namespace seqit::seqinstruct

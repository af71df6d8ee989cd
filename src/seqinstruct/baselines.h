// The datasets that go beside the automatic SIT set (SIT_SPEC §1.11, §2):
//  - manual chains: repeat-then-answer, paraphrase-then-answer and translate-then-answer, built
//  from
//    an instruction dataset with fixed intermediate tasks (§2.1, §2.3), the paraphrase or
//    translation written by the generator (or, for translation, read from a parallel dataset);
//  - the token-matched IT baseline (the paper's "same total output tokens" ablation): IT items
//  taken
//    from a pool until their responses hold as many tokens as the SIT set's, so that a difference
//    between the arms cannot come from training on more response tokens.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "data/record.h"
#include "llm/backend.h"
#include "seqinstruct/pipeline.h"

namespace seqit::seqinstruct {

enum class ManualKind { repeat, paraphrase, translate };
// "repeat", "paraphrase", "translate"; throws seqit::Error otherwise.
ManualKind parse_manual_kind(const std::string& name);

struct ManualOptions {
  ManualKind kind = ManualKind::repeat;
  // translate: the languages the inputs are put into, in disjoint blocks of the chosen items
  // (§2.1: ru, es, zh, de). Names as the generator should read them ("German").
  std::vector<std::string> languages;
  // The share of items with a non-empty input that become chains; the rest stay plain IT rows.
  double share = 1.0;
  uint64_t seed = 42;
  std::string model;
  llm::SamplingParams params{0.0, 1.0, 0, 512, {}, std::nullopt, 1};  // greedy
  int max_in_flight = 64;
  std::function<bool()> interrupted;
};

struct ManualReport {
  int64_t items = 0;
  int64_t chains = 0;    // rows turned into chains
  int64_t plain = 0;     // rows kept as they were (no input, or outside the share)
  int64_t no_input = 0;  // of the plain rows, those without an input
  int64_t requests = 0, cached = 0;
  std::map<std::string, int64_t> per_language;
};

// Builds the chain rows (and keeps the others) in source order. The generator is asked only for
// paraphrases and translations that no `parallel` item provides; its answers are appended to
// `trace_path` (JSONL, resumable: a rerun asks only what is missing). `parallel` (translate only)
// maps a language to items in the same order as `items`: the input in that language.
std::vector<data::Instruction> build_manual(
    llm::Backend* backend, const std::vector<SourceItem>& items,
    const std::map<std::string, std::vector<SourceItem>>& parallel,
    const std::filesystem::path& trace_path, const ManualOptions& options, ManualReport* report);

// The chain texts (exposed for tests): "First repeat the input below, then <instruction>", ...
std::string chain_instruction(ManualKind kind, const std::string& instruction);
std::string chain_output(ManualKind kind, const std::string& intermediate,
                         const std::string& output);

struct TokenMatchReport {
  int64_t target_tokens = 0;  // the SIT set's response tokens
  int64_t tokens = 0;         // the selected IT items' response tokens
  int64_t items = 0, pool = 0;
  double deviation() const {
    return target_tokens ? static_cast<double>(tokens - target_tokens) / target_tokens : 0.0;
  }
};

// Picks IT items from `pool`, in pool order, whose response tokens add up to `target_tokens` within
// `tolerance` (a fraction): an item is taken while it keeps the total under the upper bound, and
// the pick stops once the total reaches the lower bound. Throws seqit::Error naming the shortfall
// when the pool cannot reach it.
std::vector<data::Instruction> token_matched(const std::vector<data::Instruction>& pool,
                                             int64_t target_tokens, double tolerance,
                                             const std::function<int64_t(std::string_view)>& count,
                                             TokenMatchReport* report);

}  // namespace seqit::seqinstruct

// The study's held-out evaluation: a trained model answers the synthetic world's evaluation chains
// (greedy, through llm::Backend), and synth's grader scores each answer step by step.
//
// Results go to a JSONL file, one graded item per line, as they arrive (a rerun after a kill asks
// only for the items not there yet); the returned grades are in item order.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "llm/backend.h"
#include "synth/grade.h"
#include "synth/split.h"

namespace seqit::study {

struct WorldEvalOptions {
  int max_tokens = 128;  // per answer
  int max_in_flight = 32;
  std::function<bool()> interrupted;
  std::function<void(int64_t done, int64_t total)> progress;
};

// The user turn an item is asked with: the instruction and the input joined as training joins them
// (data::user_prompt: instruction + " " + input).
std::string eval_prompt(const synth::Item& item);

// Asks and grades every item (resuming `results`); throws seqit::Error on a backend failure (the
// results written so far stay) or when interrupted.
std::vector<synth::Grade> evaluate_world(llm::Backend& backend,
                                         const std::vector<synth::Item>& items,
                                         const std::filesystem::path& results,
                                         const WorldEvalOptions& options = {});

// The grades of `items` from a results file evaluate_world wrote (each stored response graded
// again: grading is exact and cheap). Throws seqit::Error naming the file when an item is missing.
std::vector<synth::Grade> read_grades(const std::vector<synth::Item>& items,
                                      const std::filesystem::path& results);

// The summary per chain length (1..5) and over all items.
struct WorldScores {
  std::map<int, synth::GradeSummary> by_length;
  synth::GradeSummary all;
};
WorldScores score_by_length(const std::vector<synth::Item>& items,
                            const std::vector<synth::Grade>& grades);

}  // namespace seqit::study

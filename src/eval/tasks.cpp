#include "eval/tasks.h"

#include <fmt/format.h>

#include <algorithm>

#include "util/error.h"

namespace seqit::eval {
namespace {

struct TaskEntry {
  const char* name;
  const char* summary;
  std::unique_ptr<Task> (*make)(const TaskOptions&);
  bool generation;  // a generation task (in the quick suite)
};

const std::vector<TaskEntry>& entries() {
  static const std::vector<TaskEntry> list = {
      {"gsm8k", "GSM8K, 8-shot chain of thought; exact match, strict and flexible extraction",
       make_gsm8k, true},
      {"mgsm_cot_en",
       "MGSM, 8-shot, think in English then answer; exact match per language and their average",
       make_mgsm_cot_en, true},
      {"mgsm_trans_cot",
       "MGSM, 8-shot, translate into English, think, answer; per language and their average",
       make_mgsm_trans_cot, true},
      {"bbh", "BIG-Bench Hard, 3-shot chain of thought; exact match per task and the average",
       make_bbh, true},
      {"mmlu", "MMLU, 5-shot, log-likelihood of ' A'..' D'; accuracy per subject, micro, macro",
       make_mmlu, false},
      {"arc_challenge", "ARC-Challenge, 25-shot, log-likelihood of each choice; acc, acc_norm",
       make_arc_challenge, false},
      {"sifo",
       "SIFo sequential instructions; sample accuracy, instruction accuracy, following depth "
       "per category",
       make_sifo, true},
      {"chain_of_instructions",
       "Chain-of-Instructions (2 and 3 chained tasks); ROUGE-L of the final output and per step",
       make_chain_of_instructions, true},
      {"xquad",
       "XQuAD translate-then-answer; follow rate, accuracy, accuracy with follow per language",
       make_xquad, true},
      {"humaneval", "HumanEval, n samples at T=0.8 run in the sandbox; pass@1 and pass@10",
       make_humaneval, false},
  };
  return list;
}

const TaskEntry& entry(const std::string& name) {
  for (const auto& e : entries())
    if (name == e.name) return e;
  std::string known;
  for (const auto& e : entries()) known += std::string(known.empty() ? "" : ", ") + e.name;
  throw Error(fmt::format("unknown task '{}'; known tasks: {}", name, known));
}

}  // namespace

bool group_selected(const TaskOptions& options, const std::string& group) {
  return options.groups.empty() ||
         std::find(options.groups.begin(), options.groups.end(), group) != options.groups.end();
}

std::unique_ptr<Task> make_task(const std::string& name, const TaskOptions& options) {
  return entry(name).make(options);
}

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& e : entries()) out.push_back(e.name);
    return out;
  }();
  return names;
}

std::string task_summary(const std::string& name) {
  return entry(name).summary;
}

std::vector<std::string> suite_tasks(const std::string& suite) {
  std::vector<std::string> out;
  if (suite == "quick") {
    for (const auto& e : entries())
      if (e.generation) out.push_back(e.name);
  } else if (suite == "sequential") {
    out = {"sifo", "chain_of_instructions", "xquad"};
  } else if (suite == "paper") {
    out = {"gsm8k",         "mgsm_cot_en", "mgsm_trans_cot", "bbh",  "mmlu",
           "arc_challenge", "humaneval",   "xquad",          "sifo", "chain_of_instructions"};
  } else {
    throw Error(fmt::format("unknown suite '{}'; suites: quick, sequential, paper", suite));
  }
  return out;
}

int64_t suite_limit(const std::string& suite) {
  return suite == "quick" ? 5 : -1;
}

}  // namespace seqit::eval

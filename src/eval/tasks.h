// The evaluation tasks (SIT_SPEC §5 for their settings; docs/eval.md for prompts and metrics) and
// the named suites. Each factory loads the task's data from options.data_dir and throws
// seqit::Error naming the file, line and field when it is malformed.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "eval/task.h"

namespace seqit::eval {

// gsm8k, mgsm_cot_en, mgsm_trans_cot, bbh, mmlu, arc_challenge, sifo, chain_of_instructions, xquad,
// humaneval (more
// as they are added); throws for an unknown name with the list of known ones.
std::unique_ptr<Task> make_task(const std::string& name, const TaskOptions& options);
const std::vector<std::string>& task_names();
// One-line description of a task, for --help.
std::string task_summary(const std::string& name);

// Suites: `quick` (a few items of each generation task), `sequential` (SIFo + CoI + XQuAD: the
// tasks that exist of them), `paper` (the paper's set, those that exist). Each entry is a task
// name; the suite's default limit per task is given by suite_limit (-1: all).
std::vector<std::string> suite_tasks(const std::string& suite);
int64_t suite_limit(const std::string& suite);

// Factories (one per task file).
std::unique_ptr<Task> make_gsm8k(const TaskOptions& options);
std::unique_ptr<Task> make_mgsm_cot_en(const TaskOptions& options);
std::unique_ptr<Task> make_mgsm_trans_cot(const TaskOptions& options);
std::unique_ptr<Task> make_mmlu(const TaskOptions& options);
std::unique_ptr<Task> make_arc_challenge(const TaskOptions& options);
std::unique_ptr<Task> make_sifo(const TaskOptions& options);
std::unique_ptr<Task> make_bbh(const TaskOptions& options);
std::unique_ptr<Task> make_chain_of_instructions(const TaskOptions& options);
std::unique_ptr<Task> make_xquad(const TaskOptions& options);
std::unique_ptr<Task> make_humaneval(const TaskOptions& options);

// SIFo's reply reading (sifo.cpp), for the tests: "Answer k: <text>" markers at line starts, the
// text running to the next marker; and whether one step's answer matches the gold one.
std::map<int, std::string> parse_sifo_answers(std::string_view reply);
bool sifo_answer_matches(std::string_view category, std::string_view answer, std::string_view gold);

// BBH (bbh.cpp): the extracted answer against the target, trimmed, a final '.' dropped; a target
// "(B)" also accepts "B" and "(B) <option text>".
bool bbh_answer_matches(std::string_view answer, std::string_view target);
// Chain-of-Instructions (chain_of_instructions.cpp): the steps of a marked output,
// "Task 1 output and task 2 input: A  Task 2 output: B" -> {1: "A", 2: "B"}.
std::map<int, std::string> split_coi_steps(std::string_view text);

// XQuAD (xquad.cpp): the reading of one reply against the English gold answers.
struct XquadReading {
  bool followed = false;   // a cue (result:, answer:, answer is, result is) was found
  bool correct = false;    // non-empty prediction contained in a gold answer or containing one
  std::string prediction;  // lower-cased, after the first cue (or the whole reply)
};
XquadReading read_xquad_reply(std::string_view reply, const std::vector<std::string>& golds);
// HumanEval (humaneval_task.cpp): the completion to append to the prompt, from a chat reply (its
// first fenced block, else the whole reply; a full definition of the entry point starts on a new
// line).
std::string humaneval_completion_from_chat(std::string_view reply, std::string_view entry_point);

}  // namespace seqit::eval

// HumanEval (Chen et al., 2021): the problem records and the program that tests a completion.
// The data is OpenAI's HumanEval.jsonl(.gz): one JSON object per line with task_id, prompt (the
// function's signature and docstring), canonical_solution, test (a `check(candidate)` function) and
// entry_point (the function's name). A completion continues the prompt; it passes when the program
// built here exits with status 0 in the sandbox (sandbox.h).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace seqit::eval {

struct HumanEvalProblem {
  std::string task_id;
  std::string prompt;
  std::string canonical_solution;
  std::string test;
  std::string entry_point;
};

// Reads every problem from a .jsonl file, gzip-compressed or not. Throws seqit::Error naming the
// file, line and field for an unreadable file, a line that is not JSON or a missing/non-string
// field.
std::vector<HumanEvalProblem> read_humaneval(const std::filesystem::path& path);

// The program that checks `completion`, as the reference harness builds it:
// prompt + completion + "\n" + test + "\n" + "check(<entry_point>)\n".
std::string humaneval_program(const HumanEvalProblem& problem, std::string_view completion);

}  // namespace seqit::eval

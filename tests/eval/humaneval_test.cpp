// HumanEval records and programs, run in the sandbox: canonical solutions pass, empty ones fail.
#include "eval/humaneval.h"

#include <gtest/gtest.h>

#include "eval/sandbox.h"
#include "testing.h"
#include "util/error.h"

namespace seqit::eval {
namespace {

std::vector<HumanEvalProblem> load() {
  return read_humaneval(testing::shared_data("eval/humaneval/HumanEval.jsonl.gz"));
}

TEST(HumanEval, ReadsTheGzippedData) {
  const auto problems = load();
  ASSERT_EQ(problems.size(), 164u);
  EXPECT_EQ(problems[0].task_id, "HumanEval/0");
  EXPECT_EQ(problems[0].entry_point, "has_close_elements");
  EXPECT_EQ(problems[163].task_id, "HumanEval/163");
}

TEST(HumanEval, ProgramIsPromptCompletionTestAndCheck) {
  HumanEvalProblem p;
  p.prompt = "def f(x):\n";
  p.test = "def check(candidate):\n    assert candidate(1) == 2\n";
  p.entry_point = "f";
  EXPECT_EQ(humaneval_program(p, "    return x + 1\n"),
            "def f(x):\n    return x + 1\n\ndef check(candidate):\n    assert candidate(1) == "
            "2\n\ncheck(f)\n");
}

TEST(HumanEval, CanonicalSolutionsPassAndEmptyCompletionsFail) {
  testing::allow_seconds(120);
  const auto problems = load();
  for (size_t i = 0; i < 10; ++i) {
    const auto r =
        run_python_sandboxed(humaneval_program(problems[i], problems[i].canonical_solution));
    EXPECT_TRUE(r.passed()) << problems[i].task_id << ": " << r.reason << "\n" << r.error_output;
  }
  for (size_t i = 0; i < 3; ++i) {
    const auto r = run_python_sandboxed(humaneval_program(problems[i], ""));
    EXPECT_EQ(r.outcome, SandboxOutcome::kFailed) << problems[i].task_id << ": " << r.reason;
  }
  // A wrong completion fails too.
  const auto wrong = run_python_sandboxed(humaneval_program(problems[0], "    return False\n"));
  EXPECT_EQ(wrong.outcome, SandboxOutcome::kFailed) << wrong.reason;
}

TEST(HumanEval, BadRecordsNameFileLineAndField) {
  testing::TempDir dir;
  testing::spit(
      dir / "bad.jsonl",
      "{\"task_id\": \"t\", \"prompt\": \"p\", \"canonical_solution\": \"c\", \"test\": \"t\", "
      "\"entry_point\": \"f\"}\n\n{\"task_id\": \"t2\", \"prompt\": 3}\n");
  try {
    read_humaneval(dir / "bad.jsonl");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().line, 3);
    EXPECT_EQ(e.context().field, "prompt");
    EXPECT_NE(e.context().file.find("bad.jsonl"), std::string::npos);
  }
  testing::spit(dir / "broken.jsonl", "{not json\n");
  EXPECT_THROW(read_humaneval(dir / "broken.jsonl"), Error);
  EXPECT_THROW(read_humaneval(dir / "missing.jsonl"), Error);
}

}  // namespace
}  // namespace seqit::eval

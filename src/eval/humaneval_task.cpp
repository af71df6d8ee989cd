// HumanEval pass@k (SIT_SPEC §5): n samples per problem (default 20) at temperature 0.8, top-p
// 0.95, 512 new tokens, each its own request with its own seed (so any backend, with or without
// `n`, gives the same samples, and the cache keeps each). Chat: the user message is "Complete the
// following python function." and the prompt, and the code is read back from the reply (the first
// fenced block, else the whole reply); without chat the prompt itself is completed, stopping at
// "\nclass ", "\ndef ", "\n# ", "\nif ", "\nprint". Every sample runs in the sandbox
// (eval/sandbox.h) as prompt + completion + test + check(entry_point), several at a time; pass@1
// and pass@10 are the unbiased estimator (pass@10 only when n >= 10).
#include <fmt/format.h>

#include <algorithm>
#include <future>
#include <thread>

#include "eval/humaneval.h"
#include "eval/metrics.h"
#include "eval/prompting.h"
#include "eval/sandbox.h"
#include "eval/task_data.h"
#include "eval/tasks.h"
#include "util/error.h"

namespace seqit::eval {
namespace {
namespace fs = std::filesystem;
using namespace detail;

class HumanEval final : public Task {
 public:
  explicit HumanEval(const TaskOptions& o) : o_(o) {
    const fs::path dir = task_dir(o, "humaneval");
    problems_ = read_humaneval(dir / "HumanEval.jsonl.gz");
    if (o.limit >= 0 && static_cast<int64_t>(problems_.size()) > o.limit) problems_.resize(o.limit);
    samples_ = o.samples > 0 ? o.samples : 20;
    temperature_ = o.temperature >= 0 ? o.temperature : 0.8;
  }

  std::string name() const override { return "humaneval"; }
  std::map<std::string, std::string> settings() const override {
    return {
        {"shots", "0"},
        {"prompt", o_.chat
                       ? prompt_layout(o_) + "; 'Complete the following python function.' and the "
                                             "prompt; the code is the reply's first fenced block"
                       : prompt_layout(o_) + "; the prompt is completed as it is"},
        {"sampling", fmt::format("{} samples per problem, temperature {}, top-p 0.95, max {} "
                                 "new tokens, one request (and seed) per sample{}",
                                 samples_, temperature_, params().max_tokens,
                                 o_.chat ? "" : "; stops \\nclass, \\ndef, \\n#, \\nif, \\nprint")},
        {"execution",
         "the sandbox (eval/sandbox.h): 3 s wall clock, no network, read-only "
         "file system"},
        {"metric", "pass@1, pass@10: the unbiased estimator 1 - C(n-c, k)/C(n, k)"}};
  }
  std::vector<MetricSpec> main_metrics() const override {
    return {{"pass@1", "pass@1"}, {"pass@10", "pass@10"}};
  }
  size_t size() const override { return problems_.size(); }
  std::string item_id(size_t i) const override { return problems_[i].task_id; }

  std::vector<llm::Request> requests(size_t i) const override {
    const HumanEvalProblem& p = problems_[i];
    std::vector<llm::Request> out;
    for (int k = 0; k < samples_; ++k) {
      llm::Request r;
      r.model = o_.model;
      r.params = params();
      r.params.seed = request_seed(o_.seed, name(), p.task_id, static_cast<size_t>(k));
      if (o_.chat) {
        r.kind = llm::RequestKind::chat;
        r.params.stop.clear();
        r.messages = {{"user", "Complete the following python function.\n\n\n" + p.prompt}};
      } else {
        r.kind = llm::RequestKind::completion;
        r.prompt = p.prompt;
      }
      out.push_back(std::move(r));
    }
    return out;
  }

  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const HumanEvalProblem& p = problems_[i];
    std::vector<std::string> completions;
    for (const auto& response : responses)
      completions.push_back(o_.chat ? humaneval_completion_from_chat(response.text(), p.entry_point)
                                    : response.text());
    // The programs are independent processes: run a few at a time.
    SandboxLimits limits;
    limits.wall_seconds = 3;
    limits.cpu_seconds = 3;
    const size_t workers = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
    std::vector<char> passed(completions.size(), 0);
    std::vector<std::string> reasons(completions.size());
    for (size_t start = 0; start < completions.size(); start += workers) {
      std::vector<std::future<SandboxResult>> running;
      for (size_t k = start; k < std::min(completions.size(), start + workers); ++k)
        running.push_back(std::async(std::launch::async, [&, k] {
          return run_python_sandboxed(humaneval_program(p, completions[k]), limits);
        }));
      for (size_t k = 0; k < running.size(); ++k) {
        const SandboxResult result = running[k].get();
        passed[start + k] = result.passed();
        reasons[start + k] = result.passed() ? "passed" : result.reason;
      }
    }
    const int64_t n = static_cast<int64_t>(completions.size());
    const int64_t c = std::count(passed.begin(), passed.end(), 1);
    ItemResult r;
    r.scores["pass@1"] = pass_at_k(n, c, 1);
    if (n >= 10) r.scores["pass@10"] = pass_at_k(n, c, 10);
    r.scores["samples_passed"] = static_cast<double>(c) / static_cast<double>(n);
    r.answer_found = std::any_of(completions.begin(), completions.end(),
                                 [](const std::string& s) { return !s.empty(); });
    r.fields["passed"] = fmt::format("{} of {}", c, n);
    r.fields["first_outcome"] = reasons.empty() ? "" : reasons.front();
    r.replies = completions;
    return r;
  }

 private:
  llm::SamplingParams params() const {
    llm::SamplingParams s;
    s.temperature = temperature_;
    s.top_p = 0.95;
    s.max_tokens = o_.max_tokens > 0 ? o_.max_tokens : 512;
    s.stop = {"\nclass ", "\ndef ", "\n# ", "\nif ", "\nprint"};
    return s;
  }
  TaskOptions o_;
  std::vector<HumanEvalProblem> problems_;
  int samples_ = 20;
  double temperature_ = 0.8;
};

}  // namespace

std::string humaneval_completion_from_chat(std::string_view reply, std::string_view entry_point) {
  std::string code(reply);
  const size_t fence = reply.find("```");
  if (fence != std::string_view::npos) {
    const size_t line = reply.find('\n', fence);
    const size_t close = line == std::string_view::npos ? line : reply.find("```", line + 1);
    if (line != std::string_view::npos)
      code = std::string(reply.substr(
          line + 1, close == std::string_view::npos ? std::string_view::npos : close - line - 1));
  }
  // A whole function (or module) is appended after the prompt on a new line: its definition
  // replaces the prompt's docstring-only one. A body alone continues the prompt as it is.
  if (code.find("def " + std::string(entry_point)) != std::string::npos ||
      code.starts_with("import ") || code.starts_with("from "))
    return "\n" + code;
  return code;
}

std::unique_ptr<Task> make_humaneval(const TaskOptions& options) {
  return std::make_unique<HumanEval>(options);
}

}  // namespace seqit::eval

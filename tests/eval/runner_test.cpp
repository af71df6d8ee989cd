// The runner against a scripted backend (replies from a worker thread, newest first, so out of
// order): many requests in flight, one results line per item, resume after an interruption with
// nothing asked or written twice and an identical report, backend errors, config mismatches, and
// `compare` on two runs.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "eval/report.h"
#include "eval/runner.h"
#include "eval/tasks.h"
#include "scripted_backend.h"
#include "testing.h"
#include "util/error.h"

namespace seqit::testing {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

const int kItems = 40;

// A GSM8K of kItems problems whose gold is i; the script answers item i right when i is even.
void write_data(const fs::path& root) {
  fs::create_directories(root / "gsm8k");
  spit(root / "gsm8k" / "train.jsonl",
       json({{"question", "One?"}, {"answer", "1\n#### 1"}}).dump() + "\n");
  std::string test;
  for (int i = 0; i < kItems; ++i)
    test += json({{"question", fmt::format("Problem {}?", i)},
                  {"answer", fmt::format("x\n#### {}", i)}})
                .dump() +
            "\n";
  spit(root / "gsm8k" / "test.jsonl", test);
}

int problem_of(const llm::Request& r) {
  const std::string& text = r.messages.back().content;
  const size_t p = text.rfind("Problem ");
  return std::stoi(text.substr(p + 8));
}

llm::Result<llm::Response> answer(const llm::Request& r) {
  const int i = problem_of(r);
  return ScriptedBackend::reply(i % 2 == 0 ? fmt::format("The answer is {}.", i)
                                           : fmt::format("Maybe {}.", i + 1));
}

std::vector<json> lines(const fs::path& path) {
  std::vector<json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

struct Fixture {
  TempDir tmp;
  eval::TaskOptions options;
  std::unique_ptr<eval::Task> task;
  Fixture() {
    write_data(tmp / "data");
    options.data_dir = (tmp / "data").string();
    options.shots = 1;
    task = eval::make_task("gsm8k", options);
  }
  eval::RunOptions run_options() const {
    eval::RunOptions r;
    r.max_in_flight = 8;
    r.config = "test-config";
    return r;
  }
  void report(const eval::RunResult& result, const fs::path& dir) const {
    eval::write_report(dir, eval::build_report(*task, result.items, task->size(),
                                               eval::report_settings(*task, options, "scripted")));
  }
};

TEST(EvalRunner, ScoresEveryItemOnceWithManyInFlight) {
  Fixture f;
  // A slow reply, so that the queue shows how many requests the runner keeps in flight.
  ScriptedBackend backend([](const llm::Request& r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return answer(r);
  });
  const fs::path results = f.tmp / "run" / "results.jsonl";
  const auto result = eval::run_task(backend, *f.task, results, f.run_options());
  EXPECT_TRUE(result.complete);
  ASSERT_EQ(result.items.size(), static_cast<size_t>(kItems));
  EXPECT_EQ(result.counts.requests, kItems);
  EXPECT_GE(backend.max_outstanding(), 4u);
  EXPECT_LE(backend.max_outstanding(), 8u);
  for (int i = 0; i < kItems; ++i) {
    EXPECT_EQ(result.items[i].id, std::to_string(i));  // in task order, whatever the reply order
    EXPECT_EQ(result.items[i].scores.at("strict_em"), i % 2 == 0 ? 1 : 0) << i;
  }
  const auto rows = lines(results);
  ASSERT_EQ(rows.size(), static_cast<size_t>(kItems) + 1);
  EXPECT_EQ(rows[0].at("id"), "#config");
  EXPECT_EQ(rows[0].at("task"), "gsm8k");
  std::set<std::string> ids;
  for (size_t k = 1; k < rows.size(); ++k) ids.insert(rows[k].at("id").get<std::string>());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kItems));
  f.report(result, f.tmp / "run");
  const json report = json::parse(slurp(f.tmp / "run" / "report.json"));
  EXPECT_DOUBLE_EQ(report.at("metrics").at("strict_em").at("mean").get<double>(), 0.5);
  // Odd items say "Maybe i+1.": a number, never the right one.
  EXPECT_DOUBLE_EQ(report.at("metrics").at("flexible_em").at("mean").get<double>(), 0.5);
  EXPECT_EQ(report.at("settings").at("chat template"), "on (exemplars in one user turn)");
  EXPECT_EQ(report.at("settings").at("backend"), "scripted");
  const std::string md = slurp(f.tmp / "run" / "report.md");
  EXPECT_NE(md.find("- shots: 1"), std::string::npos) << md;
  EXPECT_NE(md.find("| exact match (strict) | 50.0 |"), std::string::npos) << md;
}

TEST(EvalRunner, InterruptedRunResumesWithNothingLostOrRepeated) {
  Fixture f;
  // Straight run, for the reference report.
  {
    ScriptedBackend backend(answer);
    const auto result =
        eval::run_task(backend, *f.task, f.tmp / "straight" / "results.jsonl", f.run_options());
    f.report(result, f.tmp / "straight");
  }
  // Stopped after 13 replies (items in flight then finish and are written).
  const fs::path results = f.tmp / "resumed" / "results.jsonl";
  size_t first_requests = 0;
  {
    ScriptedBackend backend(answer);
    auto o = f.run_options();
    std::atomic<int64_t> replies{0};
    o.progress = [&](const eval::RunCounts& c) { replies = c.requests; };
    o.interrupted = [&] { return replies >= 13; };
    const auto result = eval::run_task(backend, *f.task, results, o);
    EXPECT_FALSE(result.complete);
    first_requests = backend.requests().size();
    EXPECT_GE(result.items.size(), 13u);
    EXPECT_LT(result.items.size(), static_cast<size_t>(kItems));
    EXPECT_EQ(result.items.size(), first_requests);  // every reply received was written
  }
  const size_t written = lines(results).size() - 1;
  // The rerun asks only for the rest.
  ScriptedBackend backend(answer);
  const auto result = eval::run_task(backend, *f.task, results, f.run_options());
  EXPECT_TRUE(result.complete);
  EXPECT_EQ(result.counts.resumed, static_cast<int64_t>(written));
  std::set<int> asked;
  for (const auto& r : backend.requests()) asked.insert(problem_of(r));
  EXPECT_EQ(backend.requests().size(), kItems - written);
  EXPECT_EQ(asked.size(), kItems - written);  // none twice
  EXPECT_EQ(first_requests + backend.requests().size(), static_cast<size_t>(kItems));
  EXPECT_EQ(lines(results).size(), static_cast<size_t>(kItems) + 1);
  f.report(result, f.tmp / "resumed");
  EXPECT_EQ(slurp(f.tmp / "resumed" / "report.json"), slurp(f.tmp / "straight" / "report.json"));
  EXPECT_EQ(slurp(f.tmp / "resumed" / "report.md"), slurp(f.tmp / "straight" / "report.md"));
  // A third run asks nothing.
  ScriptedBackend idle(answer);
  EXPECT_TRUE(eval::run_task(idle, *f.task, results, f.run_options()).complete);
  EXPECT_TRUE(idle.requests().empty());
}

TEST(EvalRunner, TornLastLineIsDroppedAndItsItemAskedAgain) {
  Fixture f;
  const fs::path results = f.tmp / "results.jsonl";
  {
    ScriptedBackend backend(answer);
    eval::run_task(backend, *f.task, results, f.run_options());
  }
  // Cut the file in the middle of its last line, as a kill -9 during a write would.
  std::string text = slurp(results);
  text.resize(text.size() - 10);
  spit(results, text);
  ScriptedBackend backend(answer);
  const auto result = eval::run_task(backend, *f.task, results, f.run_options());
  EXPECT_TRUE(result.complete);
  EXPECT_EQ(backend.requests().size(), 1u);
  EXPECT_EQ(lines(results).size(), static_cast<size_t>(kItems) + 1);
}

TEST(EvalRunner, BackendErrorLeavesTheItemForARerun) {
  Fixture f;
  const fs::path results = f.tmp / "results.jsonl";
  ScriptedBackend failing([](const llm::Request& r) -> llm::Result<llm::Response> {
    if (problem_of(r) == 7) return llm::LlmError{llm::ErrorKind::server, "boom", 500, 3, "x"};
    return answer(r);
  });
  auto o = f.run_options();
  o.stop_on_error = false;
  const auto partial = eval::run_task(failing, *f.task, results, o);
  EXPECT_FALSE(partial.complete);
  EXPECT_EQ(partial.counts.failed, 1);
  EXPECT_EQ(partial.items.size(), static_cast<size_t>(kItems) - 1);
  o.stop_on_error = true;
  try {
    eval::run_task(failing, *f.task, results, o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("item '7'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("boom"), std::string::npos) << e.what();
  }
  ScriptedBackend backend(answer);
  EXPECT_TRUE(eval::run_task(backend, *f.task, results, o).complete);
  ASSERT_EQ(backend.requests().size(), 1u);
  EXPECT_EQ(problem_of(backend.requests()[0]), 7);
}

TEST(EvalRunner, AReplyThatCannotBeScoredFailsItsItemWithoutLosingTheRest) {
  eval::TaskOptions o;
  o.data_dir = shared_data("eval").string();
  o.limit = 3;
  o.shots = 0;
  o.groups = {"anatomy"};
  const auto task = eval::make_task("mmlu", o);
  // The second question's reply scores two continuations instead of four.
  ScriptedBackend backend([](const llm::Request& r) -> llm::Result<llm::Response> {
    llm::Response response;
    response.logprobs = {-1, -2, -3, -4};
    if (r.prompt.find("dished face") != std::string::npos) response.logprobs.resize(2);
    return response;
  });
  TempDir tmp;
  eval::RunOptions ro;
  ro.config = "c";
  try {
    eval::run_task(backend, *task, tmp / "results.jsonl", ro);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("item 'anatomy/1': cannot score the reply"),
              std::string::npos)
        << e.what();
  }
  ro.stop_on_error = false;
  const auto result = eval::run_task(backend, *task, tmp / "results.jsonl", ro);
  EXPECT_FALSE(result.complete);
  EXPECT_EQ(result.items.size(), 2u);
  EXPECT_EQ(result.counts.failed, 1);
}

TEST(EvalRunner, RefusesResultsOfAnotherConfig) {
  Fixture f;
  const fs::path results = f.tmp / "results.jsonl";
  ScriptedBackend backend(answer);
  eval::run_task(backend, *f.task, results, f.run_options());
  const auto before = slurp(results);
  auto o = f.run_options();
  o.config = "other";
  try {
    eval::run_task(backend, *f.task, results, o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("results.jsonl:1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--fresh"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(results), before);
  o.fresh = true;
  EXPECT_TRUE(eval::run_task(backend, *f.task, results, o).complete);
}

TEST(EvalCompare, SideBySideWithPairedIntervalsAndAChart) {
  Fixture f;
  // Run b answers every item right; run a only the even ones.
  ScriptedBackend a(answer);
  ScriptedBackend b([](const llm::Request& r) -> llm::Result<llm::Response> {
    return ScriptedBackend::reply(fmt::format("The answer is {}.", problem_of(r)));
  });
  f.report(eval::run_task(a, *f.task, f.tmp / "a" / "results.jsonl", f.run_options()), f.tmp / "a");
  f.report(eval::run_task(b, *f.task, f.tmp / "b" / "results.jsonl", f.run_options()), f.tmp / "b");
  const std::string md = eval::compare_runs({f.tmp / "a", f.tmp / "b"}, f.tmp / "cmp");
  // b - a = +50 points on every one of the 40 shared items where they differ: the paired CI of a
  // difference that is 1 on half the items and 0 on the rest is about [+35, +65].
  EXPECT_NE(md.find("| exact match (strict) | b | 100.0 | [100.0, 100.0] | +50.0 |"),
            std::string::npos)
      << md;
  const json j = json::parse(slurp(f.tmp / "cmp" / "compare.json"));
  bool found = false;
  for (const auto& row : j.at("rows")) {
    if (row.at("metric") != "strict_em" || row.at("run") != "b") continue;
    found = true;
    EXPECT_EQ(row.at("shared_items"), kItems);
    EXPECT_DOUBLE_EQ(row.at("paired_diff").get<double>(), 0.5);
    EXPECT_GT(row.at("paired_ci95")[0].get<double>(), 0.3);
    EXPECT_LT(row.at("paired_ci95")[1].get<double>(), 0.7);
  }
  EXPECT_TRUE(found);
  EXPECT_GT(fs::file_size(f.tmp / "cmp" / "compare.png"), 1000u);
  // Runs in folders of the same name are labelled with their parent.
  fs::create_directories(f.tmp / "it");
  fs::create_directories(f.tmp / "sit");
  fs::rename(f.tmp / "a", f.tmp / "it" / "gsm8k");
  fs::rename(f.tmp / "b", f.tmp / "sit" / "gsm8k");
  const std::string same =
      eval::compare_runs({f.tmp / "it" / "gsm8k", f.tmp / "sit" / "gsm8k"}, f.tmp / "cmp2");
  EXPECT_NE(same.find("| exact match (strict) | sit/gsm8k | 100.0 |"), std::string::npos) << same;
  EXPECT_THROW(eval::compare_runs({f.tmp / "a"}, f.tmp / "cmp"), Error);
  EXPECT_THROW(eval::compare_runs({f.tmp / "a", f.tmp / "nothing"}, f.tmp / "cmp"), Error);
}

}  // namespace
}  // namespace seqit::testing

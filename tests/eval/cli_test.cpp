// `seqit eval` end to end against a real `seqit serve` (stories260K on 127.0.0.1, 512-token
// context, so shots and limits are small): the model writes nonsense and scores are near chance,
// but every request goes through HTTP, every item lands in results.jsonl once, and the reports are
// written. A GSM8K run killed with SIGKILL resumes with nothing lost and nothing repeated.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "serve_process.h"
#include "testing.h"

namespace seqit::testing {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<std::string> eval_args(const std::string& task, const std::string& url,
                                   const fs::path& out, std::vector<std::string> extra) {
  std::vector<std::string> args = {seqit_binary().string(),
                                   "eval",
                                   task,
                                   "-o",
                                   out.string(),
                                   "--url",
                                   url,
                                   "--model",
                                   "stories260K",
                                   "--data-dir",
                                   shared_data("eval").string()};
  args.insert(args.end(), extra.begin(), extra.end());
  if (std::find(args.begin(), args.end(), "--concurrency") == args.end()) {
    args.push_back("--concurrency");
    args.push_back("4");
  }
  return args;
}

std::string command_line(const std::vector<std::string>& args) {
  std::string cmd;
  for (const auto& a : args) cmd += shell_quote(a) + " ";
  return cmd;
}

std::vector<json> lines(const fs::path& path) {
  std::vector<json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      out.push_back(json::parse(line));
    } catch (const std::exception&) {
      // a torn last line of a killed run
    }
  }
  return out;
}

// "eval gsm8k: 100 items (37 resumed, 63 requests, ..." from a run's output (no std::regex: GCC 12
// warns inside <regex> in the sanitizer build).
struct Summary {
  bool found = false;
  size_t items = 0, resumed = 0, requests = 0;
};
Summary summary_of(const std::string& output) {
  Summary s;
  // The progress line ("eval gsm8k: 100/100 items ...") starts the same way: try each.
  for (size_t p = output.find("eval gsm8k: "); p != std::string::npos && !s.found;
       p = output.find("eval gsm8k: ", p + 1))
    s.found = std::sscanf(output.c_str() + p, "eval gsm8k: %zu items (%zu resumed, %zu requests",
                          &s.items, &s.resumed, &s.requests) == 3;
  return s;
}

void wait_for_lines(const fs::path& path, size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(path) && lines(path).size() >= n) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Every item once, the config line first, and a report that counts them all.
void check_run(const fs::path& out, size_t items, const std::string& main_metric) {
  const auto rows = lines(out / "results.jsonl");
  ASSERT_EQ(rows.size(), items + 1);
  EXPECT_EQ(rows[0].at("id"), "#config");
  std::set<std::string> ids;
  for (size_t k = 1; k < rows.size(); ++k) {
    EXPECT_TRUE(ids.insert(rows[k].at("id").get<std::string>()).second) << rows[k].dump();
    EXPECT_TRUE(rows[k].at("scores").contains(main_metric)) << rows[k].dump();
  }
  const json report = json::parse(slurp(out / "report.json"));
  EXPECT_EQ(report.at("items").get<size_t>(), items);
  EXPECT_TRUE(report.at("metrics").contains(main_metric));
  const double mean = report.at("metrics").at(main_metric).at("mean");
  EXPECT_GE(mean, 0.0);
  EXPECT_LE(mean, report.at("metrics").at(main_metric).at("ci95")[1].get<double>() + 1e-12);
  EXPECT_NE(report.at("settings").at("backend").get<std::string>().find("http"), std::string::npos);
  EXPECT_TRUE(fs::exists(out / "report.md"));
}

TEST(EvalCli, Gsm8kMmluSifoAgainstServeAndResumeAfterKill9) {
  allow_seconds(300);
  ServeProcess server({"--model", shared_data("models/stories260K/stories260K.bin").string(),
                       "--tokenizer", shared_data("models/stories260K/tok512.bin").string()});
  TempDir tmp;
  const std::string url = server.base_url();
  std::string output;

  // GSM8K, 1-shot (8 exemplars do not fit 512 tokens), as raw completions.
  ASSERT_EQ(run_command(command_line(eval_args(
                            "gsm8k", url, tmp / "gsm8k",
                            {"--limit", "5", "--shots", "1", "--max-tokens", "32", "--no-chat"})),
                        &output),
            0)
      << output;
  check_run(tmp / "gsm8k", 5, "strict_em");
  EXPECT_NE(output.find("eval gsm8k: 5 items (0 resumed, 5 requests"), std::string::npos) << output;
  const json gsm = json::parse(slurp(tmp / "gsm8k" / "report.json"));
  EXPECT_EQ(gsm.at("settings").at("chat template"), "off (raw completion prompts)");
  EXPECT_EQ(gsm.at("settings").at("max tokens"), "32");

  // MMLU by log-likelihood, 1-shot, three subjects.
  ASSERT_EQ(run_command(command_line(eval_args("mmlu", url, tmp / "mmlu",
                                               {"--limit", "5", "--shots", "1", "--groups",
                                                "abstract_algebra,anatomy,astronomy"})),
                        &output),
            0)
      << output;
  check_run(tmp / "mmlu", 15, "acc");
  const json mmlu = json::parse(slurp(tmp / "mmlu" / "report.json"));
  EXPECT_EQ(mmlu.at("groups").size(), 3u);
  EXPECT_TRUE(mmlu.at("macro").contains("acc"));

  // SIFo, chat, five math items (the other categories' contexts do not fit 512 tokens).
  ASSERT_EQ(run_command(
                command_line(eval_args("sifo", url, tmp / "sifo",
                                       {"--limit", "5", "--groups", "math", "--max-tokens", "48"})),
                &output),
            0)
      << output;
  check_run(tmp / "sifo", 5, "following_depth");

  // A suite: one folder per task; items that do not fit 512 tokens even without exemplars fail,
  // and --on-error skip reports the rest and goes on to the next task.
  ASSERT_EQ(
      run_command(command_line(eval_args("suite", url, tmp / "suite",
                                         {"sequential", "--limit", "1", "--max-tokens", "16",
                                          "--max-prompt-chars", "900", "--on-error", "skip"})),
                  &output),
      0)
      << output;
  for (const char* task : {"sifo", "chain_of_instructions", "xquad"})
    EXPECT_TRUE(fs::exists(tmp / "suite" / task / "report.json")) << task << "\n" << output;

  // Compare two runs of the same task (the second a rerun: same items, difference 0).
  ASSERT_EQ(run_command(command_line(eval_args(
                            "gsm8k", url, tmp / "gsm8k_again",
                            {"--limit", "5", "--shots", "1", "--max-tokens", "32", "--no-chat"})),
                        &output),
            0)
      << output;
  // In the sanitizer build, fontconfig (under PLplot's cairo driver) keeps its cache to the end
  // of the process by design: not reported as a leak (no effect in other builds).
  spit(tmp / "lsan.supp", "leak:libfontconfig.so\n");
  ASSERT_EQ(
      run_command(
          "LSAN_OPTIONS=suppressions=" + shell_quote((tmp / "lsan.supp").string()) + " " +
              command_line({seqit_binary().string(), "eval", "compare", (tmp / "gsm8k").string(),
                            (tmp / "gsm8k_again").string(), "-o", (tmp / "cmp").string()}),
          &output),
      0)
      << output;
  EXPECT_NE(output.find("| exact match (strict) | gsm8k_again |"), std::string::npos) << output;
  EXPECT_GT(fs::file_size(tmp / "cmp" / "compare.png"), 1000u);

  // Killed mid-run (0-shot: some of the first 100 problems do not fit 512 tokens with an
  // exemplar): started in the background, SIGKILLed once results.jsonl holds a few items.
  const int kItems = 100;
  const fs::path out = tmp / "killed";
  const auto args = eval_args("gsm8k", url, out,
                              {"--limit", std::to_string(kItems), "--shots", "0", "--max-tokens",
                               "64", "--no-chat", "--concurrency", "2"});
  const pid_t child = start_in_background(args);
  ASSERT_GE(child, 0);
  wait_for_lines(out / "results.jsonl", 4);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  EXPECT_FALSE(fs::exists(out / "report.json"));
  const size_t before = lines(out / "results.jsonl").size() - 1;  // items, without #config
  ASSERT_LT(before, static_cast<size_t>(kItems));

  ASSERT_EQ(run_command(command_line(args), &output), 0) << output;
  check_run(out, kItems, "strict_em");
  // Resumed items are not asked again: the rerun asked only for the rest.
  Summary m = summary_of(output);
  ASSERT_TRUE(m.found) << output;
  EXPECT_EQ(m.items, static_cast<size_t>(kItems));
  EXPECT_EQ(m.resumed, before);
  EXPECT_EQ(m.requests, kItems - before);

  // Ctrl-C: the requests in flight finish and are written, the run stops without a report, and
  // the rerun finishes the rest.
  const fs::path stopped = tmp / "interrupted";
  const auto args2 = eval_args("gsm8k", url, stopped,
                               {"--limit", std::to_string(kItems), "--shots", "0", "--max-tokens",
                                "64", "--no-chat", "--concurrency", "2"});
  const pid_t child2 = start_in_background(args2);
  ASSERT_GE(child2, 0);
  wait_for_lines(stopped / "results.jsonl", 4);
  kill(child2, SIGINT);
  waitpid(child2, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "not a clean stop";
  ASSERT_FALSE(fs::exists(stopped / "report.json")) << "the run finished before Ctrl-C";
  std::string text = slurp(stopped / "results.jsonl");
  EXPECT_EQ(text.back(), '\n');  // no torn line after a clean stop
  const size_t kept = lines(stopped / "results.jsonl").size() - 1;
  ASSERT_EQ(run_command(command_line(args2), &output), 0) << output;
  check_run(stopped, kItems, "strict_em");
  m = summary_of(output);
  ASSERT_TRUE(m.found) << output;
  EXPECT_EQ(m.resumed, kept);
  EXPECT_EQ(m.requests, kItems - kept);
}

// "eval TASK: N items (R resumed, Q requests" of a run's final line.
Summary summary_of_task(const std::string& output, const std::string& task) {
  Summary s;
  const std::string head = "eval " + task + ": ";
  for (size_t p = output.find(head); p != std::string::npos && !s.found;
       p = output.find(head, p + 1))
    s.found = std::sscanf(output.c_str() + p + head.size(), "%zu items (%zu resumed, %zu requests",
                          &s.items, &s.resumed, &s.requests) == 3;
  return s;
}

// The tasks the test above leaves out, and SeqEval with its judge on a second `seqit serve` (a
// tiny random Llama 2: 4,096 positions hold the judge prompts that stories260K's 512 cannot).
TEST(EvalCli, SeqEvalJudgedByASecondServerAndTheOtherTasksThroughServe) {
  allow_seconds(300);
  ServeProcess model({"--model", shared_data("models/stories260K/stories260K.bin").string(),
                      "--tokenizer", shared_data("models/stories260K/tok512.bin").string()});
  ServeProcess judge({"--model",
                      shared_data("models/gguf-fixtures/llama-2-tiny-random.gguf").string(),
                      "--chat-template", "tulu"});
  TempDir tmp;
  const std::string url = model.base_url();
  std::string output;

  // SeqEval, the judge held to each answer format (response_format over HTTP): every verdict
  // parses although the judge's weights are random.
  const auto seqeval = [&](const fs::path& out, const std::string& format) {
    return eval_args("seqeval", url, out,
                     {"--judge-url", judge.base_url(), "--judge-format", format,
                      "--judge-max-tokens", "64", "--limit", "3", "--max-tokens", "32"});
  };
  ASSERT_EQ(run_command(command_line(seqeval(tmp / "seqeval", "constrained")), &output), 0)
      << output;
  check_run(tmp / "seqeval", 3, "following_unparsable");
  EXPECT_EQ(lines(tmp / "seqeval" / "responses.jsonl").size(), 4u);  // #config + 3 responses
  Summary s = summary_of_task(output, "seqeval");
  ASSERT_TRUE(s.found) << output;
  EXPECT_EQ(s.requests, 12u);  // following, quality, both pairwise orders; no retry needed
  json report = json::parse(slurp(tmp / "seqeval" / "report.json"));
  for (const char* k : {"following_unparsable", "quality_unparsable", "pairwise_unparsable"})
    EXPECT_EQ(report.at("metrics").at(k).at("mean").get<double>(), 0.0) << k;
  const double quality = report.at("metrics").at("quality").at("mean");
  EXPECT_GE(quality, 1.0);
  EXPECT_LE(quality, 5.0);
  for (const char* k : {"raw_win_rate", "lc_win_rate", "pairs_judged"})
    EXPECT_TRUE(report.at("aggregates").contains(k)) << k << "\n" << report.dump();
  EXPECT_EQ(report.at("aggregates").at("pairs_judged").get<double>(), 3.0);
  for (size_t k = 1; k < 4; ++k) {
    const json row = lines(tmp / "seqeval" / "results.jsonl").at(k);
    ASSERT_EQ(row.at("replies").size(), 4u) << row.dump();
    EXPECT_NE(row.at("replies")[1].get<std::string>().find("SCORE: "), std::string::npos);
    EXPECT_TRUE(row.at("fields").contains("verdict")) << row.dump();
  }
  // With the judge's log-probabilities: AlpacaEval 2's weighted win rate beside the counted one.
  auto weighted_args = seqeval(tmp / "weighted", "constrained");
  weighted_args.push_back("--judge-logprobs");
  ASSERT_EQ(run_command(command_line(weighted_args), &output), 0) << output;
  report = json::parse(slurp(tmp / "weighted" / "report.json"));
  ASSERT_TRUE(report.at("metrics").contains("preference_weighted")) << report.dump();
  const double weighted = report.at("metrics").at("preference_weighted").at("mean");
  EXPECT_GE(weighted, 0.0);
  EXPECT_LE(weighted, 1.0);
  for (const json& row : lines(tmp / "weighted" / "results.jsonl")) {
    if (row.at("id") != "#config") {
      EXPECT_TRUE(row.at("scores").contains("preference_weighted")) << row.dump();
    }
  }
  // A rerun resumes every item: nothing asked again of either server.
  ASSERT_EQ(run_command(command_line(seqeval(tmp / "seqeval", "constrained")), &output), 0)
      << output;
  s = summary_of_task(output, "seqeval");
  ASSERT_TRUE(s.found) << output;
  EXPECT_EQ(s.resumed, 3u);
  EXPECT_EQ(s.requests, 0u);
  // Free replies of a random judge do not parse: each is asked once more, then counted.
  ASSERT_EQ(run_command(command_line(seqeval(tmp / "free", "free")), &output), 0) << output;
  s = summary_of_task(output, "seqeval");
  ASSERT_TRUE(s.found) << output;
  EXPECT_EQ(s.requests, 24u);
  report = json::parse(slurp(tmp / "free" / "report.json"));
  EXPECT_EQ(report.at("metrics").at("following_unparsable").at("mean").get<double>(), 1.0);
  EXPECT_EQ(report.at("no_answer_rate").get<double>(), 1.0);

  // MGSM (both modes), BBH, ARC and HumanEval through the same server.
  const std::vector<std::string> mgsm = {
      "--groups", "de,en", "--limit", "1", "--max-tokens", "16", "--max-prompt-chars", "900"};
  for (const char* task : {"mgsm_cot_en", "mgsm_trans_cot"}) {
    ASSERT_EQ(run_command(command_line(eval_args(task, url, tmp / task, mgsm)), &output), 0)
        << output;
    check_run(tmp / task, 2, "flexible_em");
    report = json::parse(slurp(tmp / task / "report.json"));
    EXPECT_EQ(report.at("groups").size(), 2u);
    EXPECT_NE(report.at("settings").at("shots").get<std::string>().find("held out"),
              std::string::npos);
  }
  ASSERT_EQ(
      run_command(command_line(eval_args("bbh", url, tmp / "bbh",
                                         {"--groups", "boolean_expressions", "--limit", "2",
                                          "--max-tokens", "16", "--max-prompt-chars", "1000"})),
                  &output),
      0)
      << output;
  check_run(tmp / "bbh", 2, "em");
  ASSERT_EQ(run_command(command_line(eval_args("arc_challenge", url, tmp / "arc",
                                               {"--limit", "3", "--shots", "0"})),
                        &output),
            0)
      << output;
  check_run(tmp / "arc", 3, "acc_norm");
  ASSERT_EQ(
      run_command(command_line(eval_args("humaneval", url, tmp / "humaneval",
                                         {"--limit", "1", "--samples", "2", "--max-tokens", "32"})),
                  &output),
      0)
      << output;
  check_run(tmp / "humaneval", 1, "pass@1");
  const json he = lines(tmp / "humaneval" / "results.jsonl").at(1);
  EXPECT_EQ(he.at("replies").size(), 2u);
  EXPECT_EQ(he.at("fields").at("passed"), "0 of 2");  // stories, not code: run, and failed
}

TEST(EvalCli, HelpAndErrorsNameWhatIsWrong) {
  std::string output;
  ASSERT_EQ(run_command(shell_quote(seqit_binary().string()) + " eval --help", &output), 0);
  for (const char* task :
       {"gsm8k", "mgsm_cot_en", "mgsm_trans_cot", "bbh", "mmlu", "arc_challenge", "humaneval",
        "xquad", "sifo", "chain_of_instructions", "seqeval", "suite", "compare"})
    EXPECT_NE(output.find(task), std::string::npos) << output;
  ASSERT_EQ(run_command(shell_quote(seqit_binary().string()) + " eval gsm8k --help", &output), 0);
  for (const char* option : {"--limit", "--shots", "--chat", "--max-tokens", "--url", "--local"})
    EXPECT_NE(output.find(option), std::string::npos) << output;
  ASSERT_EQ(run_command(shell_quote(seqit_binary().string()) + " eval seqeval --help", &output), 0);
  for (const char* option : {"--judge-url", "--judge-local", "--reference", "--url"})
    EXPECT_NE(output.find(option), std::string::npos) << output;
  TempDir tmp;
  // SeqEval without a judge says what to give.
  EXPECT_NE(run_command(shell_quote(seqit_binary().string()) + " eval seqeval -o " +
                            shell_quote((tmp / "s").string()) + " --url http://127.0.0.1:9",
                        &output),
            0);
  EXPECT_NE(output.find("--judge-url"), std::string::npos) << output;
  EXPECT_NE(run_command(shell_quote(seqit_binary().string()) + " eval gsm8k -o " +
                            shell_quote((tmp / "x").string()) + " --url http://127.0.0.1:9 " +
                            "--data-dir " + shell_quote((tmp / "nodata").string()),
                        &output),
            0);
  EXPECT_NE(output.find("nodata/gsm8k"), std::string::npos) << output;
}

}  // namespace
}  // namespace seqit::testing

namespace seqit::testing {
namespace {

TEST(EvalCli, ShardedOverTwoRanksEveryItemOnceThenAWholeResume) {
  if (const std::string why = mpi_missing(); !why.empty())
    GTEST_SKIP() << "no sharded test here: " << why;
  allow_seconds(120);
  ServeProcess server({"--model", shared_data("models/stories260K/stories260K.bin").string(),
                       "--tokenizer", shared_data("models/stories260K/tok512.bin").string()});
  TempDir tmp;
  const std::string mpirun = mpirun_command(2);
  const std::vector<std::string> extra = {"--limit",      "7",  "--shots",  "1",
                                          "--max-tokens", "16", "--no-chat"};
  std::string output;
  ASSERT_EQ(
      run_command(mpirun + command_line(eval_args("gsm8k", server.base_url(), tmp / "g", extra)),
                  &output),
      0)
      << output;
  check_run(tmp / "g", 7, "strict_em");  // 7 items from 2 ranks: each once, the report whole
  EXPECT_FALSE(fs::exists(tmp / "g" / "results.jsonl.part-0"));
  EXPECT_FALSE(fs::exists(tmp / "g" / "results.jsonl.part-1"));
  EXPECT_NE(output.find("eval gsm8k: 7 items (0 resumed, 7 requests"), std::string::npos) << output;
  // One process finds every item done.
  ASSERT_EQ(
      run_command(command_line(eval_args("gsm8k", server.base_url(), tmp / "g", extra)), &output),
      0)
      << output;
  EXPECT_NE(output.find("eval gsm8k: 7 items (7 resumed, 0 requests"), std::string::npos) << output;
  check_run(tmp / "g", 7, "strict_em");
}

}  // namespace
}  // namespace seqit::testing

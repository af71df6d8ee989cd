// `seqit study --quick` end to end: the report exists and every table cell is recomputed here from
// the per-item results files it names; a second run with the same settings reproduces every file
// bit for bit; a run killed with SIGKILL in the middle of training resumes without redoing
// finished stages and ends exactly where the uninterrupted run ends.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "testing.h"

namespace seqit::testing {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<std::string> study_args(const fs::path& out, const std::string& jobs = "jobs=1") {
  // One thread: ctest runs two tests at once, and OpenMP teams competing for 2 cores spin.
  return {seqit_binary().string(),
          "--quiet",
          "--threads",
          "1",
          "study",
          "--quick",
          "-o",
          out.string(),
          jobs};
}

std::string command(const std::vector<std::string>& args) {
  std::string cmd;
  for (const auto& a : args) cmd += shell_quote(a) + " ";
  return cmd;
}

fs::path only(const fs::path& dir, const std::string& prefix) {
  for (const auto& e : fs::directory_iterator(dir / "stages"))
    if (e.path().filename().string().rfind(prefix, 0) == 0) return e.path();
  return {};
}

// The metrics rows a training stage has written so far (0 before it starts).
int metric_rows(const fs::path& study, const std::string& stage_prefix) {
  const fs::path train = fs::exists(study / "stages") ? only(study, stage_prefix) : fs::path();
  if (train.empty()) return 0;
  std::ifstream m(train / "run/metrics.jsonl");
  int rows = 0;
  for (std::string line; std::getline(m, line);) ++rows;
  return rows;
}

TEST(StudyCli, QuickStudyReportIsTraceableAndReproducible) {
  allow_seconds(300);
  TempDir tmp;
  std::string out;
  ASSERT_EQ(run_command(command(study_args(tmp / "a")), &out), 0) << out;
  for (const char* f : {"report.md", "report.json", "scores.png", "loss.png"})
    EXPECT_TRUE(fs::exists(tmp / "a" / "report" / f)) << f;
  const json report = json::parse(slurp(tmp / "a/report/report.json"));
  EXPECT_FALSE(report["verdict"].get<std::string>().empty());
  // Every cell of the table, recomputed from the results file of its run (one seed: mean = value).
  ASSERT_EQ(report["runs"].size(), 2u);
  for (const json& run : report["runs"]) {
    const std::string arm = run["arm"];
    std::map<int, std::pair<int, int>> right;  // length -> (final correct, items)
    std::map<int, std::pair<int, int>> follow;
    std::ifstream in(tmp / "a" / run["results"].get<std::string>());
    std::string line;
    while (std::getline(in, line)) {
      const json r = json::parse(line);
      const int length = r["length"];
      right[length].first += r["final_correct"].get<bool>();
      right[length].second += 1;
      follow[length].first += r["following"].get<bool>();
      follow[length].second += 1;
    }
    ASSERT_FALSE(right.empty()) << arm;
    for (const auto& [length, counts] : right) {
      const json& cell = report["table"][arm][std::to_string(length)];
      EXPECT_DOUBLE_EQ(cell["final_accuracy"]["mean"].get<double>(),
                       static_cast<double>(counts.first) / counts.second)
          << arm << " " << length;
      EXPECT_DOUBLE_EQ(cell["following"]["mean"].get<double>(),
                       static_cast<double>(follow[length].first) / follow[length].second)
          << arm << " " << length;
    }
  }
  // The same settings again, with both arms trained at once (two jobs of one thread each): the
  // same data, weights, answers and report, bit for bit.
  ASSERT_EQ(run_command(command(study_args(tmp / "b", "jobs=2")), &out), 0) << out;
  EXPECT_TRUE(slurp(tmp / "a/report/report.json") == slurp(tmp / "b/report/report.json"));
  for (const char* prefix : {"data-", "train-it-s1", "train-sit-s1", "eval-it-s1", "eval-sit-s1"}) {
    const fs::path a = only(tmp / "a", prefix), b = only(tmp / "b", prefix);
    ASSERT_FALSE(a.empty()) << prefix;
    EXPECT_EQ(a.filename(), b.filename());
  }
  for (const char* prefix : {"train-it-s1", "train-sit-s1"})
    EXPECT_TRUE(slurp(only(tmp / "a", prefix) / "run/final/model/model.safetensors") ==
                slurp(only(tmp / "b", prefix) / "run/final/model/model.safetensors"))
        << prefix;
  // The same answers (the lines are written in the order the answers complete).
  auto sorted_lines = [](const fs::path& file) {
    std::vector<std::string> lines;
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    std::sort(lines.begin(), lines.end());
    return lines;
  };
  for (const char* prefix : {"eval-it-s1", "eval-sit-s1"}) {
    const auto a = sorted_lines(only(tmp / "a", prefix) / "results.jsonl");
    EXPECT_FALSE(a.empty()) << prefix;
    EXPECT_TRUE(a == sorted_lines(only(tmp / "b", prefix) / "results.jsonl")) << prefix;
  }

  // Killed in the middle of training the SIT arm, then rerun.
  const fs::path c = tmp / "c";
  const auto args = study_args(c);
  const pid_t child = seqit::testing::start_in_background(args);
  ASSERT_GT(child, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool mid_training = false;
  while (!mid_training && std::chrono::steady_clock::now() < deadline) {
    mid_training = metric_rows(c, "train-sit-s1") >= 5;
    if (!mid_training) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(mid_training) << "never saw the SIT arm training";
  ASSERT_TRUE(WIFSIGNALED(status)) << "the study finished before it could be killed";
  EXPECT_FALSE(fs::exists(only(c, "train-sit-s1") / "done.json"));
  const auto data_done = fs::last_write_time(only(c, "data-") / "done.json");
  const auto it_done = fs::last_write_time(only(c, "train-it-s1") / "done.json");
  ASSERT_EQ(run_command(command(args), &out), 0) << out;
  EXPECT_EQ(fs::last_write_time(only(c, "data-") / "done.json"), data_done);
  EXPECT_EQ(fs::last_write_time(only(c, "train-it-s1") / "done.json"), it_done);
  EXPECT_TRUE(slurp(tmp / "a/report/report.json") == slurp(c / "report/report.json"));
  EXPECT_TRUE(slurp(only(tmp / "a", "train-sit-s1") / "run/final/model/model.safetensors") ==
              slurp(only(c, "train-sit-s1") / "run/final/model/model.safetensors"));

  // Both arms killed mid-training while they run at once (jobs=2), then rerun the same way: each
  // resumes from its checkpoint and ends where the uninterrupted run ends.
  const fs::path d = tmp / "d";
  const auto args2 = study_args(d, "jobs=2");
  const pid_t child2 = seqit::testing::start_in_background(args2);
  ASSERT_GT(child2, 0);
  const auto deadline2 = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  bool both = false;
  while (!both && std::chrono::steady_clock::now() < deadline2) {
    both = metric_rows(d, "train-it-s1") >= 5 && metric_rows(d, "train-sit-s1") >= 5;
    if (!both) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(child2, SIGKILL);
  waitpid(child2, &status, 0);
  ASSERT_TRUE(both) << "never saw both arms training at once";
  ASSERT_TRUE(WIFSIGNALED(status)) << "the study finished before it could be killed";
  ASSERT_EQ(run_command(command(args2), &out), 0) << out;
  EXPECT_TRUE(slurp(tmp / "a/report/report.json") == slurp(d / "report/report.json"));
  for (const char* prefix : {"train-it-s1", "train-sit-s1"})
    EXPECT_TRUE(slurp(only(tmp / "a", prefix) / "run/final/model/model.safetensors") ==
                slurp(only(d, prefix) / "run/final/model/model.safetensors"))
        << prefix;

  // status: every stage done, and nothing run (CLI11 would run `study` itself after `status`).
  size_t stages = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(c / "stages")) ++stages;
  ASSERT_EQ(run_command(shell_quote(seqit_binary().string()) + " study status -o " +
                            shell_quote(c.string()),
                        &out),
            0);
  EXPECT_NE(out.find("6 of 6 stages done"), std::string::npos) << out;
  size_t after = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(c / "stages")) ++after;
  EXPECT_EQ(after, stages);
}

TEST(StudyCli, PrintSettingsShowsTheResolvedSettingsAndRunsNothing) {
  TempDir tmp;
  std::vector<std::string> args = study_args(tmp / "p");
  for (const char* o : {"--print-settings", "steps=7", "base=stories260K", "seeds=[4,5]"})
    args.emplace_back(o);
  std::string out;
  ASSERT_EQ(run_command(command(args) + " 2>/dev/null", &out), 0) << out;
  const json s = json::parse(out);
  EXPECT_EQ(s["name"], "quick");
  EXPECT_EQ(s["steps"], 7);
  EXPECT_EQ(s["base"], "stories260K");
  EXPECT_EQ(s["seeds"], json::array({4, 5}));
  EXPECT_FALSE(fs::exists(tmp / "p"));
}

// base=stories260K: every arm continues the pretrained tiny Llama with its own tokenizer (tok512)
// instead of a model from scratch with the world's; the evaluation asks through that tokenizer.
TEST(StudyCli, PretrainedBaseTrainsAndAnswersWithItsOwnTokenizer) {
  allow_seconds(300);
  TempDir tmp;
  const fs::path stories = shared_data("models/stories260K");
  const std::string env = "SEQIT_SHARED_DATA=" + shell_quote(shared_data_dir().string()) + " ";
  std::vector<std::string> args = study_args(tmp / "s");
  for (const char* o : {"base=stories260K", "arms=[it]", "steps=6", "eval_per_length=2",
                        "eval_max_steps=2", "eval_max_tokens=24", "max_len=320"})
    args.emplace_back(o);
  std::string out;
  ASSERT_EQ(run_command(env + command(args), &out), 0) << out;
  const fs::path train = only(tmp / "s", "train-it-s1");
  ASSERT_FALSE(train.empty());
  const std::string recipe = slurp(train / "run/recipe.yaml");
  EXPECT_NE(recipe.find("init: \"pretrained\""), std::string::npos) << recipe;
  EXPECT_NE(recipe.find(fs::absolute(stories / "stories260K.bin").string()), std::string::npos);
  EXPECT_NE(recipe.find(fs::absolute(stories / "tok512.bin").string()), std::string::npos);
  // The answers: 2 chains of each length and 2 gate items, each with its prompt and tasks.
  std::ifstream in(only(tmp / "s", "eval-it-s1") / "results.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const json r = json::parse(line);
    EXPECT_FALSE(r["prompt"].get<std::string>().empty());
    EXPECT_EQ(r["tasks"].size(), r["length"].get<size_t>());
    ++lines;
  }
  EXPECT_EQ(lines, 6);
  EXPECT_NE(slurp(tmp / "s/report/report.md").find("pretrained `stories260K`"), std::string::npos);
  const json report = json::parse(slurp(tmp / "s/report/report.json"));
  int64_t asked = 0;
  for (const auto& [task, counts] : report["gate"]["by_task"].items())
    asked += counts["asked"].get<int64_t>();
  EXPECT_EQ(asked, 2);

  // A base that is not there: an error naming the setting, before any stage runs.
  args = study_args(tmp / "t");
  args.emplace_back("base=" + (tmp / "no-such-model").string());
  EXPECT_NE(run_command(command(args), &out), 0);
  EXPECT_NE(out.find("study setting 'base'"), std::string::npos) << out;
}

}  // namespace
}  // namespace seqit::testing

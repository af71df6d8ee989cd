// `seqit seqinstruct run` end to end against a real `seqit serve` (stories260K on 127.0.0.1): the
// model writes nonsense, so nearly every reply fails to parse, but every stage, file, trace line
// and report number must still be right — and a run killed with SIGKILL must resume with nothing
// lost and nothing written twice; split over 2 ranks (mpirun), every item is written once.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "serve_process.h"
#include "testing.h"

namespace seqit::testing {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

const int kItems = 10;

std::vector<std::string> run_args(const std::string& url, const fs::path& out) {
  return {seqit_binary().string(),
          "seqinstruct",
          "run",
          shared_data("train/alpaca/alpaca_5000.json").string(),
          "-o",
          out.string(),
          "--url",
          url,
          "--model",
          "stories260K",
          "--prompts",
          "compact",
          "--limit",
          std::to_string(kItems),
          "--max-tokens",
          "24",
          "--concurrency",
          "4",
          "--max-attempts",
          "2",
          "--eval-dir",
          shared_data("eval").string()};
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
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

std::vector<fs::path> jsonl_parts_left(const fs::path& out) {
  std::vector<fs::path> parts;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().filename().string().find(".part-") != std::string::npos) parts.push_back(e.path());
  return parts;
}

void check_run(const fs::path& out) {
  // The training file: every item, in source order.
  const json train = json::parse(slurp(out / "sit.json"));
  ASSERT_EQ(train.size(), static_cast<size_t>(kItems));
  const json source = json::parse(slurp(shared_data("train/alpaca/alpaca_5000.json")));
  std::map<std::string, json> trace;
  for (const auto& t : lines(out / "trace.jsonl")) {
    const std::string id = t.at("id");
    EXPECT_TRUE(trace.emplace(id, t).second) << "duplicated trace line " << id;
  }
  ASSERT_TRUE(trace.count("#config"));
  for (int i = 0; i < kItems; ++i) {
    const std::string id = std::to_string(i);
    ASSERT_TRUE(trace.count(id + "@1")) << id;
    const json& first = trace.at(id + "@1");
    EXPECT_EQ(first.at("instruction_before"), source[i].at("instruction"));
    // Every call carries its messages and the raw reply; the last one is the response.
    ASSERT_FALSE(first.at("calls").empty());
    for (const auto& call : first.at("calls")) {
      if (call.contains("skipped")) continue;
      EXPECT_TRUE(call.contains("reply")) << call.dump();
      EXPECT_EQ(call.at("model"), "stories260K");
    }
    // What the training file holds is what the item's last trace line says.
    const std::string last = trace.count(id + "@2") ? id + "@2" : id + "@1";
    EXPECT_EQ(train[i].at("instruction"), trace.at(last).at("instruction"));
    EXPECT_EQ(train[i].at("output"), trace.at(last).at("output"));
  }
  const json report = json::parse(slurp(out / "report.json"));
  EXPECT_EQ(report.at("items"), kItems);
  EXPECT_EQ(report.at("complete"), kItems);
  int64_t per_pass = 0;
  for (const auto& [letter, n] : report.at("options_per_iteration")[0].items())
    per_pass += n.get<int64_t>();
  EXPECT_EQ(per_pass, kItems);
  EXPECT_TRUE(report.at("decontamination").at("checked"));
  EXPECT_GT(report.at("decontamination").at("eval_prompts").at("gsm8k").get<int64_t>(), 1000);
  EXPECT_TRUE(fs::exists(out / "report.md"));
  EXPECT_GT(fs::file_size(out / "options.png"), 1000u);
}

TEST(SeqinstructCli, RunsAgainstServeAndResumesAfterKill9) {
  allow_seconds(240);
  ServeProcess server({"--model", shared_data("models/stories260K/stories260K.bin").string(),
                       "--tokenizer", shared_data("models/stories260K/tok512.bin").string()});
  TempDir tmp;
  std::string output;
  ASSERT_EQ(run_command(command_line(run_args(server.base_url(), tmp / "straight")), &output), 0)
      << output;
  check_run(tmp / "straight");
  EXPECT_NE(output.find("10 of 10 items written"), std::string::npos) << output;

  // Killed mid-run: started in the background, SIGKILLed once the trace has a few items.
  const fs::path out = tmp / "killed";
  const auto args = run_args(server.base_url(), out);
  const pid_t child = seqit::testing::start_in_background(args);
  ASSERT_GT(child, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  size_t seen = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(out / "trace.jsonl")) seen = lines(out / "trace.jsonl").size();
    if (seen >= 4) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  EXPECT_FALSE(fs::exists(out / "sit.json"));
  const size_t before = lines(out / "trace.jsonl").size();

  ASSERT_EQ(run_command(command_line(args), &output), 0) << output;
  check_run(out);
  const json report = json::parse(slurp(out / "report.json"));
  EXPECT_EQ(report.at("requests").at("resumed_item_iterations").get<size_t>(), before - 1);
  // The rerun asked only for the rest; what was answered before the kill came from the cache.
  EXPECT_NE(output.find("10 of 10 items written"), std::string::npos) << output;
}

TEST(SeqinstructCli, ShardedOverTwoRanksWritesEveryItemOnce) {
  if (const std::string why = mpi_missing(); !why.empty())
    GTEST_SKIP() << "no sharded test here: " << why;
  allow_seconds(180);
  ServeProcess server({"--model", shared_data("models/stories260K/stories260K.bin").string(),
                       "--tokenizer", shared_data("models/stories260K/tok512.bin").string()});
  TempDir tmp;
  std::string output;
  const auto args = run_args(server.base_url(), tmp / "two");
  ASSERT_EQ(run_command(mpirun_command(2) + command_line(args), &output), 0) << output;
  check_run(tmp / "two");  // items from both ranks, each trace line once, the report whole
  EXPECT_NE(output.find("10 of 10 items written"), std::string::npos) << output;
  EXPECT_TRUE(jsonl_parts_left(tmp / "two").empty());
  // The requests the ranks sent (summed) are those behind the trace: no item was run twice.
  const size_t at = output.find(" requests (");
  ASSERT_NE(at, std::string::npos) << output;
  const size_t from = output.rfind("; ", at);
  const int64_t sent = std::stoll(output.substr(from + 2, at - from - 2));
  EXPECT_EQ(
      sent,
      json::parse(slurp(tmp / "two" / "report.json")).at("requests").at("answered").get<int64_t>());
  // One process finds every item-iteration done.
  const size_t lines_before = lines(tmp / "two" / "trace.jsonl").size();
  ASSERT_EQ(run_command(command_line(args), &output), 0) << output;
  check_run(tmp / "two");
  const json report = json::parse(slurp(tmp / "two" / "report.json"));
  EXPECT_EQ(report.at("requests").at("resumed_item_iterations").get<size_t>(), lines_before - 1);
  EXPECT_EQ(lines(tmp / "two" / "trace.jsonl").size(), lines_before);
}

TEST(SeqinstructCli, DryRunPrintsEveryStagesPromptAndCallsNothing) {
  TempDir tmp;
  std::string output;
  const std::string cmd = shell_quote(seqit_binary().string()) + " seqinstruct run " +
                          shell_quote(shared_data("train/alpaca/alpaca_5000.json").string()) +
                          " -o " + shell_quote((tmp / "out").string()) +
                          " --url http://127.0.0.1:9/v1 --dry-run --limit 1";
  ASSERT_EQ(run_command(cmd, &output), 0) << output;
  for (const char* stage : {"==== classify", "==== generate, option A", "==== generate, option B",
                            "==== generate, option C", "==== respond"})
    EXPECT_NE(output.find(stage), std::string::npos) << stage;
  // The first Alpaca item's instruction and input, each exactly once in the classify prompt.
  const size_t classify = output.find("==== classify"), generate = output.find("==== generate");
  const std::string part = output.substr(classify, generate - classify);
  EXPECT_EQ(part.find("Sentence 2: I goes to the store."),
            part.rfind("Sentence 2: I goes to the store."));
  EXPECT_NE(part.find("Sentence 2: I goes to the store."), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp / "out"));
}

}  // namespace
}  // namespace seqit::testing

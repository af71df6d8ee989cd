// `seqit generate` end to end: one prompt as JSON, a JSONL job that resumes without duplicates,
// bad input reported once with file, line and field, and a job sharded over 2 ranks (mpirun) that
// loses nothing and duplicates nothing when a rank is killed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "testing.h"

using nlohmann::json;
using seqit::testing::run_command;
using seqit::testing::seqit_binary;
using seqit::testing::shared_data;
using seqit::testing::shell_quote;
using seqit::testing::slurp;
using seqit::testing::spit;
using seqit::testing::TempDir;

namespace {
std::string base_command() {
  return shell_quote(seqit_binary().string()) + " --threads 2 generate --model " +
         shell_quote(shared_data("models/stories260K/stories260K.bin").string()) + " --tokenizer " +
         shell_quote(shared_data("models/stories260K/tok512.bin").string());
}

std::vector<json> read_jsonl(const std::filesystem::path& path) {
  std::vector<json> rows;
  std::istringstream in(slurp(path));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(json::parse(line));
  }
  return rows;
}
}  // namespace

TEST(GenerateCli, OnePromptPrintsAJsonLine) {
  std::string out;
  ASSERT_EQ(run_command(base_command() + " --prompt '' --max-tokens 24 --ids", &out, false), 0)
      << out;
  json row = json::parse(out);
  EXPECT_EQ(row["output"].get<std::string>().rfind(
                "Once upon a time, there was a little girl named Lily.", 0),
            0u)
      << out;
  EXPECT_EQ(row["finish_reason"], "length");
  EXPECT_EQ(row["completion_tokens"], 24);
  EXPECT_EQ(row["prompt_token_ids"], json::array({1}));
  EXPECT_EQ(row["token_ids"].size(), 24u);
}

TEST(GenerateCli, PromptFileResumesWithoutDuplicates) {
  TempDir dir;
  spit(dir / "p.jsonl",
       "{\"id\": \"a\", \"prompt\": \"Lily\"}\n{\"prompt\": \"The dog\", \"max_tokens\": 5}\n");
  std::string cmd = base_command() + " --prompts " + shell_quote((dir / "p.jsonl").string()) +
                    " --out " + shell_quote((dir / "o.jsonl").string()) +
                    " --max-tokens 12 --batch 2";
  std::string out;
  ASSERT_EQ(run_command(cmd, &out), 0) << out;
  auto rows = read_jsonl(dir / "o.jsonl");
  ASSERT_EQ(rows.size(), 2u);
  std::set<std::string> ids;
  for (const json& r : rows) {
    ids.insert(r["id"].dump());
    if (r["id"] == 1) {
      EXPECT_EQ(r["completion_tokens"], 5);
    }
    if (r["id"] == "a") {
      EXPECT_EQ(r["completion_tokens"], 12);
      EXPECT_EQ(r["output"].get<std::string>().rfind(" and", 0), 0u)
          << "continues the prompt, space kept: " << r;
    }
  }
  EXPECT_EQ(ids, (std::set<std::string>{"\"a\"", "1"}));
  // Two more prompts appended, and the output torn mid-line as if killed: a rerun finishes the rest
  // only.
  spit(dir / "p.jsonl", slurp(dir / "p.jsonl") +
                            "{\"id\": \"c\", \"prompt\": \"Tom\"}\n{\"id\": \"d\", \"prompt\": "
                            "\"Sue\", \"seed\": 3, \"temperature\": 0.9}\n");
  spit(dir / "o.jsonl", slurp(dir / "o.jsonl") + "{\"id\": \"c\", \"outp");
  ASSERT_EQ(run_command(cmd, &out), 0) << out;
  rows = read_jsonl(dir / "o.jsonl");
  ASSERT_EQ(rows.size(), 4u);
  ids.clear();
  for (const json& r : rows) ids.insert(r["id"].dump());
  EXPECT_EQ(ids.size(), 4u);
}

TEST(GenerateCli, BadRecordIsReportedWithItsLine) {
  TempDir dir;
  spit(dir / "p.jsonl", "{\"prompt\": \"Lily\"}\n{\"text\": \"no prompt here\"}\n");
  std::string out;
  int rc = run_command(base_command() + " --prompts " + shell_quote((dir / "p.jsonl").string()) +
                           " --out " + shell_quote((dir / "o.jsonl").string()),
                       &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("p.jsonl:2"), std::string::npos) << out;
  EXPECT_NE(out.find("prompt"), std::string::npos) << out;
  rc = run_command(base_command() + " --prompt x --max-tokens 4 --temperature -1", &out);
  EXPECT_NE(rc, 0);
  rc = run_command(
      shell_quote(seqit_binary().string()) + " generate --model /no/such/model --prompt x", &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("/no/such/model"), std::string::npos) << out;
}

namespace {
std::string model_args() {
  return " --model " + shell_quote(shared_data("models/stories260K/stories260K.bin").string()) +
         " --tokenizer " + shell_quote(shared_data("models/stories260K/tok512.bin").string());
}
json generate_chat_row(const std::string& extra) {
  std::string out;
  EXPECT_EQ(run_command(base_command() + " --chat --chat-template chatml --max-tokens 20" + extra,
                        &out, false),
            0)
      << out;
  return json::parse(out);
}
}  // namespace

TEST(GenerateCli, ChatPromptIsTheTemplatesTextEncoded) {
  // The ChatML text written out by hand, tokenized on its own: what --chat must feed the model.
  TempDir dir;
  spit(dir / "t.txt",
       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n"
       "<|im_start|>assistant\n");
  std::string ids;
  ASSERT_EQ(run_command(shell_quote(seqit_binary().string()) + " tokenize --tokenizer " +
                            shell_quote(shared_data("models/stories260K/tok512.bin").string()) +
                            " " + shell_quote((dir / "t.txt").string()),
                        &ids, false),
            0);
  json expected = json::array();
  std::istringstream in(ids);
  for (int id; in >> id;) expected.push_back(id);
  json row = generate_chat_row(" --system 'Be brief.' --prompt 'Hello there' --ids");
  EXPECT_EQ(row["prompt_token_ids"], expected);
  EXPECT_EQ(row["completion_tokens"], 20);
}

TEST(GenerateCli, ChatWithoutTemplateNamesTheChoices) {
  std::string out;
  EXPECT_NE(run_command(base_command() + " --chat --prompt hi", &out), 0);
  EXPECT_NE(out.find("has no chat template"), std::string::npos) << out;
  EXPECT_NE(out.find("tulu, alpaca, chatml"), std::string::npos) << out;
}

TEST(ChatCli, RepliesMatchGenerateAndKeepTheConversation) {
  TempDir dir;
  const std::string first = generate_chat_row(" --prompt 'Hello there'")["output"];
  // The second turn sees the first exchange: the same as generate with those messages.
  json messages = json::array({{{"role", "user"}, {"content", "Hello there"}},
                               {{"role", "assistant"}, {"content", first}},
                               {{"role", "user"}, {"content", "Tell me more"}}});
  spit(dir / "p.jsonl", json({{"id", 0}, {"messages", messages}}).dump() + "\n");
  std::string out;
  ASSERT_EQ(
      run_command(base_command() + " --chat --chat-template chatml --max-tokens 20 --prompts " +
                      shell_quote((dir / "p.jsonl").string()) + " --out " +
                      shell_quote((dir / "o.jsonl").string()),
                  &out),
      0)
      << out;
  const std::string second = read_jsonl(dir / "o.jsonl").at(0)["output"];

  spit(dir / "in.txt", "Hello there\nTell me more\n/reset\nHello there\n/exit\nnot read\n");
  ASSERT_EQ(run_command(shell_quote(seqit_binary().string()) + " --threads 2 chat" + model_args() +
                            " --chat-template chatml --max-tokens 20 < " +
                            shell_quote((dir / "in.txt").string()),
                        &out, false),
            0)
      << out;
  EXPECT_EQ(out, first + "\n" + second + "\n" + first + "\n");
}

// ---- several processes (mpirun -np 2 seqit generate) -----------------------------------------

namespace {
int64_t lines_in(const std::filesystem::path& path) {
  std::ifstream in(path);
  int64_t n = 0;
  for (std::string line; std::getline(in, line);)
    n += json::accept(line) ? 1 : 0;  // a torn last line (a killed writer) is not an output
  return n;
}
}  // namespace

TEST(GenerateCli, ShardedOverTwoRanksAKilledRankLosesNothingAndDuplicatesNothing) {
  if (const std::string why = seqit::testing::mpi_missing(); !why.empty())
    GTEST_SKIP() << "no sharded test here: " << why;
  seqit::testing::allow_seconds(120);
  TempDir dir;
  std::string prompts;
  for (int i = 0; i < 40; ++i)
    prompts +=
        json({{"id", "p" + std::to_string(i)}, {"prompt", "Once " + std::to_string(i)}}).dump() +
        "\n";
  spit(dir / "p.jsonl", prompts);
  const std::filesystem::path out = dir / "o.jsonl";
  const std::string generate =
      shell_quote(seqit_binary().string()) + " --threads 1 generate --model " +
      shell_quote(shared_data("models/stories260K/stories260K.bin").string()) + " --prompts " +
      shell_quote((dir / "p.jsonl").string()) + " --out " + shell_quote(out.string()) +
      " --max-tokens 256 --batch 2";
  // Start on 2 ranks; once rank 1 has written a few outputs, kill it with -9.
  const int launcher = seqit::testing::start_in_background(
      {"/bin/sh", "-c",
       "exec " + seqit::testing::mpirun_command(2) + generate + " >/dev/null 2>&1"});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (lines_in(out.string() + ".part-1") < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::string pids;
  run_command("for p in $(pgrep -P " + std::to_string(launcher) +
                  "); do tr '\\0' '\\n' < /proc/$p/environ | grep -qx OMPI_COMM_WORLD_RANK=1 && "
                  "echo $p; done",
              &pids, false);
  ASSERT_FALSE(pids.empty()) << "rank 1 not found (finished already?)";
  ASSERT_EQ(kill(std::stoi(pids), SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(launcher, &status, 0), launcher);
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const int64_t before =
      lines_in(out) + lines_in(out.string() + ".part-0") + lines_in(out.string() + ".part-1");
  EXPECT_GE(before, 3);
  EXPECT_LT(before, 40) << "the job had finished before the kill";

  // Rerun on 2 ranks: the parts are merged first, only the rest is generated.
  std::string log;
  ASSERT_EQ(run_command(seqit::testing::mpirun_command(2) + generate, &log), 0) << log;
  // The ranks together generated exactly what was missing: none did another's record.
  long long written = -1, there = -1;
  const size_t at = log.find(" outputs written to ");
  ASSERT_NE(at, std::string::npos) << log;
  written = std::stoll(log.substr(log.rfind(' ', at - 1) + 1));
  const size_t comma = log.find("), ", at);
  ASSERT_NE(comma, std::string::npos) << log;
  there = std::stoll(log.substr(comma + 3));
  EXPECT_EQ(written + there, 40) << log;
  EXPECT_EQ(there, before) << log;
  const std::vector<json> rows = read_jsonl(out);
  std::set<std::string> ids;
  for (const json& r : rows) {
    ids.insert(r["id"].get<std::string>());
    EXPECT_GT(r["completion_tokens"].get<int>(), 0) << r;
  }
  EXPECT_EQ(rows.size(), 40u) << "a row lost or duplicated";
  EXPECT_EQ(ids.size(), 40u);
  EXPECT_FALSE(std::filesystem::exists(out.string() + ".part-0"));
  EXPECT_FALSE(std::filesystem::exists(out.string() + ".part-1"));
  // A rerun with one process finds everything done.
  ASSERT_EQ(run_command(generate, &log), 0) << log;
  EXPECT_EQ(read_jsonl(out).size(), 40u);
  // --fresh on 2 ranks starts the output over: 40 new rows (4 tokens each now), each id once.
  std::string fresh = generate;
  fresh.replace(fresh.find("--max-tokens 256"), 16, "--max-tokens 4 --fresh");
  ASSERT_EQ(run_command(seqit::testing::mpirun_command(2) + fresh, &log), 0) << log;
  ids.clear();
  for (const json& r : read_jsonl(out)) {
    EXPECT_TRUE(ids.insert(r["id"].get<std::string>()).second);
    EXPECT_LE(r["completion_tokens"].get<int>(), 4) << "an old row kept: " << r;
  }
  EXPECT_EQ(ids.size(), 40u);
  EXPECT_NE(log.find("40 outputs written"), std::string::npos) << log;
}

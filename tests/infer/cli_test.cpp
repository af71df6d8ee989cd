// `seqit generate` end to end: one prompt as JSON, a JSONL job that resumes without duplicates, and
// bad input reported once with file, line and field.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

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

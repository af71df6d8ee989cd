// Request files (`seqit query`'s engine): every request kind, per-record parameters, error
// policies, and resume semantics (failed requests are not written, so a rerun retries them).
#include "llm/request_job.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "fault_server.h"
#include "llm/http_backend.h"
#include "testing.h"
#include "util/error.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace seqit::llm {
namespace {
using nlohmann::json;
using seqit::testing::FaultServer;
using seqit::testing::TempDir;

std::unique_ptr<HttpBackend> backend_for(const FaultServer& server) {
  HttpBackendOptions o;
  o.base_urls = {server.base_url()};
  o.model = "m";
  o.api_key_env = "";
  o.retry.max_retries = 0;
  return std::make_unique<HttpBackend>(o);
}

std::map<std::string, json> rows_by_id(const std::filesystem::path& path) {
  std::map<std::string, json> rows;
  std::istringstream in(seqit::testing::slurp(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json row = json::parse(line);
    EXPECT_TRUE(rows.emplace(row["id"].dump(), row).second) << "duplicate row " << line;
  }
  return rows;
}

TEST(RequestJob, RunsChatCompletionAndScoreRecords) {
  TempDir dir;
  seqit::testing::spit(
      dir / "in.jsonl",
      R"({"id": "c", "messages": [{"role": "user", "content": "hi"}], "n": 2, "temperature": 0.3}
{"id": 5, "prompt": "Once", "max_tokens": 9, "stop": ["\n"]}

{"prompt": "ab", "continuations": ["c", "de"]}
)");
  FaultServer server;
  auto backend = backend_for(server);
  RequestJobOptions options;
  options.defaults.temperature = 0;
  auto s = run_request_job(*backend, dir / "in.jsonl", dir / "out.jsonl", options);
  EXPECT_EQ(s.records, 3);
  EXPECT_EQ(s.answered, 3);
  EXPECT_EQ(s.failed, 0);
  auto rows = rows_by_id(dir / "out.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows["\"c\""]["text"], "echo: hi");
  EXPECT_EQ(rows["\"c\""]["choices"], json::array({"echo: hi", "echo: hi #1"}));
  EXPECT_EQ(rows["5"]["text"], "completion: Once");
  EXPECT_EQ(rows["5"]["finish_reason"], "length");
  EXPECT_EQ(rows["5"]["cached"], false);
  EXPECT_EQ(rows["5"]["model"], "m");
  EXPECT_EQ(rows["5"]["usage"]["prompt_tokens"], 4);
  // The record without an id gets its record number (blank lines are not records).
  EXPECT_EQ(rows["2"]["logprobs"], json::array({-0.5, -1.0}));
  // Per-record parameters override the defaults.
  for (const json& body : server.bodies()) {
    if (body.contains("messages")) {
      EXPECT_EQ(body["temperature"], 0.3);
      EXPECT_EQ(body["n"], 2);
    } else if (body["prompt"].is_string()) {
      EXPECT_EQ(body["temperature"], 0.0);
      EXPECT_EQ(body["max_tokens"], 9);
      EXPECT_EQ(body["stop"], json::array({"\n"}));
    }
  }
}

TEST(RequestJob, ScoreRecordsWriteLogprobs) {
  TempDir dir;
  seqit::testing::spit(dir / "in.jsonl",
                       R"({"id": 0, "prompt": "ab", "continuations": ["c", "de"]})"
                       "\n");
  FaultServer server;
  auto backend = backend_for(server);
  run_request_job(*backend, dir / "in.jsonl", dir / "out.jsonl", {});
  auto rows = rows_by_id(dir / "out.jsonl");
  EXPECT_EQ(rows["0"]["logprobs"], json::array({-0.5, -1.0}));
  EXPECT_EQ(rows["0"]["token_counts"], json::array({1, 2}));
}

TEST(RequestJob, StopsAtAnInvalidRecordNamingFileLineAndField) {
  TempDir dir;
  seqit::testing::spit(dir / "in.jsonl",
                       "{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": 2, \"prompt\": 7}\n");
  FaultServer server;
  auto backend = backend_for(server);
  try {
    run_request_job(*backend, dir / "in.jsonl", dir / "out.jsonl", {});
    FAIL() << "an invalid record was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().file, (dir / "in.jsonl").string());
    EXPECT_EQ(e.context().line, 2);
    EXPECT_EQ(e.context().record, 1);
    EXPECT_EQ(e.context().field, "prompt");
  }
  EXPECT_EQ(rows_by_id(dir / "out.jsonl").size(), 1u);  // the answer before it is kept
}

TEST(RequestJob, SkipPolicyGoesOnAndARerunRetriesOnlyTheFailures) {
  TempDir dir;
  std::string input;
  for (int i = 0; i < 6; ++i)
    input += json{{"id", i}, {"prompt", "p" + std::to_string(i)}}.dump() + "\n";
  input += "{not json\n";
  input += R"({"id": 0, "prompt": "again"})"
           "\n";
  seqit::testing::spit(dir / "in.jsonl", input);
  FaultServer server({.fail_first = 2, .fail_status = 503});
  {
    HttpBackendOptions o;
    o.base_urls = {server.base_url()};
    o.api_key_env = "";
    o.retry.max_retries = 0;
    o.max_in_flight = 1;  // so that exactly the first two requests fail
    HttpBackend backend(o);
    RequestJobOptions options;
    options.stop_on_error = false;
    auto s = run_request_job(backend, dir / "in.jsonl", dir / "out.jsonl", options);
    EXPECT_EQ(s.answered, 4);
    EXPECT_EQ(s.failed, 2);
    EXPECT_EQ(s.invalid, 2);  // the broken line and the repeated id
  }
  EXPECT_EQ(rows_by_id(dir / "out.jsonl").size(), 4u);
  server.set_plan({});
  auto backend = backend_for(server);
  RequestJobOptions options;
  options.stop_on_error = false;
  auto s = run_request_job(*backend, dir / "in.jsonl", dir / "out.jsonl", options);
  EXPECT_EQ(s.already_done, 4);
  EXPECT_EQ(s.answered, 2);
  EXPECT_EQ(server.requests(), 2);
  auto rows = rows_by_id(dir / "out.jsonl");
  ASSERT_EQ(rows.size(), 6u);
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ(rows[std::to_string(i)]["text"], "completion: p" + std::to_string(i));
}

TEST(RequestJob, StopPolicyReportsTheFailedRequest) {
  TempDir dir;
  seqit::testing::spit(dir / "in.jsonl", "{\"id\": \"x\", \"prompt\": \"a\"}\n");
  FaultServer server({.fail_first = 1, .fail_status = 400});
  auto backend = backend_for(server);
  try {
    run_request_job(*backend, dir / "in.jsonl", dir / "out.jsonl", {});
    FAIL() << "the failure was not reported";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().line, 1);
    EXPECT_NE(std::string(e.what()).find("id \"x\": invalid request (HTTP 400)"), std::string::npos)
        << e.what();
  }
}

TEST(RequestJob, QueryCommandEndToEnd) {
  TempDir dir;
  seqit::testing::spit(dir / "in.jsonl",
                       "{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": 2, \"prompt\": \"b\"}\n");
  FaultServer server;
  const std::string cmd = seqit::testing::shell_quote(seqit::testing::seqit_binary().string()) +
                          " query " + seqit::testing::shell_quote((dir / "in.jsonl").string()) +
                          " -o " + seqit::testing::shell_quote((dir / "out.jsonl").string()) +
                          " --url " + server.base_url() +
                          " --model tiny --temperature 0 --no-cache";
  std::string out;
  ASSERT_EQ(seqit::testing::run_command(cmd, &out), 0) << out;
  EXPECT_NE(out.find("2 requests: 0 already in the output, 2 answered (0 from cache), 0 failed"),
            std::string::npos)
      << out;
  EXPECT_EQ(rows_by_id(dir / "out.jsonl").size(), 2u);
  EXPECT_FALSE(std::filesystem::exists(dir / "out.jsonl.cache.sqlite"));
  EXPECT_EQ(server.bodies().at(0)["model"], "tiny");
  // Without --no-cache the cache file sits next to the output; a second run is all hits.
  ASSERT_EQ(seqit::testing::run_command(cmd.substr(0, cmd.size() - 11) + " --fresh", &out), 0)
      << out;
  ASSERT_EQ(seqit::testing::run_command(cmd.substr(0, cmd.size() - 11) + " --fresh", &out), 0)
      << out;
  EXPECT_TRUE(std::filesystem::exists(dir / "out.jsonl.cache.sqlite"));
  EXPECT_NE(out.find("cache: 2 hits, 0 misses"), std::string::npos) << out;
  EXPECT_EQ(server.requests(), 4);
  // A server that refuses: the command fails with the reason and a non-zero status.
  const std::string dead = seqit::testing::shell_quote(seqit::testing::seqit_binary().string()) +
                           " query " + seqit::testing::shell_quote((dir / "in.jsonl").string()) +
                           " -o " + seqit::testing::shell_quote((dir / "dead.jsonl").string()) +
                           " --url " + FaultServer::dead_url() + " --retries 0 --no-cache";
  EXPECT_EQ(seqit::testing::run_command(dead, &out), 1) << out;
  EXPECT_NE(out.find("network error"), std::string::npos) << out;
}

}  // namespace
}  // namespace seqit::llm

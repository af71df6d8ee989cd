// The SQLite response cache: keys, round trips, WAL, hit/miss accounting, deduplication, and crash
// safety with a real `seqit query` child process killed mid-job.
#include "llm/response_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "fault_server.h"
#include "llm/http_backend.h"
#include "testing.h"
#include "util/error.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

extern char** environ;

namespace seqit::llm {
namespace {
using nlohmann::json;
using seqit::testing::FaultServer;
using seqit::testing::TempDir;

Request completion(std::string prompt) {
  Request r;
  r.kind = RequestKind::completion;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  return r;
}

std::shared_ptr<HttpBackend> http_for(const FaultServer& server, int in_flight = 8) {
  HttpBackendOptions o;
  o.base_urls = {server.base_url()};
  o.model = "m";
  o.api_key_env = "";
  o.max_in_flight = in_flight;
  return std::make_shared<HttpBackend>(o);
}

TEST(ResponseCache, KeyCoversEveryFieldThatDecidesTheAnswer) {
  const Request base = completion("hello");
  const std::string key = ResponseCache::key_for(base, "m");
  EXPECT_EQ(key.size(), 64u);  // hex SHA-256
  Request same = base;
  same.on_delta = [](int, std::string_view, const std::vector<GeneratedToken>&) {};
  same.cancelled = std::make_shared<std::atomic<bool>>(false);
  EXPECT_EQ(ResponseCache::key_for(same, "m"), key);
  std::set<std::string> keys{key};
  auto differs = [&](Request r, const std::string& model = "m") {
    EXPECT_TRUE(keys.insert(ResponseCache::key_for(r, model)).second);
  };
  differs(base, "other-model");
  Request r = base;
  r.prompt = "hello ";
  differs(r);
  r = base;
  r.params.temperature = 0.5;
  differs(r);
  r = base;
  r.params.top_p = 0.9;
  differs(r);
  r = base;
  r.params.top_k = 5;
  differs(r);
  r = base;
  r.params.max_tokens = 7;
  differs(r);
  r = base;
  r.params.stop = {"x"};
  differs(r);
  r = base;
  r.params.seed = 1;
  differs(r);
  r = base;
  r.params.n = 2;
  differs(r);
  r = base;
  r.kind = RequestKind::chat;
  r.messages = {{"user", "hello"}};
  differs(r);
  r.messages = {{"system", "hello"}};
  differs(r);
  r = base;
  r.kind = RequestKind::score;
  r.continuations = {" a"};
  differs(r);
}

TEST(ResponseCache, StoresAndReadsBackEveryField) {
  TempDir dir;
  Response stored;
  stored.choices = {{"first", "stop", {}}, {"second \u00e9\n", "length", {}}};
  // Generated-token logprobs, one token holding half a UTF-8 character.
  stored.choices[0].logprobs = {{"fir", -0.5, {{"fir", -0.5}, {"\xe2\x82", -2.0}}},
                                {"\xe2\x82", -1.5, {}}};
  stored.logprobs = {-1.25, -3.5};
  stored.token_counts = {2, 3};
  stored.token_logprobs = {{{"a", std::nullopt, 0}, {"b", -0.75, 1}}};
  stored.usage = {11, 22};
  stored.model = "m";
  stored.format_check = "seqit";
  stored.format_attempts = 2;
  {
    ResponseCache cache(dir / "sub" / "cache.sqlite");
    EXPECT_EQ(cache.get("k"), std::nullopt);
    cache.put("k", completion("x"), "m", stored);
    EXPECT_EQ(cache.size(), 1);
  }
  ResponseCache cache(dir / "sub" / "cache.sqlite");  // reopened: it persisted
  auto got = cache.get("k");
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->cached);
  ASSERT_EQ(got->choices.size(), 2u);
  EXPECT_EQ(got->choices[1].text, "second \u00e9\n");
  EXPECT_EQ(got->choices[1].finish_reason, "length");
  EXPECT_EQ(got->choices[0].logprobs, stored.choices[0].logprobs);
  EXPECT_TRUE(got->choices[1].logprobs.empty());
  EXPECT_EQ(got->logprobs, stored.logprobs);
  EXPECT_EQ(got->token_counts, stored.token_counts);
  ASSERT_EQ(got->token_logprobs.size(), 1u);
  EXPECT_EQ(got->token_logprobs[0][0].logprob, std::nullopt);
  EXPECT_EQ(got->token_logprobs[0][1].logprob, -0.75);
  EXPECT_EQ(got->token_logprobs[0][1].offset, 1u);
  EXPECT_EQ(got->usage.completion_tokens, 22);
  EXPECT_EQ(got->model, "m");
  EXPECT_EQ(got->format_check, "seqit");
  EXPECT_EQ(got->format_attempts, 2);
}

TEST(ResponseCache, UsesWriteAheadLogging) {
  TempDir dir;
  ResponseCache cache(dir / "c.sqlite");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "c.sqlite").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST(ResponseCache, SeveralProcessesOpenANewCacheAtOnce) {
  // The ranks of an mpirun job open one new cache file at the same moment: each must get it (the
  // switch to WAL mode is retried while another process holds the lock).
  TempDir dir;
  for (int round = 0; round < 10; ++round) {
    const auto path = dir / ("c" + std::to_string(round) + ".sqlite");
    const auto start = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    std::vector<pid_t> children;
    for (int k = 0; k < 4; ++k) {
      const pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        std::this_thread::sleep_until(start);
        try {
          ResponseCache cache(path);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "child %d: %s\n", k, e.what());
          _exit(1);
        }
        _exit(0);
      }
      children.push_back(pid);
    }
    for (const pid_t pid : children) {
      int status = 0;
      ASSERT_EQ(waitpid(pid, &status, 0), pid);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "round " << round;
    }
  }
}

TEST(ResponseCache, RefusesAFileThatIsNotACache) {
  TempDir dir;
  seqit::testing::spit(dir / "notes.txt", std::string(4096, 'x'));
  try {
    ResponseCache cache(dir / "notes.txt");
    FAIL() << "opened a text file as a cache";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().file, (dir / "notes.txt").string());
    EXPECT_NE(std::string(e.what()).find("not a"), std::string::npos) << e.what();
  }
}

TEST(CachedBackend, SecondRunIsAnsweredFromTheCacheWithoutRequests) {
  TempDir dir;
  FaultServer server;
  auto http = http_for(server);
  {
    CachedBackend backend(http, dir / "c.sqlite");
    std::vector<std::future<Result<Response>>> f;
    for (int i = 0; i < 10; ++i)
      f.push_back(backend.submit_async(completion("p" + std::to_string(i))));
    for (auto& x : f) {
      auto r = x.get();
      ASSERT_TRUE(r.ok());
      EXPECT_FALSE(r.value().cached);
    }
    EXPECT_EQ(backend.stats().misses, 10);
    EXPECT_EQ(backend.stats().hits, 0);
  }
  EXPECT_EQ(server.requests(), 10);
  CachedBackend backend(http, dir / "c.sqlite");
  for (int i = 0; i < 10; ++i) {
    auto r = backend.submit_async(completion("p" + std::to_string(i))).get();
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r.value().cached);
    EXPECT_EQ(r.value().text(), "completion: p" + std::to_string(i));
  }
  EXPECT_EQ(server.requests(), 10);
  EXPECT_EQ(backend.stats().hits, 10);
  EXPECT_EQ(backend.stats().misses, 0);
  // A different parameter is a different request.
  Request hotter = completion("p0");
  hotter.params.temperature = 0.8;
  ASSERT_TRUE(backend.submit_async(hotter).get().ok());
  EXPECT_EQ(server.requests(), 11);
  EXPECT_EQ(backend.stats().misses, 1);
}

TEST(CachedBackend, IdenticalRequestsInFlightAreSentOnce) {
  TempDir dir;
  FaultServer server({.delay_s = 0.2});
  CachedBackend backend(http_for(server), dir / "c.sqlite");
  std::vector<std::future<Result<Response>>> f;
  for (int i = 0; i < 5; ++i) f.push_back(backend.submit_async(completion("same")));
  for (auto& x : f) {
    auto r = x.get();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value().text(), "completion: same");
  }
  EXPECT_EQ(server.requests(), 1);
  EXPECT_EQ(backend.stats().misses, 1);
  EXPECT_EQ(backend.stats().deduplicated, 4);
}

TEST(CachedBackend, ErrorsAreNotStored) {
  TempDir dir;
  FaultServer server({.fail_first = 1, .fail_status = 400});
  CachedBackend backend(http_for(server), dir / "c.sqlite");
  auto first = backend.submit_async(completion("x")).get();
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.error().kind, ErrorKind::invalid_request);
  auto second = backend.submit_async(completion("x")).get();
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second.value().cached);
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(backend.cache().size(), 1);
}

TEST(CachedBackend, CachedAnswersStillReachStreamingCallers) {
  TempDir dir;
  FaultServer server;
  CachedBackend backend(http_for(server), dir / "c.sqlite");
  ASSERT_TRUE(backend.submit_async(completion("x")).get().ok());
  std::string streamed;
  Request r = completion("x");
  r.on_delta = [&](int choice, std::string_view delta, const std::vector<GeneratedToken>&) {
    EXPECT_EQ(choice, 0);
    streamed += delta;
  };
  auto hit = backend.submit_async(r).get();
  ASSERT_TRUE(hit.ok());
  EXPECT_TRUE(hit.value().cached);
  EXPECT_EQ(streamed, "completion: x");
}

// ------------------------------------------------------------------ crash safety

pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("posix_spawn failed for " + args[0]);
  return pid;
}

std::vector<json> read_jsonl(const std::filesystem::path& path) {
  std::vector<json> rows;
  std::istringstream in(seqit::testing::slurp(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

class CrashSafety : public ::testing::TestWithParam<bool> {};

// A `seqit query` job of N requests is killed (SIGKILL) after M answers were stored; the rerun
// sends exactly N - M requests, and the output ends with each of the N answers exactly once. The
// parameter says whether the output survives (resume) or is lost (--fresh: only the cache
// remembers).
TEST_P(CrashSafety, RerunAfterKillSendsOnlyTheUnansweredRequests) {
  const bool output_lost = GetParam();
  constexpr int kRequests = 40;
  TempDir dir;
  std::string input;
  for (int i = 0; i < kRequests; ++i)
    input += json{{"id", i}, {"prompt", "p" + std::to_string(i)}}.dump() + "\n";
  seqit::testing::spit(dir / "in.jsonl", input);
  FaultServer server({.delay_s = 0.03});
  const std::vector<std::string> command = {seqit::testing::seqit_binary().string(),
                                            "--quiet",
                                            "query",
                                            (dir / "in.jsonl").string(),
                                            "-o",
                                            (dir / "out.jsonl").string(),
                                            "--url",
                                            server.base_url(),
                                            "--cache",
                                            (dir / "cache.sqlite").string(),
                                            "--concurrency",
                                            "4",
                                            "--temperature",
                                            "0"};
  const pid_t child = spawn(command);
  {
    // Wait until at least 12 answers are stored, then kill the job without warning.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (server.answered() < 12) {
        ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the job made no progress";
        continue;
      }
      if (ResponseCache(dir / "cache.sqlite").size() >= 12) break;
    }
  }
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  const int64_t stored = ResponseCache(dir / "cache.sqlite").size();
  ASSERT_GE(stored, 12);
  ASSERT_LT(stored, kRequests) << "the job finished before it was killed; nothing was tested";

  server.set_plan({});  // count the rerun's requests from zero, answer at once
  std::vector<std::string> rerun = command;
  if (output_lost) rerun.push_back("--fresh");
  std::string cmd;
  for (const auto& a : rerun) cmd += seqit::testing::shell_quote(a) + " ";
  std::string out;
  ASSERT_EQ(seqit::testing::run_command(cmd, &out), 0) << out;
  EXPECT_EQ(server.requests(), kRequests - stored) << out;

  auto rows = read_jsonl(dir / "out.jsonl");
  ASSERT_EQ(rows.size(), static_cast<size_t>(kRequests));
  std::set<int> ids;
  int cached = 0;
  for (const auto& row : rows) {
    const int id = row["id"].get<int>();
    EXPECT_TRUE(ids.insert(id).second) << "duplicate id " << id;
    EXPECT_EQ(row["text"], "completion: p" + std::to_string(id));
    cached += row["cached"].get<bool>() ? 1 : 0;
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kRequests));
  if (output_lost) {
    EXPECT_EQ(cached, stored);
  }
}

INSTANTIATE_TEST_SUITE_P(OutputKeptOrLost, CrashSafety, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "OutputLost" : "OutputKept"; });

}  // namespace
}  // namespace seqit::llm

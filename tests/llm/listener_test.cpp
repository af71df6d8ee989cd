// Server lifecycles without races (llm::HttpListener under OpenAiServer and the test FaultServer):
// a stop at any moment after a start returns promptly and frees the port, and a stop under load
// answers every request that was sent before it and refuses (never resets) the later ones.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "fault_server.h"
#include "llm/server.h"
#include "testing.h"

namespace seqit::llm {
namespace {

using Clock = std::chrono::steady_clock;

// Answers every completion with its prompt after `delay`, each on its own thread.
class SlowEchoBackend final : public Backend {
 public:
  explicit SlowEchoBackend(std::chrono::milliseconds delay) : delay_(delay) {}
  ~SlowEchoBackend() override {
    for (auto& t : threads_) t.join();
  }
  void submit(Request request, ResponseCallback done) override {
    std::lock_guard lock(mutex_);
    threads_.emplace_back([this, request = std::move(request), done = std::move(done)] {
      std::this_thread::sleep_for(delay_);
      Response r;
      r.choices.push_back({"echo " + request.prompt, "stop", {}});
      r.usage.completion_tokens = 1;
      done(std::move(r));
    });
  }
  std::string default_model() const override { return "echo"; }
  std::string describe() const override { return "slow echo"; }

 private:
  std::chrono::milliseconds delay_;
  std::mutex mutex_;
  std::vector<std::thread> threads_;
};

// Nothing listens on the port any more (a connection is refused) and a new server can bind it (as
// seqit's servers do, with SO_REUSEADDR: connections the old one closed may linger in TIME_WAIT).
bool port_is_free(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int client = ::socket(AF_INET, SOCK_STREAM, 0);
  const bool refused = ::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
                       errno == ECONNREFUSED;
  ::close(client);
  const int server = ::socket(AF_INET, SOCK_STREAM, 0);
  int yes = 1;
  ::setsockopt(server, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  const bool bound = ::bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(server);
  return refused && bound;
}

httplib::Result complete(int port, const std::string& prompt) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(10, 0);
  return c.Post("/v1/completions",
                R"({"model": "echo", "max_tokens": 1, "prompt": ")" + prompt + "\"}",
                "application/json");
}

TEST(HttpListener, OpenAiServerStartsAndStopsTwoHundredTimes) {
  SlowEchoBackend backend(std::chrono::milliseconds(0));
  std::mt19937 rng(7);
  const auto t0 = Clock::now();
  for (int i = 0; i < 200; ++i) {
    ServerOptions o;
    o.port = 0;
    o.threads = 4;
    OpenAiServer server(backend, o);
    server.start();
    const int port = server.port();
    switch (i % 4) {
      case 0:
        break;  // stop at once, before the accept loop has served anything
      case 1:
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
        break;
      case 2: {
        auto r = complete(port, "x");
        ASSERT_TRUE(r) << "iteration " << i << ": " << httplib::to_string(r.error());
        EXPECT_EQ(r->status, 200);
        break;
      }
      case 3:
        break;  // the destructor stops it
    }
    if (i % 4 != 3) {
      server.stop();
      EXPECT_TRUE(port_is_free(port)) << "iteration " << i;
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(seconds, 40.0) << "200 start/stop cycles should take seconds";
  std::printf("[listener] 200 OpenAiServer start/stop cycles in %.2f s\n", seconds);
}

TEST(HttpListener, FaultServerStartsAndStopsTwoHundredTimes) {
  seqit::testing::allow_seconds(90);
  const auto t0 = Clock::now();
  for (int i = 0; i < 200; ++i) {
    seqit::testing::FaultServer server;
    const int port = server.port();
    if (i % 3 == 1) std::this_thread::sleep_for(std::chrono::microseconds(i * 10));
    if (i % 3 == 2) continue;  // the destructor stops it
    server.stop();
    EXPECT_TRUE(port_is_free(port)) << "iteration " << i;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  // Its pool of 160 threads costs ~40-60 ms to start and join on 2 busy cores.
  EXPECT_LT(seconds, 40.0);
  std::printf("[listener] 200 FaultServer start/stop cycles in %.2f s\n", seconds);
}

// 24 requests in flight (the backend takes 300 ms over each) when stop() comes: all 24 are
// answered in full. Requests sent after the stop began are refused or answered, never reset.
TEST(HttpListener, StopAnswersEveryRequestSentBeforeItAndResetsNone) {
  SlowEchoBackend backend(std::chrono::milliseconds(300));
  ServerOptions o;
  o.port = 0;
  o.threads = 64;
  OpenAiServer server(backend, o);
  server.start();
  const int port = server.port();
  std::vector<std::thread> early, late;
  std::vector<std::optional<httplib::Result>> early_results(24), late_results(8);
  for (int i = 0; i < 24; ++i)
    early.emplace_back([&, i] { early_results[i] = complete(port, "early" + std::to_string(i)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // all 24 connected and waiting
  std::atomic<bool> stop_began{false};
  std::thread stopper([&] {
    stop_began = true;
    server.stop();
  });
  while (!stop_began.load()) std::this_thread::yield();
  for (int i = 0; i < 8; ++i)
    late.emplace_back([&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(5 * i));
      late_results[i] = complete(port, "late" + std::to_string(i));
    });
  for (auto& t : early) t.join();
  for (auto& t : late) t.join();
  stopper.join();
  for (int i = 0; i < 24; ++i) {
    const httplib::Result& r = *early_results[i];
    ASSERT_TRUE(r) << "request " << i << ": " << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->body.find("echo early" + std::to_string(i)), std::string::npos);
  }
  for (int i = 0; i < 8; ++i) {
    const httplib::Result& r = *late_results[i];
    if (r) {
      EXPECT_TRUE(r->status == 200 || r->status == 503) << r->status;
    } else {
      EXPECT_EQ(r.error(), httplib::Error::Connection)
          << "late request " << i << " failed after connecting: " << httplib::to_string(r.error());
    }
  }
  EXPECT_TRUE(port_is_free(port));
}

}  // namespace
}  // namespace seqit::llm

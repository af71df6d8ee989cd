// `seqit serve` and the clients that misbehave at the socket level, over raw TCP on 127.0.0.1:
// a client that half-closes after sending gets its answer; clients that go away stop costing
// engine time (their requests are cancelled, the server is idle soon after); bodies over
// --max-body-bytes get 413 without being kept in memory.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "serve_process.h"
#include "testing.h"

namespace seqit::llm {
namespace {
using nlohmann::json;
using seqit::testing::ServeProcess;
using seqit::testing::shared_data;
using Clock = std::chrono::steady_clock;

std::vector<std::string> serve_args(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {
      "--model", shared_data("models/stories260K/stories260K.bin").string(), "--tokenizer",
      shared_data("models/stories260K/tok512.bin").string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// `close`: ask the server to close the connection after answering (rather than wait for the
// keep-alive timeout), so reading until it closes returns at once.
std::string request_text(const std::string& version, const std::string& path,
                         const std::string& body, bool close = false) {
  return "POST " + path + " " + version +
         "\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + (close ? "\r\nConnection: close" : "") + "\r\n\r\n" + body;
}

bool send_all(int fd, const std::string& bytes) {
  for (size_t sent = 0; sent < bytes.size();) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes the connection (or `timeout_s` passes).
std::string read_until_closed(int fd, double timeout_s) {
  std::string out;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// The value of a sample in Prometheus text (`name value` lines); -1 when absent.
double metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

std::string get(int port, const std::string& path) {
  const int fd = connect_to(port);
  if (fd < 0) return {};
  send_all(fd, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  std::string response = read_until_closed(fd, 10);
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : response.substr(body + 4);
}

// The final (non-1xx) status and body of a raw HTTP/1.x response.
std::pair<int, std::string> final_response(const std::string& raw) {
  size_t at = 0;
  for (;;) {
    if (raw.compare(at, 5, "HTTP/") != 0) return {0, raw};
    const int status = std::stoi(raw.substr(at + 9, 3));
    const size_t end = raw.find("\r\n\r\n", at);
    if (end == std::string::npos) return {status, {}};
    if (status >= 200) return {status, raw.substr(end + 4)};
    at = end + 4;  // an interim answer (100 Continue): the real one follows
  }
}

// A client that sends its request and then shutdown(SHUT_WR)s — done with sending, still
// listening — gets the whole answer, over HTTP/1.1 and 1.0, every time (before: 2 times of 20).
TEST(ServeConnection, HalfClosedClientGetsItsAnswer) {
  ServeProcess server(serve_args());
  const std::string body = R"({"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0})";
  std::string first_text;
  for (int i = 0; i < 20; ++i) {
    const std::string version = i % 2 == 0 ? "HTTP/1.1" : "HTTP/1.0";
    const int fd = connect_to(server.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, request_text(version, "/v1/completions", body)));
    ASSERT_EQ(::shutdown(fd, SHUT_WR), 0);
    const std::string raw = read_until_closed(fd, 30);
    ::close(fd);
    const auto [status, response] = final_response(raw);
    ASSERT_EQ(status, 200) << version << " round " << i << ": '" << raw << "'";
    const json answer = json::parse(response);
    const std::string text = answer["choices"][0]["text"];
    EXPECT_FALSE(text.empty()) << version << " round " << i;
    if (i == 0) first_text = text;
    EXPECT_EQ(text, first_text) << version << " round " << i;  // greedy: the same answer each time
  }
  const std::string metrics = get(server.port(), "/metrics");
  EXPECT_EQ(metric(metrics, "seqit_requests_succeeded_total"), 20) << metrics;
  EXPECT_EQ(metric(metrics, "seqit_requests_cancelled_total"), 0) << metrics;
}

// Work that the test can measure: 16 long requests (8 choices of up to 480 tokens each, half of
// them streamed) whose clients give up after 0.3 s. Their sequences are dropped: the server has no
// request running within 2 s and then uses (almost) no CPU. Measured on 2 cores: idle 0.1 s after
// the clients left; the same requests not cancelled (HTTP/1.0 clients, whose FIN alone cannot be
// told from a half-close) keep the engine busy for 10.8 s.
TEST(ServeConnection, ClientsThatGoAwayAreCancelledAndTheServerIdles) {
  seqit::testing::allow_seconds(120);
  ServeProcess server(serve_args({"--max-batch", "32"}));
  constexpr int kClients = 16;
  std::vector<int> sockets;
  for (int i = 0; i < kClients; ++i) {
    const json body = {{"prompt", "Once upon a time, story " + std::to_string(i)},
                       {"max_tokens", 480},
                       {"n", 8},
                       {"temperature", 1.0},
                       {"seed", i},
                       {"stream", i % 2 == 1}};
    const int fd = connect_to(server.port());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, request_text("HTTP/1.1", "/v1/completions", body.dump())));
    sockets.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string busy = get(server.port(), "/metrics");
  // The requests were running (not already answered) when their clients left.
  ASSERT_EQ(metric(busy, "seqit_requests_running"), kClients) << busy;
  for (int fd : sockets) ::close(fd);
  const auto closed_at = Clock::now();

  double running = -1;
  std::string metrics;
  while (Clock::now() - closed_at < std::chrono::seconds(30)) {
    metrics = get(server.port(), "/metrics");
    running = metric(metrics, "seqit_requests_running");
    if (running == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double idle_after_s = std::chrono::duration<double>(Clock::now() - closed_at).count();
  std::printf("[ cancel ] %d clients gone; no request running after %.2f s\n", kClients,
              idle_after_s);
  ASSERT_EQ(running, 0) << metrics;
  EXPECT_LT(idle_after_s, 2.0) << metrics;
  EXPECT_EQ(metric(metrics, "seqit_requests_cancelled_total"), kClients) << metrics;
  EXPECT_EQ(metric(metrics, "seqit_requests_succeeded_total"), 0) << metrics;
  // Idle: over the next second the server uses under 0.1 s of CPU (decoding used ~2 cores).
  const double cpu_before = server.cpu_seconds();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double cpu_used = server.cpu_seconds() - cpu_before;
  EXPECT_LT(cpu_used, 0.1) << "CPU seconds used in the second after the requests were dropped";
  // And it still answers.
  const int fd = connect_to(server.port());
  ASSERT_TRUE(send_all(fd, request_text("HTTP/1.1", "/v1/completions",
                                        R"({"prompt": "The dog", "max_tokens": 4})", true)));
  const auto [status, response] = final_response(read_until_closed(fd, 30));
  ::close(fd);
  EXPECT_EQ(status, 200) << response;
}

// A body over --max-body-bytes gets 413 with an OpenAI-style JSON error that names both sizes, and
// is not kept: 20 bodies of 9 MiB against the default limit (8 MiB) leave the resident memory
// within 10% of where it started.
TEST(ServeConnection, OversizedBodiesGet413AndCostNoMemory) {
  {
    ServeProcess server(serve_args({"--max-body-bytes", "1000"}));
    const std::string body = R"({"prompt": ")" + std::string(2000, 'a') + R"(", "max_tokens": 1})";
    const int fd = connect_to(server.port());
    ASSERT_TRUE(send_all(fd, request_text("HTTP/1.1", "/v1/completions", body, true)));
    const auto [status, response] = final_response(read_until_closed(fd, 30));
    ::close(fd);
    ASSERT_EQ(status, 413) << response;
    const json error = json::parse(response)["error"];
    const std::string message = error["message"];
    EXPECT_NE(message.find("(" + std::to_string(body.size()) + " bytes)"), std::string::npos)
        << message;
    EXPECT_NE(message.find("at most 1000 bytes"), std::string::npos) << message;
    EXPECT_EQ(error["type"], "invalid_request_error");
    // Under the limit is served as usual.
    const int ok_fd = connect_to(server.port());
    ASSERT_TRUE(send_all(ok_fd, request_text("HTTP/1.1", "/v1/completions",
                                             R"({"prompt": "The dog", "max_tokens": 2})", true)));
    EXPECT_EQ(final_response(read_until_closed(ok_fd, 30)).first, 200);
    ::close(ok_fd);
  }
  ServeProcess server(serve_args());
  const std::string body =
      R"({"prompt": ")" + std::string(size_t{9} << 20, 'a') + R"(", "max_tokens": 1})";
  const long before = server.rss_kib();
  for (int i = 0; i < 20; ++i) {
    const int fd = connect_to(server.port());
    ASSERT_GE(fd, 0);
    send_all(fd, request_text("HTTP/1.1", "/v1/completions", body, true));
    const auto [status, response] = final_response(read_until_closed(fd, 30));
    ::close(fd);
    ASSERT_EQ(status, 413) << "round " << i << ": " << response;
  }
  const long after = server.rss_kib();
  std::printf("[ rss KiB ] before %ld, after 20 bodies of 9 MiB %ld\n", before, after);
  ASSERT_GT(before, 0);
  EXPECT_LT(after, before + before / 10);
}

}  // namespace
}  // namespace seqit::llm

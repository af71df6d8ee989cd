// A small OpenAI-compatible server for the HTTP backend's tests, on a real socket at 127.0.0.1 with
// a free port. It answers deterministically (chat: "echo: <last message>", completion: "completion:
// <prompt>", choice i > 0 gets " #i") and injects faults in order: the first `fail_first` requests
// get `fail_status`, the next `rate_limit_first` get 429 with Retry-After, the next `hang_first`
// never answer (until the server stops), then it answers, each after `delay_s`. stop() makes it
// die: the socket closes and later connections are refused.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}
namespace seqit::llm {
class HttpListener;
}

namespace seqit::testing {

struct FaultPlan {
  int fail_first = 0;
  int fail_status = 500;
  int rate_limit_first = 0;
  std::string retry_after = "1";  // header value sent with each 429 (empty: no header)
  int hang_first = 0;
  double delay_s = 0;
  std::string
      api_key;  // when set, requests must carry "Authorization: Bearer <api_key>" (else 401)
  // When set, a request body with this top-level key gets 400 "Unrecognized request argument
  // supplied: <key>" (as OpenAI answers vLLM's guided_regex).
  std::string refuse_field;
};

class FaultServer {
 public:
  using Plan = FaultPlan;

  FaultServer() : FaultServer(FaultPlan{}) {}
  explicit FaultServer(Plan plan);
  ~FaultServer();
  FaultServer(const FaultServer&) = delete;
  FaultServer& operator=(const FaultServer&) = delete;

  int port() const { return port_; }
  std::string base_url() const;  // "http://127.0.0.1:<port>/v1"
  void stop();

  void set_plan(Plan plan);                    // also restarts the fault sequence at request 0
  int64_t requests() const;                    // API requests received since start or set_plan
  int64_t answered() const;                    // of those, answered with 200
  std::vector<nlohmann::json> bodies() const;  // request bodies, in arrival order
  std::vector<std::chrono::steady_clock::time_point> arrivals() const;
  std::vector<std::string> authorizations() const;  // the Authorization header of each request
  int max_concurrent() const;  // most requests being handled at the same moment

  // A URL on which nothing listens (a port that was free a moment ago), for "the server is down".
  static std::string dead_url();

 private:
  void handle(const std::string& path, const std::string& body, const std::string& authorization,
              int& status, std::string& reply, std::string& retry_after);

  std::unique_ptr<httplib::Server> server_;
  std::unique_ptr<llm::HttpListener> listener_;
  int port_ = 0;
  mutable std::mutex mutex_;
  std::condition_variable released_;
  bool stopping_ = false;
  Plan plan_;
  int64_t requests_ = 0, answered_ = 0;
  int concurrent_ = 0, max_concurrent_ = 0;
  std::vector<nlohmann::json> bodies_;
  std::vector<std::chrono::steady_clock::time_point> arrivals_;
  std::vector<std::string> authorizations_;
};

}  // namespace seqit::testing

#include "fault_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include "llm/http_listen.h"
#include "util/utf8.h"

namespace seqit::testing {
using nlohmann::json;

FaultServer::FaultServer(Plan plan)
    : server_(std::make_unique<httplib::Server>()), plan_(std::move(plan)) {
  // Enough threads that every test's in-flight requests are served at once.
  listener_ = std::make_unique<llm::HttpListener>(*server_, 160);
  // An idle keep-alive connection holds its thread until this passes, and stop() waits for it.
  server_->set_keep_alive_timeout(1);
  server_->set_tcp_nodelay(true);
  auto api = [this](const httplib::Request& req, httplib::Response& res) {
    int status = 200;
    std::string reply, retry_after;
    {
      std::lock_guard lock(mutex_);
      max_concurrent_ = std::max(max_concurrent_, ++concurrent_);
    }
    handle(req.path, req.body, req.get_header_value("Authorization"), status, reply, retry_after);
    {
      std::lock_guard lock(mutex_);
      --concurrent_;
    }
    if (status == 0) {
      // Stopped while hanging or waiting: answer as a server going down would.
      res.status = 503;
      res.set_content(R"({"error": {"message": "server shutting down"}})", "application/json");
      return;
    }
    res.status = status;
    if (!retry_after.empty()) res.set_header("Retry-After", retry_after);
    res.set_content(reply, "application/json");
  };
  server_->Post("/v1/chat/completions", api);
  server_->Post("/v1/completions", api);
  port_ = listener_->start("127.0.0.1", 0);
}

FaultServer::~FaultServer() {
  stop();
}

std::string FaultServer::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/v1";
}

void FaultServer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  released_.notify_all();
  listener_->stop();
}

void FaultServer::set_plan(Plan plan) {
  std::lock_guard lock(mutex_);
  plan_ = std::move(plan);
  requests_ = answered_ = 0;
  max_concurrent_ = 0;
  bodies_.clear();
  arrivals_.clear();
  authorizations_.clear();
}

int64_t FaultServer::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}
int64_t FaultServer::answered() const {
  std::lock_guard lock(mutex_);
  return answered_;
}
std::vector<json> FaultServer::bodies() const {
  std::lock_guard lock(mutex_);
  return bodies_;
}
std::vector<std::chrono::steady_clock::time_point> FaultServer::arrivals() const {
  std::lock_guard lock(mutex_);
  return arrivals_;
}
std::vector<std::string> FaultServer::authorizations() const {
  std::lock_guard lock(mutex_);
  return authorizations_;
}

int FaultServer::max_concurrent() const {
  std::lock_guard lock(mutex_);
  return max_concurrent_;
}

std::string FaultServer::dead_url() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error("dead_url: cannot find a free port");
  ::close(fd);  // nothing listens there now
  return "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/v1";
}

void FaultServer::handle(const std::string& path, const std::string& body,
                         const std::string& authorization, int& status, std::string& reply,
                         std::string& retry_after) {
  int64_t index;
  Plan plan;
  json request = json::parse(body, nullptr, false);
  {
    std::lock_guard lock(mutex_);
    index = requests_++;
    bodies_.push_back(request);
    arrivals_.push_back(std::chrono::steady_clock::now());
    authorizations_.push_back(authorization);
    plan = plan_;
  }
  if (!plan.api_key.empty() && authorization != "Bearer " + plan.api_key) {
    status = 401;
    reply = json{{"error",
                  {{"message", "Incorrect API key provided"}, {"type", "invalid_request_error"}}}}
                .dump();
    return;
  }
  if (index < plan.fail_first) {
    status = plan.fail_status;
    reply =
        json{{"error",
              {{"message", "injected failure " + std::to_string(index)}, {"type", "server_error"}}}}
            .dump();
    return;
  }
  index -= plan.fail_first;
  if (index < plan.rate_limit_first) {
    status = 429;
    retry_after = plan.retry_after;
    reply =
        json{{"error", {{"message", "Rate limit reached"}, {"type", "rate_limit_error"}}}}.dump();
    return;
  }
  index -= plan.rate_limit_first;
  if (index < plan.hang_first) {
    std::unique_lock lock(mutex_);
    released_.wait(lock, [this] { return stopping_; });
    status = 0;
    return;
  }
  if (plan.delay_s > 0) {
    std::unique_lock lock(mutex_);
    if (released_.wait_for(lock, std::chrono::duration<double>(plan.delay_s),
                           [this] { return stopping_; })) {
      status = 0;  // died before answering
      return;
    }
  }
  if (request.is_discarded()) {
    status = 400;
    reply =
        json{{"error", {{"message", "malformed JSON"}, {"type", "invalid_request_error"}}}}.dump();
    return;
  }
  if (!plan.refuse_field.empty() && request.contains(plan.refuse_field)) {
    status = 400;
    reply = json{{"error",
                  {{"message", "Unrecognized request argument supplied: " + plan.refuse_field},
                   {"type", "invalid_request_error"}}}}
                .dump();
    return;
  }
  const int n = request.value("n", 1);
  json choices = json::array();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  if (path == "/v1/chat/completions") {
    const std::string last = request["messages"].back()["content"].get<std::string>();
    for (const auto& m : request["messages"])
      prompt_tokens += m["content"].get<std::string>().size();
    for (int i = 0; i < n; ++i) {
      std::string text = "echo: " + last + (i > 0 ? " #" + std::to_string(i) : "");
      completion_tokens += text.size();
      choices.push_back({{"index", i},
                         {"message", {{"role", "assistant"}, {"content", text}}},
                         {"finish_reason", "stop"}});
    }
  } else if (request.value("echo", false)) {
    // Scoring: every code point is a token with log-probability -0.5 (the first: null), then one
    // generated token "!" (-9) that a client must not count.
    int index_out = 0;
    for (const auto& p : request["prompt"]) {
      const std::string text = p.get<std::string>();
      json tokens = json::array(), values = json::array(), offsets = json::array();
      size_t cp = 0;
      for (size_t b = 0; b < text.size(); ++cp) {
        size_t len =
            std::min(utf8::sequence_length(static_cast<unsigned char>(text[b])), text.size() - b);
        tokens.push_back(text.substr(b, len));
        values.push_back(cp == 0 ? json(nullptr) : json(-0.5));
        offsets.push_back(cp);
        b += len;
      }
      tokens.push_back("!");
      values.push_back(-9.0);
      offsets.push_back(cp);
      prompt_tokens += static_cast<int64_t>(cp);
      choices.push_back(
          {{"index", index_out++},
           {"text", text + "!"},
           {"logprobs", {{"tokens", tokens}, {"token_logprobs", values}, {"text_offset", offsets}}},
           {"finish_reason", "length"}});
    }
  } else {
    const std::string prompt = request["prompt"].get<std::string>();
    prompt_tokens = static_cast<int64_t>(prompt.size());
    for (int i = 0; i < n; ++i) {
      std::string text = "completion: " + prompt + (i > 0 ? " #" + std::to_string(i) : "");
      completion_tokens += text.size();
      choices.push_back({{"index", i}, {"text", text}, {"finish_reason", "length"}});
    }
  }
  {
    std::lock_guard lock(mutex_);
    ++answered_;
  }
  status = 200;
  reply =
      json{{"id", "test"},
           {"object", path == "/v1/chat/completions" ? "chat.completion" : "text_completion"},
           {"model", request.value("model", "")},
           {"choices", choices},
           {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}}}}
          .dump();
}

}  // namespace seqit::testing

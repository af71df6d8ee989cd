// The OpenAI-compatible HTTP backend: requests go to /v1/chat/completions or /v1/completions of one
// or more servers (vLLM, llama.cpp's server, Ollama, OpenAI, `seqit serve`).
//
// One thread drives every transfer through a libcurl multi handle, so thousands of queued requests
// cost no threads; at most max_in_flight are on the wire at a time. A failed attempt is retried
// (429, 408/409/425, 5xx, network errors and timeouts) after the server's Retry-After or an
// exponential backoff with jitter; 4xx answers other than those fail at once. With several base
// URLs each request goes to the live URL with the fewest requests in flight; a URL whose connection
// fails or times out is left out for a cooldown (doubling while it stays down) and its requests
// move to the others without waiting.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "llm/backend.h"
#include "llm/retry.h"

namespace seqit::llm {

struct HttpBackendOptions {
  // Base URLs up to and including /v1, e.g. "http://127.0.0.1:8000/v1"; a URL with no path gets
  // /v1.
  std::vector<std::string> base_urls;
  std::string model;  // sent when a request names no model
  // The API key is read from this environment variable when the backend is made (empty name or
  // unset variable: no Authorization header). `api_key`, when set, wins.
  std::string api_key_env = "OPENAI_API_KEY";
  std::string api_key;
  int max_in_flight = 16;  // concurrency limit across all URLs
  RetryPolicy retry;
  double request_timeout_s = 600;  // one attempt, connection included
  double connect_timeout_s = 10;
  double requests_per_minute = 0;  // 0 = no limit
  // Token limit: each request is charged (prompt bytes / 4 + max_tokens * n) when sent, corrected
  // by the usage the server reports. 0 = no limit.
  double tokens_per_minute = 0;
  double dead_url_cooldown_s = 2;  // first cooldown of a URL that failed; doubles up to 60 s
};

// Counters since construction (monotonic; read at any time).
struct HttpStats {
  int64_t attempts = 0;                   // HTTP requests started, retries included
  int64_t retries = 0;                    // attempts after the first of a request
  int64_t succeeded = 0;                  // requests answered
  int64_t failed = 0;                     // requests that ended in an error
  std::vector<int64_t> attempts_per_url;  // in base_urls order
};

class HttpBackend final : public Backend {
 public:
  // Throws seqit::Error for options that cannot work (no URL, a URL that is not http(s), limits <
  // 1).
  explicit HttpBackend(HttpBackendOptions options);
  // Waits for every submitted request to finish (each has a timeout and a retry budget), then
  // stops.
  ~HttpBackend() override;

  void submit(Request request, ResponseCallback done) override;
  std::string default_model() const override;
  std::string describe() const override;

  HttpStats stats() const;
  // The normalised base URLs (with /v1), in order.
  const std::vector<std::string>& base_urls() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqit::llm

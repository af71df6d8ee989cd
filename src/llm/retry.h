// Retry timing and rate limits for the HTTP backend, kept apart so tests can check the arithmetic.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>

namespace seqit::llm {

using Clock = std::chrono::steady_clock;

// Which failures are retried, and how long to wait between attempts.
struct RetryPolicy {
  int max_retries = 5;              // attempts = 1 + max_retries at most
  double initial_backoff_s = 0.5;   // the wait before the first retry (before jitter)
  double backoff_multiplier = 2.0;  // each further retry waits this much longer ...
  double max_backoff_s = 30.0;      // ... up to this
  // A Retry-After from the server is honoured as given, up to this many seconds (a server asking
  // for longer is waited for this long, then retried).
  double max_retry_after_s = 120.0;
};

// The wait before retry number `retry` (1 = the first retry). With a server's Retry-After
// (retry_after_s >= 0) the wait is exactly that, capped at max_retry_after_s. Otherwise it is
// "equal jitter" exponential backoff: base = min(max_backoff, initial * multiplier^(retry-1)), and
// the wait is uniform in [base/2, base], so many clients that failed together do not retry
// together.
double retry_delay_s(const RetryPolicy& policy, int retry, std::optional<double> retry_after_s,
                     std::mt19937_64& rng);

// Parses a Retry-After header value: delta-seconds ("3", "1.5") or an HTTP-date
// ("Wed, 21 Oct 2015 07:28:00 GMT", relative to `now_unix`). nullopt when it is neither.
std::optional<double> parse_retry_after(std::string_view value, int64_t now_unix);

// HTTP statuses worth retrying: 408, 409, 425, 429 and 5xx.
bool is_retryable_status(int status);

// A token bucket: `rate` units per second refill it up to `capacity`. take() spends units and may
// drive the level negative (a request larger than what is left still goes, and later ones wait);
// wait_s() says how long until `amount` units are available. rate <= 0 means unlimited.
class TokenBucket {
 public:
  TokenBucket(double rate_per_s = 0, double capacity = 0);
  bool unlimited() const { return rate_ <= 0; }
  // Seconds from `now` until the level reaches min(amount, capacity); 0 when it already has.
  double wait_s(double amount, Clock::time_point now);
  void take(double amount, Clock::time_point now);
  // Adds back (negative: takes) a correction, e.g. actual tokens minus the estimate.
  void adjust(double amount, Clock::time_point now);
  double level(Clock::time_point now);

 private:
  void refill(Clock::time_point now);
  double rate_, capacity_, level_;
  Clock::time_point last_;
};

}  // namespace seqit::llm

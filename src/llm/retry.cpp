#include "llm/retry.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <string>

namespace seqit::llm {

double retry_delay_s(const RetryPolicy& policy, int retry, std::optional<double> retry_after_s,
                     std::mt19937_64& rng) {
  if (retry_after_s && *retry_after_s >= 0)
    return std::min(*retry_after_s, policy.max_retry_after_s);
  double base =
      policy.initial_backoff_s * std::pow(policy.backoff_multiplier, std::max(0, retry - 1));
  base = std::min(base, policy.max_backoff_s);
  std::uniform_real_distribution<double> half(0.5, 1.0);
  return base * half(rng);
}

std::optional<double> parse_retry_after(std::string_view value, int64_t now_unix) {
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front())))
    value.remove_prefix(1);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back())))
    value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::isdigit(static_cast<unsigned char>(value.front()))) {
    std::string s(value);
    char* end = nullptr;
    double seconds = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || !std::isfinite(seconds) || seconds < 0) return std::nullopt;
    return seconds;
  }
  // IMF-fixdate, the form RFC 9110 requires senders to use: "Sun, 06 Nov 1994 08:49:37 GMT".
  std::tm tm{};
  std::string s(value);
  const char* end = ::strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  const int64_t when = static_cast<int64_t>(::timegm(&tm));
  return std::max<double>(0.0, static_cast<double>(when - now_unix));
}

bool is_retryable_status(int status) {
  return status == 408 || status == 409 || status == 425 || status == 429 ||
         (status >= 500 && status <= 599);
}

TokenBucket::TokenBucket(double rate_per_s, double capacity)
    : rate_(rate_per_s),
      capacity_(std::max(capacity, 1.0)),
      level_(capacity_),
      last_(Clock::now()) {}

void TokenBucket::refill(Clock::time_point now) {
  if (now <= last_) return;
  level_ = std::min(capacity_, level_ + rate_ * std::chrono::duration<double>(now - last_).count());
  last_ = now;
}

double TokenBucket::wait_s(double amount, Clock::time_point now) {
  if (unlimited()) return 0;
  refill(now);
  const double need = std::min(amount, capacity_);
  return level_ >= need ? 0.0 : (need - level_) / rate_;
}

void TokenBucket::take(double amount, Clock::time_point now) {
  if (unlimited()) return;
  refill(now);
  level_ -= amount;
}

void TokenBucket::adjust(double amount, Clock::time_point now) {
  if (unlimited()) return;
  refill(now);
  level_ = std::min(capacity_, level_ + amount);
}

double TokenBucket::level(Clock::time_point now) {
  refill(now);
  return level_;
}

}  // namespace seqit::llm

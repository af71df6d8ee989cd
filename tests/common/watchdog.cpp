// The per-test watchdog (see allow_seconds in testing.h). It registers itself with GoogleTest while
// the test binary starts, so every test of every binary that links seqit_testing runs under it.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "testing.h"

namespace seqit::testing {
namespace {

using Clock = std::chrono::steady_clock;

int default_budget_seconds() {
  if (const char* s = std::getenv("SEQIT_TEST_TIMEOUT_S")) {
    const int v = std::atoi(s);
    if (v > 0) return v;
  }
  return 60;
}

class Watchdog {
 public:
  static Watchdog& instance() {
    static Watchdog* w = new Watchdog();  // never destroyed: its thread outlives static destructors
    return *w;
  }

  void start(const ::testing::TestInfo& info) {
    std::lock_guard lock(mutex_);
    name_ = std::string(info.test_suite_name()) + "." + info.name();
    budget_ = default_budget_seconds();
    start_ = Clock::now();
    armed_ = true;
    changed_.notify_all();
  }
  void end() {
    std::lock_guard lock(mutex_);
    armed_ = false;
    changed_.notify_all();
  }
  void allow(int seconds) {
    // Scaled like the default (SEQIT_TEST_TIMEOUT_S=300 under the sanitizers gives 5x).
    seconds = static_cast<int>(static_cast<int64_t>(seconds) * default_budget_seconds() / 60);
    std::lock_guard lock(mutex_);
    if (seconds > budget_) budget_ = seconds;
    changed_.notify_all();
  }

 private:
  Watchdog() {
    std::thread([this] { watch(); }).detach();
  }

  void watch() {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (!armed_) {
        changed_.wait(lock);
        continue;
      }
      const auto deadline = start_ + std::chrono::seconds(budget_);
      if (changed_.wait_until(lock, deadline) == std::cv_status::timeout && armed_ &&
          Clock::now() >= start_ + std::chrono::seconds(budget_)) {
        std::fprintf(stderr,
                     "\n[watchdog] %s did not finish within its %d s budget: ending the test "
                     "binary (exit 124). A test that is slow by design calls "
                     "seqit::testing::allow_seconds(N); SEQIT_TEST_TIMEOUT_S sets the default.\n",
                     name_.c_str(), budget_);
        std::fflush(stderr);
        std::fflush(stdout);
        std::_Exit(124);
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  std::string name_;
  int budget_ = 60;
  Clock::time_point start_;
  bool armed_ = false;
};

// GoogleTest owns (and deletes at exit) the listeners it is given: this one only forwards.
class WatchdogListener : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo& info) override { Watchdog::instance().start(info); }
  void OnTestEnd(const ::testing::TestInfo&) override { Watchdog::instance().end(); }
};

[[maybe_unused]] const bool registered = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new WatchdogListener);
  return true;
}();

}  // namespace

void allow_seconds(int seconds) {
  Watchdog::instance().allow(seconds);
}

}  // namespace seqit::testing

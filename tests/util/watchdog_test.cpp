// The per-test watchdog (tests/common/watchdog.cpp) really ends a hung test, fast and by name: this
// binary runs itself on a test that hangs on purpose (disabled in normal runs) with a 1 s budget.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "testing.h"

namespace seqit::testing {
namespace {

TEST(Watchdog, DISABLED_HangsOnPurpose) {
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

TEST(Watchdog, DISABLED_SlowButAllowed) {
  allow_seconds(120);  // 2 s at SEQIT_TEST_TIMEOUT_S=1
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
}

int run_self(const std::string& filter, std::string* output) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  return run_command("SEQIT_TEST_TIMEOUT_S=1 " + shell_quote(self) +
                         " --gtest_also_run_disabled_tests --gtest_filter=" + filter,
                     output);
}

TEST(Watchdog, EndsAHungTestAndNamesIt) {
  std::string output;
  const auto t0 = std::chrono::steady_clock::now();
  const int status = run_self("Watchdog.DISABLED_HangsOnPurpose", &output);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(status, 124) << output;
  EXPECT_NE(
      output.find("[watchdog] Watchdog.DISABLED_HangsOnPurpose did not finish within its 1 s"),
      std::string::npos)
      << output;
  EXPECT_LT(seconds, 10.0);
}

TEST(Watchdog, AllowSecondsRaisesTheBudget) {
  std::string output;
  EXPECT_EQ(run_self("Watchdog.DISABLED_SlowButAllowed", &output), 0) << output;
}

}  // namespace
}  // namespace seqit::testing

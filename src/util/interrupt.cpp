#include "util/interrupt.h"

#include <signal.h>

#include <atomic>
#include <mutex>

namespace seqit {
namespace {

std::atomic<int> g_signal{0};
// Guards may overlap (a study trains two arms at once on two threads): the first one installs the
// handlers and clears the flag, the last one restores the previous handlers.
std::mutex g_mutex;
int g_guards = 0;
struct sigaction g_old_int, g_old_term;

void on_signal(int sig) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, sig)) {
    // Second request: give up on the clean stop and die of the signal as the user expects.
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }
}

}  // namespace

InterruptGuard::InterruptGuard() {
  std::lock_guard lock(g_mutex);
  if (g_guards++ > 0) return;
  g_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, &g_old_int);
  ::sigaction(SIGTERM, &sa, &g_old_term);
}

InterruptGuard::~InterruptGuard() {
  std::lock_guard lock(g_mutex);
  if (--g_guards > 0) return;
  ::sigaction(SIGINT, &g_old_int, nullptr);
  ::sigaction(SIGTERM, &g_old_term, nullptr);
}

bool InterruptGuard::requested() const {
  return g_signal.load() != 0;
}
int InterruptGuard::signal() const {
  return g_signal.load();
}

}  // namespace seqit

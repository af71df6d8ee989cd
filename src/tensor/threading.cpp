#include "tensor/threading.h"

#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "tensor/cpu_internal.h"

namespace seqit::tensor {
namespace {

// ---- The OpenMP wait policy -------------------------------------------------------------------
// After a parallel region, libgomp's idle workers spin for GOMP_SPINCOUNT iterations of `pause`
// before they sleep on a futex. The default (300,000, or "infinite" with OMP_WAIT_POLICY=active) is
// ~9 ms of spinning per region on this machine (a `pause` costs ~30 ns under KVM): a worker burns a
// core while the main thread does serial work (sampling, tokenising, HTTP), and on a 2-core machine
// shared with other processes — or with a second runtime's pool, the trap in ENGINE_NOTES.md — that
// stolen core halves throughput. Fully passive (spin 0) is the other extreme: every region then
// pays a futex wake-up (tens of microseconds in a VM), and a decode step runs hundreds of small
// regions. seqit uses a short spin, kSpinCount pauses (~0.3 ms here): back-to-back regions inside
// one forward pass find the workers awake; anything idle longer than that sleeps instead of
// spinning.
//
// libgomp reads these variables once, in its own library constructor, which runs before any code of
// ours; there is no API to change the spin afterwards. So the `seqit` executable (and only it: a
// library must not exec its host process, which would surprise debuggers, test runners and
// embedders) calls establish_openmp_wait_policy() first thing in main(): when the user has set
// neither variable it sets GOMP_SPINCOUNT and re-executes itself once (execv of /proc/self/exe with
// the same arguments and environment), before any thread exists. A user who sets OMP_WAIT_POLICY or
// GOMP_SPINCOUNT keeps their choice; SEQIT_OPENMP_REEXEC=0 disables the re-execution.
constexpr const char* kSpinCount = "10000";
constexpr const char* kMarker = "SEQIT_OPENMP_REEXEC";

std::string describe_policy() {
  if (const char* policy = std::getenv("OMP_WAIT_POLICY"))
    return std::string("OMP_WAIT_POLICY=") + policy + " (environment)";
  if (const char* spin = std::getenv("GOMP_SPINCOUNT")) {
    const char* marker = std::getenv(kMarker);
    return std::string("GOMP_SPINCOUNT=") + spin +
           (marker && std::string(marker) == "done" ? " (seqit default)" : " (environment)");
  }
  return "libgomp default (GOMP_SPINCOUNT=300000)";
}

std::string g_policy = describe_policy();

std::atomic<int> g_threads{0};  // 0: not set, use every available core

}  // namespace

void set_num_threads(int n) {
  g_threads.store(n > 0 ? n : 0, std::memory_order_relaxed);
  detail::apply_threads();
}

int num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_num_procs();
}

const char* openmp_wait_policy() {
  return g_policy.c_str();
}

void establish_openmp_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  if (const char* marker = std::getenv(kMarker)) {
    if (std::string(marker) == "0" || std::string(marker) == "done") return;
  }
  if (argv == nullptr || argv[0] == nullptr) return;
  setenv("GOMP_SPINCOUNT", kSpinCount, 1);
  setenv(kMarker, "done", 1);
  execv("/proc/self/exe", argv);
  // exec failed (no /proc, a sandbox): carry on with libgomp's default and say so.
  unsetenv("GOMP_SPINCOUNT");
  unsetenv(kMarker);
  g_policy = "libgomp default (GOMP_SPINCOUNT=300000; re-exec failed)";
}

namespace detail {
// omp_set_num_threads sets the calling thread's ICV only, and oneDNN sizes its parallel regions
// with omp_get_max_threads() of the calling thread; so every op entry point calls this.
void apply_threads() {
  const int n = num_threads();
  if (omp_get_max_threads() != n) omp_set_num_threads(n);
}
}  // namespace detail

}  // namespace seqit::tensor

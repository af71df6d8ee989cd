// Small helpers shared by the benchmarks: timing, load average, peak resident memory.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <unistd.h>

namespace seqit::bench {

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of the whole process (all threads).
inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Wall time, and the process CPU time divided by the thread count: the time the step would take if
// its threads had the cores to themselves. On a machine shared with other processes (the helpers'
// compilers here) wall time measures our share of the cores; the CPU-time figure estimates the
// unshared speed (it counts OpenMP spin-waiting as work, so it errs towards slower).
struct Timing {
  double best = 0, median = 0;
  double cpu_median = 0;  // process CPU seconds / threads, median over runs
  int runs = 0;
};
// One warm-up call, then repeats until `min_seconds` have passed (at least `min_runs`).
inline Timing time_it(const std::function<void()>& fn, int threads, double min_seconds = 0.5,
                      int min_runs = 3) {
  fn();
  std::vector<double> t, c;
  const double start = now_seconds();
  while (static_cast<int>(t.size()) < min_runs || now_seconds() - start < min_seconds) {
    const double t0 = now_seconds(), c0 = process_cpu_seconds();
    fn();
    t.push_back(now_seconds() - t0);
    c.push_back((process_cpu_seconds() - c0) / threads);
    if (t.size() >= 200) break;
  }
  std::sort(t.begin(), t.end());
  std::sort(c.begin(), c.end());
  return Timing{t.front(), t[t.size() / 2], c[c.size() / 2], static_cast<int>(t.size())};
}

// "1.93 1.75 1.20" from /proc/loadavg: other processes' load, printed with every table.
inline std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Peak resident set (VmHWM) in MB, and a reset of that peak (Linux: write 5 to clear_refs).
inline double peak_rss_mb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}
inline double current_rss_mb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}
inline void reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
}

// The source checkout: $SEQIT_SOURCE_DIR, else four levels above this executable
// (build/<preset>/bin/x), for scripts and oracle packages the benches run.
inline std::filesystem::path repository_root() {
  if (const char* env = std::getenv("SEQIT_SOURCE_DIR")) return env;
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return std::filesystem::current_path();
  buf[n] = 0;
  return std::filesystem::path(buf).parent_path().parent_path().parent_path().parent_path();
}

}  // namespace seqit::bench

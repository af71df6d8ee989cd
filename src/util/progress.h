// Progress reporting for long work. On a terminal: one line redrawn in place with count, rate and
// ETA. Otherwise (logs, CI): a plain line every few seconds (SEQIT_PROGRESS_INTERVAL, default 5 s).
// Thread-safe: workers may call add() concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace seqit {

class Progress {
 public:
  // total < 0 means unknown: the line shows count and rate, no percentage or ETA.
  explicit Progress(std::string label, int64_t total = -1, std::string unit = "it");
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void add(int64_t n = 1);
  void set(int64_t done);
  void set_total(int64_t total);
  // Free text shown after the numbers (e.g. "loss 2.31").
  void set_note(std::string note);
  // A hidden bar counts but never draws (e.g. a job that runs beside others under one bar).
  void set_visible(bool visible);
  // Prints the final line once; later calls do nothing.
  void finish();
  int64_t done() const;

  // Globally enable or disable drawing (the CLI's --quiet); counting still works.
  static void set_enabled(bool enabled);
  // "1h02m", "2m18s", "12s", "0.4s".
  static std::string format_duration(double seconds);

 private:
  void maybe_draw_locked(bool force);
  std::string render_locked(double elapsed) const;

  mutable std::mutex mutex_;
  std::string label_, unit_, note_;
  int64_t total_ = -1, done_ = 0;
  bool finished_ = false;
  bool tty_ = false;
  bool visible_ = true;
  double interval_s_ = 5.0;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

namespace progress_detail {
// Called by the logger before it writes, so a log line never lands on a half-drawn bar.
void clear_line_for_log();
}  // namespace progress_detail

}  // namespace seqit

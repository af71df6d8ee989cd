#include "util/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace seqit {
namespace {
std::atomic<bool> g_enabled{true};
std::atomic<bool> g_line_dirty{false};  // a bar is drawn on the current terminal line

bool stderr_is_tty() {
  if (!isatty(STDERR_FILENO)) return false;
  const char* term = std::getenv("TERM");
  return !(term && std::strcmp(term, "dumb") == 0);
}
}  // namespace

namespace progress_detail {
void clear_line_for_log() {
  if (g_line_dirty.exchange(false)) std::fputs("\r\033[K", stderr);
}
}  // namespace progress_detail

Progress::Progress(std::string label, int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(stderr_is_tty()) {
  if (const char* s = std::getenv("SEQIT_PROGRESS_INTERVAL")) {
    double v = std::atof(s);
    if (v > 0) interval_s_ = v;
  }
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  finish();
}

void Progress::add(int64_t n) {
  std::lock_guard lock(mutex_);
  done_ += n;
  maybe_draw_locked(false);
}

void Progress::set(int64_t done) {
  std::lock_guard lock(mutex_);
  done_ = done;
  maybe_draw_locked(false);
}

void Progress::set_total(int64_t total) {
  std::lock_guard lock(mutex_);
  total_ = total;
}

void Progress::set_note(std::string note) {
  std::lock_guard lock(mutex_);
  note_ = std::move(note);
}

int64_t Progress::done() const {
  std::lock_guard lock(mutex_);
  return done_;
}

void Progress::finish() {
  std::lock_guard lock(mutex_);
  if (finished_) return;
  finished_ = true;
  maybe_draw_locked(true);
  if (tty_ && visible_ && g_enabled.load()) {
    std::fputc('\n', stderr);
    g_line_dirty.store(false);
  }
}

void Progress::set_enabled(bool enabled) {
  g_enabled.store(enabled);
}

std::string Progress::format_duration(double s) {
  if (s < 0 || s != s) return "?";
  if (s < 10) return fmt::format("{:.1f}s", s);
  auto total = static_cast<int64_t>(s + 0.5);
  if (total < 60) return fmt::format("{}s", total);
  if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
}

std::string Progress::render_locked(double elapsed) const {
  double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string line = label_ + ": ";
  if (total_ >= 0) {
    double pct =
        total_ > 0 ? 100.0 * static_cast<double>(done_) / static_cast<double>(total_) : 100.0;
    line += fmt::format("{}/{} {} ({:.1f}%)", done_, total_, unit_, pct);
  } else {
    line += fmt::format("{} {}", done_, unit_);
  }
  line += fmt::format(", {:.3g} {}/s", rate, unit_);
  if (finished_) {
    line += ", took " + format_duration(elapsed);
  } else if (total_ > 0 && rate > 0) {
    line += ", ETA " + format_duration(static_cast<double>(total_ - done_) / rate);
  }
  if (!note_.empty()) line += ", " + note_;
  return line;
}

void Progress::set_visible(bool visible) {
  std::lock_guard lock(mutex_);
  visible_ = visible;
}

void Progress::maybe_draw_locked(bool force) {
  if (!visible_ || !g_enabled.load()) return;
  auto now = std::chrono::steady_clock::now();
  double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (!force && since_draw < (tty_ ? 0.1 : interval_s_)) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  std::string line = render_locked(elapsed);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    g_line_dirty.store(true);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace seqit

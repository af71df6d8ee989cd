#include "util/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "util/error.h"
#include "util/progress.h"

namespace seqit::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::mutex g_mutex;
std::string g_prefix;  // set once at start-up (before any thread logs)
}  // namespace

void set_prefix(std::string prefix) {
  std::lock_guard lock(g_mutex);
  g_prefix = std::move(prefix);
}

void set_level(Level l) {
  g_level.store(l);
}
Level level() {
  return g_level.load(std::memory_order_relaxed);
}

Level parse_level(std::string_view name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn" || name == "warning") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "off" || name == "quiet") return Level::off;
  throw Error(
      fmt::format("unknown log level '{}' (expected debug, info, warn, error or off)", name));
}

void write(Level l, std::string_view message) {
  static constexpr const char* kNames[] = {"debug", "info", "warning", "error", ""};
  std::lock_guard lock(g_mutex);
  // A progress bar may own the current terminal line; clear it so the message starts clean.
  progress_detail::clear_line_for_log();
  std::fprintf(stderr, "seqit %s: %s%.*s\n", kNames[static_cast<int>(l)], g_prefix.c_str(),
               static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
}

}  // namespace seqit::log

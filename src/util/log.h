// Leveled logging to stderr. The level is set once by the CLI (--log-level / SEQIT_LOG_LEVEL).
#pragma once

#include <fmt/core.h>

#include <string>
#include <string_view>

namespace seqit::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_level(Level level);
Level level();
// Parses "debug|info|warn|error|off"; throws seqit::Error on anything else.
Level parse_level(std::string_view name);
void write(Level level, std::string_view message);
// Text put before every message ("rank 1: " in a job of several processes).
void set_prefix(std::string prefix);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::debug) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::info) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::warn) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (level() <= Level::error) write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace seqit::log

// Minimal leveled logging to stderr (stdout is reserved for JSON results).
#pragma once

#include <fmt/format.h>

#include <cstdio>

namespace sparrow {

enum class LogLevel { kDebug, kInfo, kWarn, kError };
LogLevel log_level();
void set_log_level(LogLevel level);

template <typename... Args>
void log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (level < log_level()) return;
  static constexpr const char* kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  fmt::print(stderr, "[sparrow {}] {}\n", kNames[int(level)], fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace sparrow

// Structured logs: one line per event on stderr, in logfmt:
//   time=2026-11-25T12:00:00.123456Z level=info component=server msg="listening"
//   address=127.0.0.1:7433
// The first four keys are always there, in that order. Values that hold
// spaces, quotes, '=' or control characters are quoted with C escapes.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace replifs::telemetry {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

struct LogField {
  LogField(const char* k, const std::string& v) : key(k), value(v) {}
  LogField(const char* k, const char* v) : key(k), value(v) {}
  LogField(const char* k, const absl::Status& status) : key(k), value(status.ToString()) {}
  template <typename Number, typename = std::enable_if_t<std::is_arithmetic_v<Number>>>
  LogField(const char* k, Number n) : key(k), value(std::to_string(n)) {}

  std::string key;
  std::string value;
};

// Writes one line to stderr with a single write(2), so lines from threads
// (and processes sharing the file) never interleave. REPLIFS_LOG_LEVEL
// (debug, info (default), warn, error, none) drops the lines below it.
void Log(LogLevel level, const char* component, const std::string& message,
         std::initializer_list<LogField> fields = {});

inline void LogInfo(const char* component, const std::string& message,
                    std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kInfo, component, message, fields);
}
inline void LogWarn(const char* component, const std::string& message,
                    std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kWarn, component, message, fields);
}
inline void LogError(const char* component, const std::string& message,
                     std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kError, component, message, fields);
}

// Lines logged at `level` by this process so far (exported as a metric).
uint64_t LogLinesAt(LogLevel level);
const char* LogLevelName(LogLevel level);

// The line Log() writes, without the newline.
std::string FormatLogLine(absl::Time time, LogLevel level, const char* component,
                          const std::string& message, std::initializer_list<LogField> fields);

// Parses one logfmt line into its keys and (unescaped) values: for tests and
// tools that read the logs. InvalidArgument names what is wrong.
absl::StatusOr<std::map<std::string, std::string>> ParseLogLine(const std::string& line);

}  // namespace replifs::telemetry

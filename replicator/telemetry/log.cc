#include "replicator/telemetry/log.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace replifs::telemetry {
namespace {

std::atomic<uint64_t> lines_at[4];

// REPLIFS_LOG_LEVEL=debug|info|warn|error|none: lines below it are counted
// but not written. Read once.
int MinimumLevel() {
  static const int minimum = [] {
    const char* env = getenv("REPLIFS_LOG_LEVEL");
    const std::string level = env == nullptr ? "" : env;
    if (level == "debug") return 0;
    if (level == "warn") return 2;
    if (level == "error") return 3;
    if (level == "none") return 4;
    return 1;
  }();
  return minimum;
}

bool NeedsQuotes(const std::string& value) {
  if (value.empty()) return true;
  for (unsigned char c : value) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) return true;
  }
  return false;
}

void AppendPair(std::string* line, const std::string& key, const std::string& value) {
  if (!line->empty()) *line += ' ';
  // Keys are ours; keep them to the characters a parser expects.
  for (char c : key) *line += (c == ' ' || c == '=' || c == '"') ? '_' : c;
  *line += '=';
  if (NeedsQuotes(value)) {
    absl::StrAppend(line, "\"", absl::CEscape(value), "\"");
  } else {
    *line += value;
  }
}

}  // namespace

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

std::string FormatLogLine(absl::Time time, LogLevel level, const char* component,
                          const std::string& message, std::initializer_list<LogField> fields) {
  std::string line;
  AppendPair(&line, "time", absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", time, absl::UTCTimeZone()));
  AppendPair(&line, "level", LogLevelName(level));
  AppendPair(&line, "component", component);
  AppendPair(&line, "msg", message);
  for (const LogField& field : fields) AppendPair(&line, field.key, field.value);
  return line;
}

void Log(LogLevel level, const char* component, const std::string& message,
         std::initializer_list<LogField> fields) {
  lines_at[static_cast<int>(level)].fetch_add(1, std::memory_order_relaxed);
  if (static_cast<int>(level) < MinimumLevel()) return;
  const std::string line = FormatLogLine(absl::Now(), level, component, message, fields) + "\n";
  (void)!write(STDERR_FILENO, line.data(), line.size());
}

uint64_t LogLinesAt(LogLevel level) {
  return lines_at[static_cast<int>(level)].load(std::memory_order_relaxed);
}

absl::StatusOr<std::map<std::string, std::string>> ParseLogLine(const std::string& line) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  while (i < line.size()) {
    if (line[i] == ' ') {
      ++i;
      continue;
    }
    const size_t eq = line.find('=', i);
    if (eq == std::string::npos || eq == i) {
      return absl::InvalidArgumentError(absl::StrCat("no key=value at column ", i));
    }
    const std::string key = line.substr(i, eq - i);
    if (key.find_first_of(" \"") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad key \"", key, "\""));
    }
    i = eq + 1;
    std::string value;
    if (i < line.size() && line[i] == '"') {
      size_t end = i + 1;
      while (end < line.size() && line[end] != '"') end += line[end] == '\\' ? 2 : 1;
      if (end >= line.size())
        return absl::InvalidArgumentError(absl::StrCat("unterminated value of ", key));
      std::string error;
      if (!absl::CUnescape(line.substr(i + 1, end - i - 1), &value, &error)) {
        return absl::InvalidArgumentError(absl::StrCat("value of ", key, ": ", error));
      }
      i = end + 1;
      if (i < line.size() && line[i] != ' ') {
        return absl::InvalidArgumentError(absl::StrCat("junk after the value of ", key));
      }
    } else {
      const size_t end = std::min(line.find(' ', i), line.size());
      value = line.substr(i, end - i);
      i = end;
    }
    if (!out.emplace(key, value).second)
      return absl::InvalidArgumentError(absl::StrCat("key ", key, " twice"));
  }
  return out;
}

}  // namespace replifs::telemetry

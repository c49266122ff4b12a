#include "replicator/server/fault_injection.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace replifs::fault {
namespace {

// Every point compiled into the binaries; Arm refuses others (typos).
constexpr const char* kKnownPoints[] = {
    // client daemon
    "after-journal-append",  // record written, scheduler not told yet
    "journal-append-write",  // the record's write(2): eio/enospc/short/kill
    "journal-fdatasync",     // the group commit's fdatasync: eio/kill
    "journal-write-acked",   // before ACKED is replaced (trim)
    "before-send",           // journal synced, batch not yet sent
    "after-ack-before-trim", // server acknowledged, journal not trimmed
    // server
    "mid-chunk-write",          // chunk temp file written, not synced or renamed
    "before-server-fsync",      // catalog transaction built, COMMIT (fsync) not run
    "after-commit-before-ack",  // transaction durable, reply not sent
};

struct Armed {
  Action action = Action::kKill;
  int nth = 1;
  int delay_ms = 0;
  int hits = 0;
};

std::mutex mu;
std::map<std::string, Armed> armed;  // guarded by mu
std::atomic<bool> any_armed{false};

absl::Status ParseLocked(const std::string& spec) {
  std::map<std::string, Armed> parsed;
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipWhitespace())) {
    Armed a;
    std::string point(item);
    if (size_t at = point.find('@'); at != std::string::npos) {
      if (!absl::SimpleAtoi(point.substr(at + 1), &a.nth) || a.nth < 1) {
        return absl::InvalidArgumentError(absl::StrCat("REPLIFS_FAULT: bad @N in '", item, "'"));
      }
      point.resize(at);
    }
    std::string action = "kill";
    if (size_t colon = point.find(':'); colon != std::string::npos) {
      action = point.substr(colon + 1);
      point.resize(colon);
    }
    bool known = false;
    for (const char* p : kKnownPoints) known |= point == p;
    if (!known) return absl::InvalidArgumentError(absl::StrCat("REPLIFS_FAULT: unknown point '", point, "'"));
    if (action == "kill") a.action = Action::kKill;
    else if (action == "eio") a.action = Action::kEio;
    else if (action == "enospc") a.action = Action::kEnospc;
    else if (action == "short") a.action = Action::kShort;
    else if (action.rfind("delay=", 0) == 0 && absl::SimpleAtoi(action.substr(6), &a.delay_ms)) {
      a.action = Action::kDelay;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("REPLIFS_FAULT: unknown action '", action, "'"));
    }
    parsed[point] = a;
  }
  armed = std::move(parsed);
  any_armed = !armed.empty();
  return absl::OkStatus();
}

// Reads REPLIFS_FAULT once; a bad spec is reported and ignored.
void LoadFromEnvironment() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* spec = std::getenv("REPLIFS_FAULT");
    if (spec == nullptr || *spec == '\0') return;
    std::lock_guard lock(mu);
    if (absl::Status s = ParseLocked(spec); !s.ok()) {
      std::fprintf(stderr, "replifs: %s\n", std::string(s.message()).c_str());
    } else {
      std::fprintf(stderr, "replifs: fault injection armed: %s\n", spec);
    }
  });
}

}  // namespace

Action Hit(const char* point) {
  LoadFromEnvironment();
  if (!any_armed.load(std::memory_order_relaxed)) return Action::kNone;
  Armed fired;
  {
    std::lock_guard lock(mu);
    auto it = armed.find(point);
    if (it == armed.end()) return Action::kNone;
    if (++it->second.hits != it->second.nth) return Action::kNone;
    fired = it->second;
  }
  std::fprintf(stderr, "replifs: fault injected at %s (hit %d)\n", point, fired.nth);
  switch (fired.action) {
    case Action::kKill:
      ::kill(::getpid(), SIGKILL);
      ::pause();
      break;
    case Action::kDelay:
      std::this_thread::sleep_for(std::chrono::milliseconds(fired.delay_ms));
      break;
    default:
      break;
  }
  return fired.action;
}

absl::Status Check(const char* point) {
  switch (Hit(point)) {
    case Action::kEio:
    case Action::kShort:
      return absl::InternalError(absl::StrCat(point, ": ", std::strerror(EIO), " (injected)"));
    case Action::kEnospc:
      return absl::ResourceExhaustedError(
          absl::StrCat(point, ": ", std::strerror(ENOSPC), " (injected)"));
    default:
      return absl::OkStatus();
  }
}

absl::Status Arm(const std::string& spec) {
  LoadFromEnvironment();
  std::lock_guard lock(mu);
  return ParseLocked(spec);
}

int Hits(const char* point) {
  std::lock_guard lock(mu);
  auto it = armed.find(point);
  return it == armed.end() ? 0 : it->second.hits;
}

bool NotesEnabled() {
  static const char* dir = std::getenv("REPLIFS_FAULT_NOTES");
  return dir != nullptr && *dir != '\0';
}

void Note(const char* name, const std::string& value) {
  if (!NotesEnabled()) return;
  static std::mutex note_mu;  // one writer of each tmp file at a time
  std::lock_guard lock(note_mu);
  const std::string path = absl::StrCat(std::getenv("REPLIFS_FAULT_NOTES"), "/", name);
  const std::string tmp = absl::StrCat(path, ".tmp");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  ::close(fd);
  if (ok) ::rename(tmp.c_str(), path.c_str());
}

}  // namespace replifs::fault

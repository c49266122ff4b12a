// The mount daemon: one protected directory. Mounts the passthrough
// filesystem over it and runs the journal, scheduler, client and control
// channel until the directory is unmounted.
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "cli/protection_config.h"

namespace replifs::cli {

// `ready` is called exactly once: OK once the mount is live, or the error
// that prevented it. Returns the process exit code.
int RunDaemon(const ProtectionConfig& config, const std::function<void(const absl::Status&)>& ready);

}  // namespace replifs::cli

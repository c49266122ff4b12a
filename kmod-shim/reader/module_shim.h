// The daemon's side of the loadable module (/dev/replifs_shim): sets the
// protected roots by ioctl, hands each record read from the device to a
// callback, and switches protection off (ioctl CLEAR) when destroyed.
// The same records as the eBPF ring buffer: the same reader parses both.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kmod-shim/include/replifs_shim.h"

namespace replifs::shim {

class ModuleShim {
 public:
  using RecordsFn = std::function<void(const void* data, size_t size)>;  // whole records, back to back

  static absl::StatusOr<std::unique_ptr<ModuleShim>> Start(const replifs_shim_config& config, RecordsFn on_records,
                                                           const std::string& device = REPLIFS_SHIM_DEVICE);
  ~ModuleShim();  // Stop(), then closes the device

  // Protection off (ioctl CLEAR): the original syscalls run untouched again.
  absl::Status Stop();

  // Delivers what is queued; waits up to timeout_ms for the first record.
  absl::Status Poll(int timeout_ms);
  uint64_t dropped() const;  // records the module's queue had no room for

 private:
  ModuleShim() = default;
  int fd_ = -1;
  RecordsFn on_records_;
};

// Which implementation `replifs mount` runs: the module where it is loaded
// (its character device exists), else eBPF. REPLIFS_SHIM (env) overrides:
// "off", "ebpf" or "module".
enum class ShimKind { kOff, kModule, kEbpf };
ShimKind ChooseShim(const char* env_value, const std::string& device = REPLIFS_SHIM_DEVICE);
const char* ShimKindName(ShimKind kind);  // "off", "module", "ebpf"

}  // namespace replifs::shim

// Loads the eBPF shim (replifs_shim.bpf.c), attaches it to the raw
// sys_enter/sys_exit tracepoints (else the syscall tracepoints of the
// predetermined set; REPLIFS_SHIM_HOOKS=tracepoints forces those), and hands its ring-buffer records
// to a callback. Detaching (destructor) puts the syscalls back as they were.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kmod-shim/include/replifs_shim.h"

namespace replifs::shim {

class BpfShim {
 public:
  using RecordFn = std::function<void(const void* data, size_t size)>;

  // Loads and attaches (mounting tracefs at /sys/kernel/tracing where the
  // per-syscall tracepoints are used). `config` names the protected roots and the daemon's pid.
  static absl::StatusOr<std::unique_ptr<BpfShim>> Start(const replifs_shim_config& config, RecordFn on_record);
  ~BpfShim();

  // Delivers pending records; waits up to timeout_ms for the first.
  absl::Status Poll(int timeout_ms);

  // Counters kept by the programs.
  uint64_t dropped() const;     // records the ring buffer had no room for
  uint64_t sent() const;        // records delivered
  uint64_t untracked() const;   // calls not tracked (no per-thread slot, spill table full)
  uint64_t unresolved() const;  // calls in a protected device the programs could not name (rescan)
  uint64_t vma_busy() const;    // msync/munmap whose mapping could not be looked up (fanotify catches the close)
  int attached() const { return attached_; }  // programs attached (2 raw, or one per tracepoint)
  bool raw() const { return raw_; }            // raw sys_enter/sys_exit, else per-syscall tracepoints

 private:
  BpfShim() = default;
  struct State;
  std::unique_ptr<State> state_;
  RecordFn on_record_;
  int attached_ = 0;
  bool raw_ = false;
};

// The tracepoint names the shim attaches to ("write", "openat", ...).
const std::vector<const char*>& ShimTracepoints();

}  // namespace replifs::shim

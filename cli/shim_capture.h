// The daemon's shim reader: loads the kernel shim (eBPF) for the protected
// directory, turns its records into ChangeEvents (source SHIM) for the same
// EventSink the overlay uses, and tells the overlay to drop what it cached
// of each path changed underneath it. Lost records become a rescan of the
// tree, never silence.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "fusefs/event_sink.h"
#include "fusefs/passthrough_fs.h"

namespace replifs::cli {

class ShimCapture {
 public:
  // root_fd: the protected directory (opened before the overlay covers it);
  // mountpoint: its absolute path. Fails (clearly) where the shim cannot be
  // loaded: not root, no BPF, not built.
  static absl::StatusOr<std::unique_ptr<ShimCapture>> Start(int root_fd, const std::string& mountpoint,
                                                            fusefs::EventSink* sink);
  ~ShimCapture();  // detaches: the syscalls are traced no more

  // Set once the overlay is mounted (invalidations go there from then on).
  void SetOverlay(fusefs::PassthroughFs* fs) { overlay_ = fs; }

  std::string layer() const { return "ebpf"; }
  uint64_t events() const { return events_; }
  uint64_t dropped() const { return dropped_; }

 private:
  ShimCapture() = default;
  void Run();

  struct Impl;
  std::unique_ptr<Impl> impl_;
  fusefs::EventSink* sink_ = nullptr;
  std::atomic<fusefs::PassthroughFs*> overlay_{nullptr};
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> dropped_{0};
  std::thread thread_;
};

}  // namespace replifs::cli

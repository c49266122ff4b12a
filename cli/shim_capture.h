// The daemon's shim reader: runs the kernel shim for the protected directory
// -- the loadable module where it is loaded (/dev/replifs_shim), else eBPF --
// plus a fanotify backstop on the backing filesystem, turns what they report
// into ChangeEvents (source SHIM) for the same EventSink the overlay uses,
// and tells the overlay to drop what it cached of each path changed
// underneath it. Lost or unnameable events become a rescan of the tree,
// never silence.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "fusefs/event_sink.h"
#include "fusefs/passthrough_fs.h"
#include "kmod-shim/reader/shim_record.h"

namespace replifs::cli {

class ShimCapture {
 public:
  // root_fd: the protected directory (opened before the overlay covers it);
  // mountpoint: its absolute path. Fails (clearly) where no shim can be
  // loaded: not root, no BPF, not built, switched off (REPLIFS_SHIM=off).
  static absl::StatusOr<std::unique_ptr<ShimCapture>> Start(int root_fd, const std::string& mountpoint,
                                                            fusefs::EventSink* sink);
  ~ShimCapture();  // detaches: the syscalls are traced no more, the fanotify mark is gone

  // Set once the overlay is mounted (invalidations go there from then on).
  void SetOverlay(fusefs::PassthroughFs* fs) { overlay_ = fs; }

  // "module" or "ebpf", then "fanotify" when the backstop runs.
  std::vector<std::string> layers() const;
  uint64_t events() const { return events_; }
  uint64_t dropped() const { return dropped_; }      // records lost (queue full)
  uint64_t untracked() const { return untracked_; }  // events that could not be named
  // msync/munmap whose mapping eBPF could not look up (mmap lock busy): not
  // lost, fanotify's FAN_CLOSE_WRITE names the file at its last close.
  uint64_t vma_busy() const;

 private:
  ShimCapture() = default;
  void RunShim();
  void RunFanotify();
  void OnRecords(const void* data, size_t size, bool one_record);
  void NameFromDescriptor(shim::ShimRecord* record);
  void Emit(v1::ChangeEvent event);
  void RescanTree(const char* why, uint64_t count);
  bool SeenRecently(uint64_t ino, uint32_t tgid);

  struct Impl;
  std::unique_ptr<Impl> impl_;
  fusefs::EventSink* sink_ = nullptr;
  std::atomic<fusefs::PassthroughFs*> overlay_{nullptr};
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> untracked_{0};
  std::mutex sink_mutex_;  // the shim and fanotify threads both emit
  std::thread shim_thread_, fanotify_thread_;
};

}  // namespace replifs::cli

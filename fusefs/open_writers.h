// Which backing inodes are open for writing through the overlay, and how
// many times: the replicator holds a file back while a program still writes
// it (a save by temp+rename is sent once, at its close, not half-written).
// Thread-safe; its mutex is a leaf lock.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

namespace replifs::fusefs {

class OpenWriters {
 public:
  // Called (outside the lock) when the last writer of an inode closes.
  void SetLastCloseListener(std::function<void(uint64_t ino)> listener) {
    std::lock_guard lock(mutex_);
    on_last_close_ = std::move(listener);
  }

  void Opened(uint64_t ino) {
    std::lock_guard lock(mutex_);
    ++counts_[ino];
  }

  void Released(uint64_t ino) {
    std::function<void(uint64_t)> listener;
    {
      std::lock_guard lock(mutex_);
      auto it = counts_.find(ino);
      if (it == counts_.end()) return;
      if (--it->second > 0) return;
      counts_.erase(it);
      listener = on_last_close_;
    }
    if (listener) listener(ino);
  }

  uint64_t Count(uint64_t ino) const {
    std::lock_guard lock(mutex_);
    auto it = counts_.find(ino);
    return it == counts_.end() ? 0 : it->second;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<uint64_t, uint64_t> counts_;  // backing st_ino -> open write handles
  std::function<void(uint64_t)> on_last_close_;
};

}  // namespace replifs::fusefs

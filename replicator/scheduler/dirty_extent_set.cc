#include "replicator/scheduler/dirty_extent_set.h"

#include <algorithm>
#include <limits>

namespace replifs::scheduler {

void DirtyExtentSet::Insert(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  uint64_t start = offset;
  // Saturate: a bogus length must not wrap around to a small end.
  uint64_t end = length > std::numeric_limits<uint64_t>::max() - offset
                     ? std::numeric_limits<uint64_t>::max()
                     : offset + length;
  auto it = ranges_.upper_bound(start);
  if (it != ranges_.begin() && std::prev(it)->second >= start) --it;  // touches from the left
  while (it != ranges_.end() && it->first <= end) {
    start = std::min(start, it->first);
    end = std::max(end, it->second);
    total_bytes_ -= it->second - it->first;
    it = ranges_.erase(it);
  }
  ranges_.emplace(start, end);
  total_bytes_ += end - start;
}

void DirtyExtentSet::Merge(const DirtyExtentSet& other) {
  for (const auto& [start, end] : other.ranges_) Insert(start, end - start);
}

void DirtyExtentSet::TruncateTo(uint64_t size) {
  auto it = ranges_.lower_bound(size);
  while (it != ranges_.end()) {
    total_bytes_ -= it->second - it->first;
    it = ranges_.erase(it);
  }
  if (!ranges_.empty()) {
    auto& [start, end] = *ranges_.rbegin();
    if (end > size) {
      total_bytes_ -= end - size;
      ranges_.rbegin()->second = size;
    }
  }
}

std::vector<std::pair<uint64_t, uint64_t>> DirtyExtentSet::ranges() const {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  out.reserve(ranges_.size());
  for (const auto& [start, end] : ranges_) out.emplace_back(start, end - start);
  return out;
}

}  // namespace replifs::scheduler

// The byte ranges of one file changed since it was last sent, kept merged:
// overlapping and adjacent ranges become one, so 1000 appends are one range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace replifs::scheduler {

class DirtyExtentSet {
 public:
  // Adds [offset, offset + length); length 0 adds nothing.
  void Insert(uint64_t offset, uint64_t length);
  void Merge(const DirtyExtentSet& other);
  // The file was cut to `size`: bytes at or past it no longer exist.
  void TruncateTo(uint64_t size);

  uint64_t total_bytes() const { return total_bytes_; }
  bool empty() const { return ranges_.empty(); }
  size_t range_count() const { return ranges_.size(); }
  // (offset, length) pairs in offset order.
  std::vector<std::pair<uint64_t, uint64_t>> ranges() const;

 private:
  std::map<uint64_t, uint64_t> ranges_;  // start -> end (exclusive); disjoint, never adjacent
  uint64_t total_bytes_ = 0;
};

}  // namespace replifs::scheduler

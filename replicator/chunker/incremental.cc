#include "replicator/chunker/incremental.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace replifs::chunker {
namespace {

// Sorted, merged, clipped to the file. A size change dirties the region
// around the old end: the chunk that ended there was cut by EOF, not content.
std::vector<ChangedRange> NormalizeChanges(std::vector<ChangedRange> changed, uint64_t old_size,
                                           uint64_t new_size) {
  if (old_size != new_size) {
    const uint64_t from = std::min(old_size, new_size);
    const uint64_t start = from > 0 ? from - 1 : 0;
    changed.push_back({start, new_size > start ? new_size - start : 0});
  }
  std::vector<ChangedRange> out;
  std::sort(changed.begin(), changed.end(),
            [](const ChangedRange& a, const ChangedRange& b) { return a.offset < b.offset; });
  for (ChangedRange range : changed) {
    if (range.offset >= new_size) continue;
    range.length = std::min(range.length, new_size - range.offset);
    if (range.length == 0) range.length = 1;  // a zero-length touch still names a position
    if (!out.empty() && range.offset <= out.back().offset + out.back().length) {
      const uint64_t end = std::max(out.back().offset + out.back().length, range.offset + range.length);
      out.back().length = end - out.back().offset;
    } else {
      out.push_back(range);
    }
  }
  return out;
}

// Cuts chunks forward from `start` and returns where cutting stopped: at the
// first new boundary at or past `dirty_end` that is also an old boundary
// (`old_ends` sorted), or at the end of the file.
class Recutter {
 public:
  static constexpr uint64_t kMinRead = 64 * 1024;
  Recutter(uint64_t new_size, const ReadAt& read, const ChunkIdHasher& hasher,
           const NewChunkSink& sink, const ChunkerParams& params, RechunkStats* stats)
      : new_size_(new_size), read_(read), hasher_(hasher), sink_(sink), params_(params),
        stats_(stats) {}

  absl::StatusOr<uint64_t> CutFrom(uint64_t start, uint64_t dirty_end,
                                   const std::vector<uint64_t>& old_ends,
                                   std::vector<ChunkRecord>* out) {
    buffer_.clear();
    buffer_start_ = start;
    uint64_t pos = start;
    while (pos < new_size_) {
      if (absl::Status s = Fill(pos); !s.ok()) return s;
      const size_t skip = pos - buffer_start_;
      std::span<const uint8_t> window(buffer_.data() + skip, buffer_.size() - skip);
      const bool at_end = buffer_start_ + buffer_.size() == new_size_;
      const size_t length = NextChunkLength(window, params_, at_end);
      std::span<const uint8_t> data = window.first(length);
      ChunkRecord record{pos, static_cast<uint32_t>(length), hasher_.Hash(data)};
      if (absl::Status s = sink_(record, data); !s.ok()) return s;
      out->push_back(record);
      ++stats_->chunks_cut;
      pos += length;
      if (pos >= dirty_end && std::binary_search(old_ends.begin(), old_ends.end(), pos)) break;
    }
    return pos;
  }

 private:
  // Makes sure the buffer holds [pos, pos + max_size) or up to EOF.
  absl::Status Fill(uint64_t pos) {
    const uint64_t want_end = std::min(new_size_, pos + params_.max_size);
    if (buffer_start_ + buffer_.size() >= want_end) return absl::OkStatus();
    // Drop what lies before pos, then read up to pos + max_size (at least
    // 64 KiB more): a small edit reads ~max_size, not a large fixed block.
    const size_t consumed = pos - buffer_start_;
    buffer_.erase(buffer_.begin(), buffer_.begin() + consumed);
    buffer_start_ = pos;
    const uint64_t read_from = buffer_start_ + buffer_.size();
    const uint64_t read_end = std::min(new_size_, std::max(want_end, read_from + kMinRead));
    const size_t old_len = buffer_.size();
    buffer_.resize(read_end - buffer_start_);
    std::span<uint8_t> target(buffer_.data() + old_len, read_end - read_from);
    if (absl::Status s = read_(read_from, target); !s.ok()) return s;
    stats_->bytes_read += target.size();
    return absl::OkStatus();
  }

  const uint64_t new_size_;
  const ReadAt& read_;
  const ChunkIdHasher& hasher_;
  const NewChunkSink& sink_;
  const ChunkerParams& params_;
  RechunkStats* stats_;
  std::vector<uint8_t> buffer_;
  uint64_t buffer_start_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<ChunkRecord>> Rechunk(const std::vector<ChunkRecord>& previous,
                                                 uint64_t new_size,
                                                 std::vector<ChangedRange> changed,
                                                 const ReadAt& read, const ChunkIdHasher& hasher,
                                                 const NewChunkSink& sink, RechunkStats* stats,
                                                 const ChunkerParams& params) {
  uint64_t old_size = 0;
  std::vector<uint64_t> old_ends;
  for (const ChunkRecord& chunk : previous) {
    if (chunk.offset != old_size) {
      return absl::InvalidArgumentError(absl::StrCat("previous chunk list has a gap at ", old_size));
    }
    old_size += chunk.length;
    old_ends.push_back(old_size);
  }
  const std::vector<ChangedRange> ranges = NormalizeChanges(std::move(changed), old_size, new_size);
  Recutter recutter(new_size, read, hasher, sink, params, stats);
  std::vector<ChunkRecord> out;
  size_t next_old = 0;  // first old chunk not yet kept or passed
  uint64_t pos = 0;     // everything before pos is settled
  for (size_t r = 0; r < ranges.size(); ++r) {
    const ChangedRange& range = ranges[r];
    if (range.offset + range.length <= pos) continue;  // covered by the last recut
    // Keep old chunks that end at or before the change (and start at pos).
    while (next_old < previous.size() && previous[next_old].offset == pos &&
           previous[next_old].offset + previous[next_old].length <= range.offset) {
      out.push_back(previous[next_old]);
      ++stats->chunks_reused;
      pos += previous[next_old].length;
      ++next_old;
    }
    absl::StatusOr<uint64_t> stop = recutter.CutFrom(pos, range.offset + range.length, old_ends, &out);
    if (!stop.ok()) return stop.status();
    pos = *stop;
    // Resynchronized (or at EOF): skip old chunks that the recut replaced.
    while (next_old < previous.size() && previous[next_old].offset < pos) ++next_old;
  }
  // The unchanged tail: old chunks from pos on, still inside the file.
  while (next_old < previous.size() && previous[next_old].offset == pos &&
         previous[next_old].offset + previous[next_old].length <= new_size) {
    out.push_back(previous[next_old]);
    ++stats->chunks_reused;
    pos += previous[next_old].length;
    ++next_old;
  }
  if (pos < new_size) {
    // Only when `previous` did not describe the file (shouldn't happen): cut the rest.
    absl::StatusOr<uint64_t> stop = recutter.CutFrom(pos, new_size, {}, &out);
    if (!stop.ok()) return stop.status();
  }
  return out;
}

}  // namespace replifs::chunker

#include "replicator/delta/chunk_patch.h"

#include <zstd.h>

#include <algorithm>
#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace replifs::delta {
namespace {

struct Interval {
  uint64_t begin = 0;
  uint64_t end = 0;
};

// The parts of [begin, end) that must travel as literals: written since, or
// beyond the previous version's end. Sorted and merged.
std::vector<Interval> LiteralIntervals(uint64_t begin, uint64_t end, uint64_t previous_size,
                                       const std::vector<chunker::ChangedRange>& changed) {
  std::vector<Interval> parts;
  for (const chunker::ChangedRange& range : changed) {
    const uint64_t range_end =
        range.length > UINT64_MAX - range.offset ? UINT64_MAX : range.offset + range.length;
    const uint64_t b = std::max(begin, range.offset);
    const uint64_t e = std::min(end, range_end);
    if (b < e) parts.push_back({b, e});
  }
  if (previous_size < end) parts.push_back({std::max(begin, previous_size), end});
  std::sort(parts.begin(), parts.end(), [](const Interval& a, const Interval& b) { return a.begin < b.begin; });
  std::vector<Interval> merged;
  for (const Interval& part : parts) {
    if (!merged.empty() && part.begin <= merged.back().end) {
      merged.back().end = std::max(merged.back().end, part.end);
    } else {
      merged.push_back(part);
    }
  }
  return merged;
}

std::string Hex(const std::string& id) { return absl::BytesToHexString(id); }

}  // namespace

std::optional<ChunkPatch> MakeInPlacePatch(uint64_t offset, std::span<const uint8_t> data,
                                           const std::vector<chunker::ChunkRecord>& previous,
                                           uint64_t previous_size,
                                           const std::vector<chunker::ChangedRange>& changed) {
  const uint64_t end = offset + data.size();
  ChunkPatch patch;
  auto literal = [&](uint64_t b, uint64_t e) {
    v1::ChunkPatchOp& op = patch.ops.emplace_back();
    op.set_length(static_cast<uint32_t>(e - b));
    patch.literals.append(reinterpret_cast<const char*>(data.data() + (b - offset)), e - b);
  };
  // Copies [b, e) from the previous chunks covering it, one op per chunk.
  auto copy = [&](uint64_t b, uint64_t e) {
    auto it = std::upper_bound(previous.begin(), previous.end(), b,
                               [](uint64_t at, const chunker::ChunkRecord& c) { return at < c.offset; });
    if (it == previous.begin()) return false;
    --it;
    while (b < e) {
      if (it == previous.end() || b < it->offset || b >= it->offset + it->length) return false;
      const uint64_t take = std::min(e, it->offset + it->length) - b;
      v1::ChunkPatchOp& op = patch.ops.emplace_back();
      op.set_copy_from(it->id.ToBytes());
      op.set_offset(static_cast<uint32_t>(b - it->offset));
      op.set_length(static_cast<uint32_t>(take));
      patch.copied += take;
      b += take;
      ++it;
    }
    return true;
  };
  uint64_t at = offset;
  for (const Interval& part : LiteralIntervals(offset, end, previous_size, changed)) {
    if (at < part.begin && !copy(at, part.begin)) return std::nullopt;
    literal(part.begin, part.end);
    at = part.end;
  }
  if (at < end && !copy(at, end)) return std::nullopt;
  if (patch.copied == 0 || patch.ops.size() > static_cast<size_t>(kMaxPatchOps)) return std::nullopt;
  return patch;
}

namespace {

// `data`, zstd-compressed if that shrinks it; sets *compressed accordingly.
std::string MaybeCompressed(std::string_view data, bool* compressed) {
  std::string frame(ZSTD_compressBound(data.size()), '\0');
  const size_t size = ZSTD_compress(frame.data(), frame.size(), data.data(), data.size(), 1);
  *compressed = !ZSTD_isError(size) && size < data.size();
  if (!*compressed) return std::string(data);
  frame.resize(size);
  return frame;
}

}  // namespace

void FillChunkUpload(std::string_view chunk, const ChunkPatch* patch, v1::ChunkUpload* message) {
  bool compressed = false;
  std::string whole = MaybeCompressed(chunk, &compressed);
  message->clear_patch();
  if (patch != nullptr) {
    bool literals_compressed = false;
    std::string literals = MaybeCompressed(patch->literals, &literals_compressed);
    size_t ops_bytes = 0;
    for (const v1::ChunkPatchOp& op : patch->ops) ops_bytes += op.ByteSizeLong() + 2;
    if (literals.size() + ops_bytes < whole.size()) {
      for (const v1::ChunkPatchOp& op : patch->ops) *message->add_patch() = op;
      message->set_data(std::move(literals));
      message->set_compressed(literals_compressed);
      return;
    }
  }
  message->set_data(std::move(whole));
  message->set_compressed(compressed);
}

absl::StatusOr<std::string> BuildPatchedChunk(const v1::ChunkUpload& upload, uint32_t max_length,
                                              const StoredChunkFn& stored_chunk) {
  const std::string what = absl::StrCat("patch of chunk ", Hex(upload.id()));
  if (upload.length() > max_length) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", upload.length(), " bytes; the limit is ", max_length));
  }
  if (upload.patch_size() > kMaxPatchOps) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", upload.patch_size(), " ops; the limit is ", kMaxPatchOps));
  }
  // Lengths first, so nothing is fetched or decompressed for a patch that
  // cannot add up.
  uint64_t total = 0, literal_total = 0;
  for (const v1::ChunkPatchOp& op : upload.patch()) {
    total += op.length();
    if (op.copy_from().empty()) literal_total += op.length();
  }
  if (total != upload.length()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ops add up to ", total, " bytes, not ", upload.length()));
  }
  std::string literals;
  if (upload.compressed()) {
    literals.assign(literal_total, '\0');  // exactly this much: a hostile frame cannot grow it
    const size_t got = ZSTD_decompress(literals.data(), literals.size(), upload.data().data(),
                                       upload.data().size());
    if (ZSTD_isError(got) || got != literal_total) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": literals do not decompress to ", literal_total, " bytes"));
    }
  } else if (upload.data().size() != literal_total) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", upload.data().size(),
                                                   " literal bytes, the ops take ", literal_total));
  } else {
    literals = upload.data();
  }
  std::map<std::string, std::string> sources;
  std::string chunk;
  chunk.reserve(upload.length());
  uint64_t literal_at = 0;
  for (const v1::ChunkPatchOp& op : upload.patch()) {
    if (op.copy_from().empty()) {
      chunk.append(literals, literal_at, op.length());
      literal_at += op.length();
      continue;
    }
    auto found = sources.find(op.copy_from());
    if (found == sources.end()) {
      if (op.copy_from().size() != 16) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": a copy names a ",
                                                       op.copy_from().size(), "-byte chunk id"));
      }
      if (sources.size() >= static_cast<size_t>(kMaxPatchSources)) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": copies from more than ", kMaxPatchSources, " chunks"));
      }
      absl::StatusOr<std::string> source = stored_chunk(op.copy_from());
      if (absl::IsNotFound(source.status())) {
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": copies from chunk ", Hex(op.copy_from()), ", which is not stored"));
      }
      if (!source.ok()) return source.status();
      found = sources.emplace(op.copy_from(), std::move(*source)).first;
    }
    const std::string& source = found->second;
    if (op.offset() > source.size() || op.length() > source.size() - op.offset()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": copies [", op.offset(), ", +",
                                                     op.length(), ") of chunk ", Hex(op.copy_from()),
                                                     ", which has ", source.size(), " bytes"));
    }
    chunk.append(source, op.offset(), op.length());
  }
  return chunk;
}

}  // namespace replifs::delta

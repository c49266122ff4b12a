// The on-disk encoding of pack files (FORMAT.md, "Pack file"): a header,
// then self-describing entries (kind, id, lengths, compression flag and a
// checksum each), so the index can be rebuilt from the packs alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace replifs::server {

inline constexpr size_t kPackHeaderSize = 16;
inline constexpr size_t kPackEntryHeaderSize = 40;
inline constexpr uint8_t kPackFormatVersion = 1;

// What an entry holds; part of the index key, so a page and a chunk with
// equal ids never shadow each other.
enum class EntryKind : uint8_t { kChunk = 1, kPage = 2 };

std::string EncodePackHeader(int64_t repo_id);
// The repository id the header names; DATA_LOSS if it is not a pack header.
absl::StatusOr<int64_t> DecodePackHeader(std::string_view header);

// Header + payload (zstd level 3, or raw when that does not shrink it).
std::string EncodePackEntry(EntryKind kind, std::string_view id, std::string_view data,
                            std::string_view zstd_frame = {});

struct PackEntryHeader {
  EntryKind kind = EntryKind::kChunk;
  bool compressed = false;
  std::string id;
  uint32_t length = 0;         // uncompressed
  uint32_t stored_length = 0;  // payload bytes on disk
  size_t entry_size() const { return kPackEntryHeaderSize + stored_length; }
};
// Parses an entry header (magic, kind, flags, sane lengths); the checksum
// is checked by DecodePackEntry once the payload is read.
absl::StatusOr<PackEntryHeader> ParsePackEntryHeader(std::string_view header);
// Checks the checksum (and, for a payload, that it yields `length` bytes)
// of a whole entry; returns the uncompressed data. DATA_LOSS otherwise.
absl::StatusOr<std::string> DecodePackEntry(std::string_view entry);
// As DecodePackEntry, but the payload as stored (a zstd frame when
// *compressed): for sending compressed chunks without recompressing.
absl::StatusOr<std::string> StoredPackPayload(std::string_view entry, bool* compressed);
// As DecodePackEntry without decompressing: the checksum only.
absl::Status CheckPackEntry(std::string_view entry);

}  // namespace replifs::server

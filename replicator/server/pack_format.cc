#include "replicator/server/pack_format.h"

#include <xxhash.h>
#include <zstd.h>

#include "absl/strings/str_cat.h"
#include "replicator/server/chunk_file_format.h"
#include "replicator/server/zstd_or_raw.h"

namespace replifs::server {
namespace {

constexpr char kPackMagic[4] = {'R', 'F', 'P', 'K'};
constexpr char kEntryMagic[4] = {'R', 'F', 'P', 'E'};
constexpr uint8_t kFlagZstd = 1;
constexpr size_t kChecksumOffset = 32;

void PutU32(char* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}
void PutU64(char* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}
uint32_t GetU32(const char* in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= uint32_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return value;
}
uint64_t GetU64(const char* in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= uint64_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return value;
}

// XXH3-64 of the entry header before the checksum field, then the payload.
uint64_t EntryChecksum(std::string_view entry) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  XXH3_64bits_update(state, entry.data(), kChecksumOffset);
  XXH3_64bits_update(state, entry.data() + kPackEntryHeaderSize,
                     entry.size() - kPackEntryHeaderSize);
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

}  // namespace

std::string EncodePackHeader(int64_t repo_id) {
  std::string header(kPackHeaderSize, '\0');
  header.replace(0, 4, kPackMagic, 4);
  header[4] = static_cast<char>(kPackFormatVersion);
  PutU64(&header[8], static_cast<uint64_t>(repo_id));
  return header;
}

absl::StatusOr<int64_t> DecodePackHeader(std::string_view header) {
  if (header.size() < kPackHeaderSize || header.substr(0, 4) != std::string_view(kPackMagic, 4)) {
    return absl::DataLossError("not a pack file (no RFPK header)");
  }
  if (static_cast<uint8_t>(header[4]) != kPackFormatVersion || header[5] != 0 || header[6] != 0 ||
      header[7] != 0) {
    return absl::DataLossError(
        absl::StrCat("pack format version ", static_cast<uint8_t>(header[4]), " is not supported"));
  }
  return static_cast<int64_t>(GetU64(&header[8]));
}

std::string EncodePackEntry(EntryKind kind, std::string_view id, std::string_view data,
                            std::string_view zstd_frame) {
  std::string entry(kPackEntryHeaderSize, '\0');
  entry.replace(0, 4, kEntryMagic, 4);
  entry[4] = static_cast<char>(kind);
  entry.replace(8, 16, id.substr(0, 16));
  PutU32(&entry[24], static_cast<uint32_t>(data.size()));

  if (!zstd_frame.empty() && zstd_frame.size() < data.size()) {
    // The client's frame, already checked to decompress to `data`: compressing
    // again would cost the server more CPU than the client spent.
    entry[5] = static_cast<char>(kFlagZstd);
    entry.append(zstd_frame);
  } else if (AppendZstdOrRaw(data, &entry)) {
    entry[5] = static_cast<char>(kFlagZstd);
  }
  PutU32(&entry[28], static_cast<uint32_t>(entry.size() - kPackEntryHeaderSize));
  PutU64(&entry[kChecksumOffset], EntryChecksum(entry));
  return entry;
}

absl::StatusOr<PackEntryHeader> ParsePackEntryHeader(std::string_view header) {
  if (header.size() < kPackEntryHeaderSize ||
      header.substr(0, 4) != std::string_view(kEntryMagic, 4)) {
    return absl::DataLossError("no pack entry header");
  }
  PackEntryHeader out;
  const uint8_t kind = static_cast<uint8_t>(header[4]);
  const uint8_t flags = static_cast<uint8_t>(header[5]);
  if ((kind != 1 && kind != 2) || (flags & ~kFlagZstd) != 0 || header[6] != 0 || header[7] != 0) {
    return absl::DataLossError(absl::StrCat("pack entry has unknown kind ", kind, " or flags ", flags));
  }
  out.kind = static_cast<EntryKind>(kind);
  out.compressed = (flags & kFlagZstd) != 0;
  out.id = std::string(header.substr(8, 16));
  out.length = GetU32(&header[24]);
  out.stored_length = GetU32(&header[28]);
  // A zstd frame may exceed its input by a little.
  if (out.length > kMaxStoredChunkLength || out.stored_length > kMaxStoredChunkLength + (1 << 20) ||
      (!out.compressed && out.stored_length != out.length)) {
    return absl::DataLossError(absl::StrCat("pack entry claims lengths ", out.length, "/",
                                            out.stored_length));
  }
  return out;
}

absl::Status CheckPackEntry(std::string_view entry) {
  if (entry.size() < kPackEntryHeaderSize) return absl::DataLossError("short pack entry");
  if (EntryChecksum(entry) != GetU64(&entry[kChecksumOffset])) {
    return absl::DataLossError("pack entry checksum mismatch");
  }
  return absl::OkStatus();
}

namespace {

// The header of a whole entry whose size and checksum hold.
absl::StatusOr<PackEntryHeader> CheckedEntryHeader(std::string_view entry) {
  absl::StatusOr<PackEntryHeader> header = ParsePackEntryHeader(entry);
  if (!header.ok()) return header.status();
  if (entry.size() != header->entry_size()) {
    return absl::DataLossError(absl::StrCat("pack entry is ", entry.size(), " bytes, header says ",
                                            header->entry_size()));
  }
  if (absl::Status status = CheckPackEntry(entry); !status.ok()) return status;
  return header;
}

}  // namespace

absl::StatusOr<std::string> StoredPackPayload(std::string_view entry, bool* compressed) {
  absl::StatusOr<PackEntryHeader> header = CheckedEntryHeader(entry);
  if (!header.ok()) return header.status();
  *compressed = header->compressed;
  return std::string(entry.substr(kPackEntryHeaderSize));
}

absl::StatusOr<std::string> DecodePackEntry(std::string_view entry) {
  absl::StatusOr<PackEntryHeader> header = CheckedEntryHeader(entry);
  if (!header.ok()) return header.status();
  const std::string_view payload = entry.substr(kPackEntryHeaderSize);
  if (!header->compressed) return std::string(payload);
  std::string data(header->length, '\0');
  const size_t got = ZSTD_decompress(data.data(), data.size(), payload.data(), payload.size());
  if (ZSTD_isError(got) || got != header->length) {
    return absl::DataLossError("pack entry payload does not decompress to its length");
  }
  return data;
}

}  // namespace replifs::server

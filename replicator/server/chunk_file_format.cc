#include "replicator/server/chunk_file_format.h"

#include <zstd.h>

#include "absl/strings/str_cat.h"
#include "replicator/server/zstd_or_raw.h"

namespace replifs::server {
namespace {

constexpr char kMagic[4] = {'R', 'F', 'C', 'K'};
constexpr uint8_t kFormatVersion = 1;
constexpr uint8_t kFlagZstd = 1;

void PutU32(char* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

uint32_t GetU32(const char* in) {
  uint32_t value = 0;
  for (int i = 0; i < 4; ++i) value |= uint32_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return value;
}

}  // namespace

std::string EncodeChunkFile(std::string_view data) {
  std::string file(kChunkFileHeaderSize, '\0');
  file.replace(0, 4, kMagic, 4);
  file[4] = static_cast<char>(kFormatVersion);
  PutU32(&file[8], static_cast<uint32_t>(data.size()));
  if (AppendZstdOrRaw(data, &file)) file[5] = static_cast<char>(kFlagZstd);
  return file;
}

absl::StatusOr<std::string> DecodeChunkFile(std::string_view file) {
  if (file.size() < kChunkFileHeaderSize || file.substr(0, 4) != std::string_view(kMagic, 4)) {
    return absl::DataLossError("chunk file has no valid header");
  }
  const uint8_t version = static_cast<uint8_t>(file[4]);
  const uint8_t flags = static_cast<uint8_t>(file[5]);
  if (version != kFormatVersion || (flags & ~kFlagZstd) != 0 || file[6] != 0 || file[7] != 0) {
    return absl::DataLossError(
        absl::StrCat("chunk file has unknown version ", version, " or flags ", flags));
  }
  const uint32_t length = GetU32(&file[8]);
  if (length > kMaxStoredChunkLength) {
    return absl::DataLossError(absl::StrCat("chunk file claims length ", length));
  }
  const std::string_view payload = file.substr(kChunkFileHeaderSize);
  if ((flags & kFlagZstd) == 0) {
    if (payload.size() != length) {
      return absl::DataLossError(
          absl::StrCat("chunk file holds ", payload.size(), " bytes, header says ", length));
    }
    return std::string(payload);
  }
  std::string data(length, '\0');
  const size_t got = ZSTD_decompress(data.data(), data.size(), payload.data(), payload.size());
  if (ZSTD_isError(got) || got != length) {
    return absl::DataLossError("chunk file payload does not decompress to its length");
  }
  return data;
}

}  // namespace replifs::server

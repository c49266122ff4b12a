#include "replicator/journal/format.h"

#include <cstdio>
#include <cstring>

#include "replicator/journal/crc32c.h"

namespace replifs::journal {
namespace {

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

constexpr size_t kSegmentNameDigits = 20;
constexpr std::string_view kSegmentSuffix = ".log";

}  // namespace

std::string EncodeSegmentHeader() {
  std::string header(kSegmentMagic);
  PutU32(&header, kFormatVersion);
  PutU32(&header, Crc32c(header));
  return header;
}

SegmentHeaderState CheckSegmentHeader(std::string_view bytes) {
  if (bytes.size() < kSegmentHeaderSize) return SegmentHeaderState::kTorn;
  if (bytes.substr(0, kSegmentMagic.size()) != kSegmentMagic ||
      GetU32(bytes.data() + 12) != Crc32c(bytes.substr(0, 12))) {
    return SegmentHeaderState::kTorn;
  }
  if (GetU32(bytes.data() + 8) != kFormatVersion) return SegmentHeaderState::kUnknownVersion;
  return SegmentHeaderState::kOk;
}

std::string EncodeRecord(uint64_t seq, std::string_view payload) {
  std::string record;
  record.reserve(kRecordHeaderSize + payload.size());
  PutU32(&record, 0);  // crc, filled in below
  PutU32(&record, static_cast<uint32_t>(payload.size()));
  PutU64(&record, seq);
  record.append(payload);
  const uint32_t crc = RecordCrc(record.data(), payload);
  for (int i = 0; i < 4; ++i) record[i] = static_cast<char>(crc >> (8 * i));
  return record;
}

RecordHeader DecodeRecordHeader(const char* p) {
  return RecordHeader{GetU32(p), GetU32(p + 4), GetU64(p + 8)};
}

uint32_t RecordCrc(const char* header, std::string_view payload) {
  const uint32_t crc = Crc32cExtend(0, header + 4, kRecordHeaderSize - 4);
  return Crc32cExtend(crc, payload.data(), payload.size());
}

std::string SegmentFileName(uint64_t first_seq) {
  char name[32];
  std::snprintf(name, sizeof(name), "%020llu.log", static_cast<unsigned long long>(first_seq));
  return name;
}

std::optional<uint64_t> ParseSegmentFileName(std::string_view name) {
  if (name.size() != kSegmentNameDigits + kSegmentSuffix.size() ||
      name.substr(kSegmentNameDigits) != kSegmentSuffix) {
    return std::nullopt;
  }
  uint64_t seq = 0;
  for (size_t i = 0; i < kSegmentNameDigits; ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (seq > (UINT64_MAX - digit) / 10) return std::nullopt;
    seq = seq * 10 + digit;
  }
  return seq;
}

std::string EncodeAcked(uint64_t acked_seq) {
  std::string bytes;
  PutU64(&bytes, acked_seq);
  PutU32(&bytes, Crc32c(bytes));
  return bytes;
}

std::optional<uint64_t> DecodeAcked(std::string_view bytes) {
  if (bytes.size() != 12 || GetU32(bytes.data() + 8) != Crc32c(bytes.substr(0, 8))) {
    return std::nullopt;
  }
  return GetU64(bytes.data());
}

}  // namespace replifs::journal

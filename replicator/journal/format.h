// Byte layout of journal files (FORMAT.md): segment header, record framing,
// file names and the ACKED watermark. Pure functions, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace replifs::journal {

inline constexpr std::string_view kSegmentMagic = "RPLFSJNL";
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderSize = 16;  // magic | version | crc
inline constexpr size_t kRecordHeaderSize = 16;   // crc | length | seq
inline constexpr uint32_t kMaxPayloadBytes = 64u << 20;
inline constexpr size_t kJournalIdBytes = 16;

inline constexpr char kJournalIdFile[] = "JOURNAL-ID";
inline constexpr char kAckedFile[] = "ACKED";

std::string EncodeSegmentHeader();

enum class SegmentHeaderState { kOk, kTorn, kUnknownVersion };
// `bytes` is the start of a segment file (may be shorter than a header).
SegmentHeaderState CheckSegmentHeader(std::string_view bytes);

// The whole record, header and payload, ready for one write(2).
std::string EncodeRecord(uint64_t seq, std::string_view payload);

struct RecordHeader {
  uint32_t crc;
  uint32_t length;
  uint64_t seq;
};
RecordHeader DecodeRecordHeader(const char* p);  // p has kRecordHeaderSize bytes
// CRC over length | seq | payload, as stored in RecordHeader::crc.
uint32_t RecordCrc(const char* header, std::string_view payload);

// "00000000000000000001.log" for first_seq 1.
std::string SegmentFileName(uint64_t first_seq);
// The first seq a segment file name stands for; nullopt for other names.
std::optional<uint64_t> ParseSegmentFileName(std::string_view name);

std::string EncodeAcked(uint64_t acked_seq);
std::optional<uint64_t> DecodeAcked(std::string_view bytes);

}  // namespace replifs::journal

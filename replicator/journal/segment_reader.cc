#include "replicator/journal/segment_reader.h"

namespace replifs::journal {

SegmentScan ScanSegment(std::string_view bytes, uint64_t first_seq,
                        const std::function<void(const replifs::v1::ChangeEvent&)>& visit) {
  SegmentScan scan;
  scan.header = CheckSegmentHeader(bytes);
  if (scan.header != SegmentHeaderState::kOk) return scan;

  uint64_t pos = kSegmentHeaderSize;
  uint64_t expected_seq = first_seq;
  replifs::v1::ChangeEvent event;
  while (bytes.size() - pos >= kRecordHeaderSize) {
    const RecordHeader header = DecodeRecordHeader(bytes.data() + pos);
    // Check length before trusting it as a size: garbage can claim anything.
    if (header.length > kMaxPayloadBytes ||
        header.length > bytes.size() - pos - kRecordHeaderSize || header.seq != expected_seq) {
      break;
    }
    const std::string_view payload = bytes.substr(pos + kRecordHeaderSize, header.length);
    if (RecordCrc(bytes.data() + pos, payload) != header.crc) break;
    if (!event.ParseFromArray(payload.data(), static_cast<int>(payload.size())) ||
        event.seq() != header.seq) {
      break;
    }
    if (visit) visit(event);
    pos += kRecordHeaderSize + header.length;
    scan.records++;
    scan.last_seq = header.seq;
    expected_seq = header.seq + 1;
  }
  scan.valid_end = pos;
  scan.clean = pos == bytes.size();
  return scan;
}

}  // namespace replifs::journal

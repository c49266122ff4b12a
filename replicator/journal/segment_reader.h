// Walks the records of one segment file held in memory and finds where the
// intact prefix ends (FORMAT.md, "Reading, torn and corrupt tails").
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "replicator/journal/format.h"
#include "replifs/v1/events.pb.h"

namespace replifs::journal {

struct SegmentScan {
  SegmentHeaderState header = SegmentHeaderState::kTorn;
  uint64_t valid_end = 0;  // offset just past the last intact record (or the header)
  uint64_t records = 0;    // intact records
  uint64_t last_seq = 0;   // seq of the last intact record; 0 when there is none
  bool clean = false;      // true: every byte of the file belongs to an intact record
};

// `first_seq` is the seq the segment's name promises for its first record.
// `visit` (may be empty) sees each intact record in order.
SegmentScan ScanSegment(std::string_view bytes, uint64_t first_seq,
                        const std::function<void(const replifs::v1::ChangeEvent&)>& visit);

}  // namespace replifs::journal

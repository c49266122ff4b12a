// The queue unit: an append-only, checksummed log of ChangeEvents with
// sequence numbers. A record leaves the journal only once the server has made
// its effect durable (Trim). Format: FORMAT.md beside this file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "replifs/v1/events.pb.h"

namespace replifs::journal {

struct JournalOptions {
  std::string directory;                 // created if missing
  uint64_t segment_bytes = 16ull << 20;  // roll to a new segment file past this
  // Live segments may hold at most this many bytes (0: no limit). An Append
  // that would pass it fails with ResourceExhausted and uses no seq: the
  // caller records that a rescan is needed (FORMAT.md, "Bounded disk use").
  uint64_t max_bytes = 0;
  // Tests only: runs in the Sync leader right before its fdatasync, without
  // the journal's lock held, to make group commit observable.
  std::function<void()> before_fdatasync_for_testing;
};

struct JournalStats {
  uint64_t last_seq = 0;              // highest seq appended
  uint64_t acked_seq = 0;             // every record <= this is durable on the server
  uint64_t disk_bytes = 0;            // bytes held by live segments
  uint64_t torn_records_dropped = 0;  // found at open: a torn or corrupt tail
  uint64_t torn_bytes_dropped = 0;    // bytes cut away or set aside with those tails
  uint64_t synced_seq = 0;            // every record <= this has been fdatasync'd
  uint64_t syncs = 0;                 // fdatasyncs made by Sync (group commit shares them)
  uint64_t sync_calls = 0;            // Sync calls that had something to make durable
  // Where the last completed fdatasync ended: segment (its first seq) and byte
  // length. A power loss can cut the journal back to here and no further.
  uint64_t synced_segment = 0;
  uint64_t synced_bytes = 0;
};

class Journal {
 public:
  static absl::StatusOr<std::unique_ptr<Journal>> Open(const JournalOptions& options);
  virtual ~Journal() = default;

  // Assigns the next seq to `event` (event.seq is set on return) and writes
  // the record with write(2): it survives a kill -9 of this process once this
  // returns. Thread-safe.
  virtual absl::StatusOr<uint64_t> Append(replifs::v1::ChangeEvent& event) = 0;

  // Makes every record appended before the call durable (fdatasync). Calls
  // from many threads share one fdatasync (group commit).
  virtual absl::Status Sync() = 0;

  // The server has durably applied every record with seq <= acked_seq:
  // persist the watermark and delete segments that hold nothing newer.
  virtual absl::Status Trim(uint64_t acked_seq) = 0;

  // Calls `visit` for every intact record with seq > acked_seq, in order.
  virtual absl::Status Replay(
      const std::function<void(const replifs::v1::ChangeEvent&)>& visit) = 0;

  // Random 16 bytes made when the journal was created: with seq it names a
  // change uniquely for the server's idempotency check.
  virtual const std::string& id() const = 0;

  virtual JournalStats stats() const = 0;
};

}  // namespace replifs::journal

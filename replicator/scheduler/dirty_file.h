// Everything pending for one inode: coalesced data ranges, truncation and
// attribute changes, and the journal seqs they cover. Becomes one CONTENT or
// ATTRIBUTES command.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "replicator/scheduler/dirty_extent_set.h"
#include "replifs/v1/events.pb.h"

namespace replifs::scheduler {

struct DirtyFile {
  std::string path;  // current name of the inode, kept up to date by renames
  uint64_t inode = 0;
  DirtyExtentSet dirty;
  bool content_changed = false;  // any data event (write, truncate, fallocate, copy)
  bool attributes_changed = false;
  bool was_truncated = false;
  uint64_t truncated_to = 0;                     // smallest size seen, when was_truncated
  absl::Time first_change;                       // scheduler clock when the oldest change arrived
  absl::Time last_change;                        // ... and the newest
  absl::Time not_before = absl::InfinitePast();  // set after a stale round trip
  int64_t time_ns = 0;                           // newest event's own time_ns
  std::vector<uint64_t> seqs;                    // ascending
  int stale_round_trips = 0;
  bool whole_file = false;  // earlier changes to this inode were dropped: any byte may differ
  bool unlinked =
      false;  // in flight only: its inode died meanwhile (the namespace command owns its seqs)

  // Folds a data or attribute event in; `now` is the scheduler clock.
  void Apply(const replifs::v1::ChangeEvent& event, absl::Time now);
  // `older` was in flight and came back unsent; *this holds the newer changes.
  void MergeOlder(DirtyFile&& older);
  // `open_for_writing`: a program still writes the file, so being quiet is
  // not enough (SchedulerPolicy).
  bool Ready(absl::Time now, absl::Duration quiet, absl::Duration max_delay,
             uint64_t flush_target, bool open_for_writing = false) const;
  // When Ready turns true without new events (ignores flushes and closes).
  absl::Time ReadyAt(absl::Duration quiet, absl::Duration max_delay,
                     bool open_for_writing = false) const;
  replifs::v1::BackupCommand ToCommand() const;
};

}  // namespace replifs::scheduler

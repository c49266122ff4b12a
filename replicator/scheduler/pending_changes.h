// The scheduler's state without its threads: classifies events (namespace
// queue in journal order, data and attributes coalesced per inode), cuts
// batches, settles them, and derives the acknowledged watermark. Not
// thread-safe: the Scheduler guards it with one mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "replicator/scheduler/dirty_file.h"
#include "replicator/scheduler/scheduler.h"
#include "replifs/v1/events.pb.h"

namespace replifs::scheduler {

// After this many stale round trips a file's pending change is given up.
inline constexpr int kMaxStaleRoundTrips = 20;

struct Batch {
  std::vector<replifs::v1::BackupCommand> commands;  // namespace commands first
  size_t namespace_count = 0;
  std::vector<std::string> file_keys;  // for commands[namespace_count + i]
  bool empty() const { return commands.empty(); }
};

class PendingChanges {
 public:
  explicit PendingChanges(uint64_t start_seq) : highest_seq_(start_seq) {}

  // `event.seq` must be above every seq added before (journal order).
  void Add(const replifs::v1::ChangeEvent& event, absl::Time now);

  // Every queued namespace command (up to max_batch), then, only if none is
  // left behind, the ready files (oldest seq first). Moves them in flight.
  // At most one batch may be in flight.
  Batch TakeBatch(absl::Time now, const SchedulerPolicy& policy, uint64_t flush_target);
  // The executor returned OK; `stale` indexes commands to keep pending.
  void Complete(Batch batch, const std::vector<size_t>& stale, absl::Time now,
                const SchedulerPolicy& policy);
  // The executor failed: everything goes back, namespace order intact.
  void Fail(Batch batch);

  // Files open for writing wait for their close or max_delay; null: none is.
  void SetOpenWriters(const OpenWritersView* view) { open_writers_ = view; }

  // When a file becomes ready by time alone; InfiniteFuture when none pending.
  absl::Time NextReadyTime(const SchedulerPolicy& policy) const;

  // Every seq <= this is done: (smallest outstanding seq - 1), or the highest
  // seq added when nothing is outstanding.
  uint64_t acked_seq() const;
  uint64_t highest_seq() const { return highest_seq_; }
  uint64_t outstanding() const { return outstanding_.size(); }
  uint64_t dirty_bytes() const;
  uint64_t dropped_stale() const { return dropped_stale_; }

 private:
  static std::string KeyFor(uint64_t inode, const std::string& path);
  void AddNamespace(const replifs::v1::ChangeEvent& event);
  void TouchParents(const replifs::v1::ChangeEvent& event, absl::Time now);
  void EraseOutstanding(uint64_t seq);
  // Moves the seqs of dying pending files into `command` (which now stands for
  // them) and flags dying in-flight ones; `dies` picks them.
  template <typename Predicate>
  void DropFiles(replifs::v1::BackupCommand& command, Predicate dies);
  void RenamePaths(const replifs::v1::ChangeEvent& event);
  bool OpenForWriting(const DirtyFile& file) const {
    return open_writers_ != nullptr && file.inode != 0 && open_writers_->IsOpenForWriting(file.inode);
  }
  // Puts `file` back among the pending ones, merged with newer changes.
  void Requeue(const std::string& key, DirtyFile file);

  std::deque<replifs::v1::BackupCommand> namespace_queue_;  // journal order
  std::map<std::string, DirtyFile> files_;                  // pending, by KeyFor
  std::map<std::string, DirtyFile> in_flight_;              // sent in the current batch, by KeyFor
  // Seqs not yet done. A multiset: a namespace event's seq is also held by
  // the attribute entry of the directory it changed.
  std::multiset<uint64_t> outstanding_;
  uint64_t highest_seq_;
  uint64_t dropped_stale_ = 0;
  // Inodes whose changes were dropped: their next command re-reads them whole.
  std::set<uint64_t> reread_whole_;
  const OpenWritersView* open_writers_ = nullptr;
};

}  // namespace replifs::scheduler

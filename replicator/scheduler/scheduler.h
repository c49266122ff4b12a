// The schedule managing unit (enqueue, coalesce) and the schedule processing
// unit (emit BackupCommands), each on its own thread, sharing one policy.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "replifs/v1/events.pb.h"

namespace replifs::scheduler {

// When a file's changes go out (the hold-back policy):
//  - once no change came for `quiet_interval`, unless a program still has
//    the file open for writing (OpenWritersView): then at its last close
//    (Scheduler::WriterClosed), once quiet. A file being written is not sent
//    half-written, so a save by temp+rename is read and sent once;
//  - in any case once its oldest change waited `max_delay`, open or not: a
//    file held open for ever (a log) still reaches the server, a partial
//    version is committed then and the rest follows. That version is a
//    state the program wrote, not a mix of pages the kernel's writeback
//    put in the backing file: the client reads a file still open for
//    writing from a copy made during an fsync through the mount, which the
//    kernel serves under the inode lock (client/whole_state.h,
//    fusefs/fsync_copies.h);
//  - at once for a flush (`replifs sync`, FlushAndWait).
struct SchedulerPolicy {
  absl::Duration quiet_interval = absl::Milliseconds(200);  // a file is ready once quiet this long
  absl::Duration max_delay = absl::Seconds(2);  // ... or once its oldest change waited this long
  size_t max_batch = 256;                       // commands handed to the executor at once
  absl::Duration retry_initial = absl::Milliseconds(200);  // backoff after a failed batch
  absl::Duration retry_max = absl::Seconds(5);
};

// Whether a program still has an inode (the backing st_ino that events
// carry) open for writing; fusefs counts opens and releases. Called with the
// scheduler's lock held: must be quick and must not call into the scheduler.
class OpenWritersView {
 public:
  virtual ~OpenWritersView() = default;
  virtual bool IsOpenForWriting(uint64_t inode) const = 0;
};

// Carries a batch of commands to the server (the client implements it). OK
// means every command's effect is durable on the server, except those whose
// indexes are put in `stale`: CONTENT/ATTRIBUTES commands whose path no
// longer names their inode (a rename not yet seen by the scheduler). The
// scheduler keeps those pending so a later rename event fixes their path.
class CommandExecutor {
 public:
  virtual ~CommandExecutor() = default;
  virtual absl::Status Execute(const std::vector<replifs::v1::BackupCommand>& batch,
                               std::vector<size_t>* stale) = 0;
};

struct SchedulerStats {
  uint64_t pending_events = 0;  // enqueued, not yet acknowledged
  uint64_t pending_bytes = 0;   // dirty bytes not yet acknowledged
  uint64_t acked_seq = 0;       // every seq <= this is durable on the server
  int64_t last_ack_time_ns = 0;
  uint64_t commands_executed = 0;
  uint64_t failed_batches = 0;
  bool last_batch_failed = false;
  std::string last_error;
  uint64_t stale_commands = 0;  // commands the executor reported stale
  uint64_t dropped_stale = 0;   // files given up after too many stale round trips
};

class Scheduler {
 public:
  // `on_acked(seq)` is called (from a reporting thread of its own, so the
  // journal's trim never delays the next batch) whenever the acknowledged
  // watermark rises, with the latest one: every seq <= it is durable on the
  // server, so the journal may trim up to it. Calls never overlap.
  // `start_seq` is the journal's acked seq.
  static std::unique_ptr<Scheduler> Create(SchedulerPolicy policy, CommandExecutor* executor,
                                           std::function<void(uint64_t)> on_acked,
                                           uint64_t start_seq);
  virtual ~Scheduler() = default;

  virtual void Start() = 0;
  // Stops both threads; pending changes stay pending (they are in the journal).
  virtual void Stop() = 0;

  // Managing unit input, in journal order (event.seq set). Thread-safe.
  // Events with a seq not above every seq enqueued before (or start_seq) are
  // ignored as duplicates: callers must enqueue in seq order.
  virtual void Enqueue(replifs::v1::ChangeEvent event) = 0;

  // Sends everything enqueued so far without waiting for quiet intervals and
  // blocks until the watermark reaches it (and on_acked has returned for it)
  // or `timeout` passes: DeadlineExceeded naming the last executor error.
  virtual absl::Status FlushAndWait(absl::Duration timeout) = 0;

  virtual SchedulerStats stats() const = 0;

  // Holds back files open for writing (see SchedulerPolicy); null: none is.
  // `view` must outlive the scheduler or be reset to null first.
  virtual void SetOpenWriters(const OpenWritersView* view) = 0;
  // The last writer of `inode` closed it: its changes may go out once quiet.
  virtual void WriterClosed(uint64_t inode) = 0;
};

}  // namespace replifs::scheduler

#include "replicator/scheduler/pending_changes.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "replicator/scheduler/path_rewrite.h"
#include "replicator/telemetry/log.h"

namespace replifs::scheduler {
namespace {

using replifs::v1::BackupCommand;
using replifs::v1::ChangeEvent;

constexpr uint32_t kRenameExchange = 2;  // RENAME_EXCHANGE from <linux/fs.h>

enum class EventClass { kData, kAttributes, kNamespace, kUnknown };

EventClass Classify(ChangeEvent::Op op) {
  switch (op) {
    case ChangeEvent::WRITE:
    case ChangeEvent::TRUNCATE:
    case ChangeEvent::FALLOCATE:
    case ChangeEvent::COPY_RANGE:
      return EventClass::kData;
    case ChangeEvent::SETATTR:
    case ChangeEvent::SETXATTR:
    case ChangeEvent::REMOVEXATTR:
      return EventClass::kAttributes;
    case ChangeEvent::CREATE:
    case ChangeEvent::MKDIR:
    case ChangeEvent::MKNOD:
    case ChangeEvent::SYMLINK:
    case ChangeEvent::LINK:
    case ChangeEvent::UNLINK:
    case ChangeEvent::RMDIR:
    case ChangeEvent::RENAME:
    case ChangeEvent::RESCAN:
      return EventClass::kNamespace;
    default:
      return EventClass::kUnknown;
  }
}

// The root can be neither created, removed nor moved: a namespace event
// naming it (an empty path) is malformed. Sent on, the server would refuse
// its batch again and again and nothing behind it would ever go out.
bool NamesTheRootImpossibly(const ChangeEvent& event) {
  switch (event.op()) {
    case ChangeEvent::RESCAN:
      return false;  // a rescan of the root is fine
    case ChangeEvent::RENAME:
    case ChangeEvent::LINK:
      return event.path().empty() || event.new_path().empty();
    default:
      return event.path().empty();
  }
}

}  // namespace

std::string PendingChanges::KeyFor(uint64_t inode, const std::string& path) {
  // Without an inode the path is all we have to tell files apart.
  return inode != 0 ? absl::StrCat("i:", inode) : absl::StrCat("p:", path);
}

void PendingChanges::Add(const ChangeEvent& event, absl::Time now) {
  highest_seq_ = std::max(highest_seq_, event.seq());
  EventClass event_class = Classify(event.op());
  // A rescan of an object that exists names its inode: it follows renames
  // like any change to that inode. Without one (the path is gone) it stays
  // in namespace order and becomes a removal.
  if (event.op() == ChangeEvent::RESCAN && event.inode() != 0) event_class = EventClass::kData;
  if (event_class == EventClass::kNamespace && NamesTheRootImpossibly(event)) {
    telemetry::LogWarn("scheduler", "ignoring an event with an empty path",
                       {{"seq", event.seq()}, {"op", static_cast<int>(event.op())}});
    return;
  }
  switch (event_class) {
    case EventClass::kData:
    case EventClass::kAttributes: {
      outstanding_.insert(event.seq());
      const std::string key = KeyFor(event.inode(), event.path());
      files_[key].Apply(event, now);
      if (event.inode() != 0 && reread_whole_.erase(event.inode()) > 0) files_[key].whole_file = true;
      break;
    }
    case EventClass::kNamespace:
      outstanding_.insert(event.seq());
      AddNamespace(event);
      TouchParents(event, now);
      break;
    case EventClass::kUnknown:
      // Nothing to send; it must not hold the watermark back forever.
      telemetry::LogWarn("scheduler", "ignoring an event with an unknown op",
                         {{"seq", event.seq()}, {"op", static_cast<int>(event.op())}});
      break;
  }
}

void PendingChanges::EraseOutstanding(uint64_t seq) {
  if (auto it = outstanding_.find(seq); it != outstanding_.end()) outstanding_.erase(it);
}

void PendingChanges::TouchParents(const ChangeEvent& event, absl::Time now) {
  // Adding or removing an entry changes its directory's mtime. The directory
  // is keyed by path (events do not carry its inode), so later renames move
  // the entry along with the directory.
  auto touch = [&](const std::string& path) {
    ChangeEvent touched;
    touched.set_op(ChangeEvent::SETATTR);
    touched.set_seq(event.seq());
    touched.set_time_ns(event.time_ns());
    touched.set_path(ParentOf(path));
    outstanding_.insert(event.seq());
    files_[KeyFor(0, touched.path())].Apply(touched, now);
  };
  switch (event.op()) {
    case ChangeEvent::RESCAN:
      return;  // a rescan names every path that differs, directories included
    case ChangeEvent::RENAME:
      touch(event.path());
      if (ParentOf(event.new_path()) != ParentOf(event.path())) touch(event.new_path());
      return;
    case ChangeEvent::LINK:
      touch(event.new_path());
      return;
    default:
      touch(event.path());
  }
}

void PendingChanges::AddNamespace(const ChangeEvent& event) {
  BackupCommand command;
  command.set_kind(BackupCommand::NAMESPACE);
  *command.mutable_event() = event;
  command.set_path(event.path());
  command.set_inode(event.inode());
  command.set_time_ns(event.time_ns());
  command.add_seqs(event.seq());
  const std::string& path = event.path();
  switch (event.op()) {
    case ChangeEvent::UNLINK:
      // The last link is gone: pending data died with the file.
      if (event.attributes().nlink() == 0) {
        const std::string key = KeyFor(event.inode(), path);
        DropFiles(command, [&](const std::string& k, const DirtyFile& f) {
          return f.path == path || (event.inode() != 0 && k == key);
        });
      }
      break;
    case ChangeEvent::RMDIR:
      DropFiles(command, [&](const std::string&, const DirtyFile& f) {
        return IsSameOrUnder(f.path, path);
      });
      break;
    case ChangeEvent::RENAME:
      if ((event.rename_flags() & kRenameExchange) == 0) {
        // A replaced target dies, unless it is the very inode being moved.
        DropFiles(command, [&](const std::string&, const DirtyFile& f) {
          return IsSameOrUnder(f.path, event.new_path()) &&
                 (event.inode() == 0 || f.inode != event.inode());
        });
      }
      RenamePaths(event);
      break;
    default:
      break;
  }
  namespace_queue_.push_back(std::move(command));
}

template <typename Predicate>
void PendingChanges::DropFiles(BackupCommand& command, Predicate dies) {
  for (auto it = files_.begin(); it != files_.end();) {
    if (!dies(it->first, it->second)) {
      ++it;
      continue;
    }
    for (const uint64_t seq : it->second.seqs) command.add_seqs(seq);
    it = files_.erase(it);
  }
  for (auto& [key, file] : in_flight_) {
    if (file.unlinked || !dies(key, file)) continue;
    // If the send fails or is stale, the namespace command still covers these.
    file.unlinked = true;
    for (const uint64_t seq : file.seqs) command.add_seqs(seq);
  }
  std::sort(command.mutable_seqs()->begin(), command.mutable_seqs()->end());
}

void PendingChanges::RenamePaths(const ChangeEvent& event) {
  const std::string& from = event.path();
  const std::string& to = event.new_path();
  const bool exchange = (event.rename_flags() & kRenameExchange) != 0;
  auto renamed = [&](const std::string& path) -> std::optional<std::string> {
    if (std::optional<std::string> moved = Rebase(path, from, to)) return moved;
    if (exchange) return Rebase(path, to, from);
    return std::nullopt;
  };
  // In-flight files keep their batch key; Requeue re-keys them if needed.
  for (auto& [key, file] : in_flight_) {
    if (std::optional<std::string> moved = renamed(file.path)) file.path = *std::move(moved);
  }
  std::vector<DirtyFile> rekeyed;
  for (auto it = files_.begin(); it != files_.end();) {
    std::optional<std::string> moved = renamed(it->second.path);
    if (!moved) {
      ++it;
      continue;
    }
    it->second.path = *std::move(moved);
    if (it->second.inode != 0) {
      ++it;
      continue;
    }
    rekeyed.push_back(std::move(it->second));  // keyed by its old path
    it = files_.erase(it);
  }
  for (DirtyFile& file : rekeyed) {
    const std::string key = KeyFor(0, file.path);
    Requeue(key, std::move(file));
  }
}

void PendingChanges::Requeue(const std::string& key, DirtyFile file) {
  auto [it, inserted] = files_.try_emplace(key);
  if (inserted) {
    it->second = std::move(file);
  } else {
    it->second.MergeOlder(std::move(file));
  }
}

Batch PendingChanges::TakeBatch(absl::Time now, const SchedulerPolicy& policy,
                                uint64_t flush_target) {
  Batch batch;
  const size_t max_batch = std::max<size_t>(policy.max_batch, 1);
  while (!namespace_queue_.empty() && batch.commands.size() < max_batch) {
    batch.commands.push_back(std::move(namespace_queue_.front()));
    namespace_queue_.pop_front();
  }
  batch.namespace_count = batch.commands.size();
  // File data may depend on a namespace op still queued (its create).
  if (!namespace_queue_.empty()) return batch;

  std::vector<std::pair<uint64_t, std::string>> ready;  // (oldest seq, key)
  for (const auto& [key, file] : files_) {
    if (file.Ready(now, policy.quiet_interval, policy.max_delay, flush_target, OpenForWriting(file))) {
      ready.emplace_back(file.seqs.front(), key);
    }
  }
  std::sort(ready.begin(), ready.end());
  for (const auto& [seq, key] : ready) {
    if (batch.commands.size() >= max_batch) break;
    auto node = files_.extract(key);
    batch.commands.push_back(node.mapped().ToCommand());
    batch.file_keys.push_back(key);
    in_flight_.insert(std::move(node));
  }
  return batch;
}

void PendingChanges::Complete(Batch batch, const std::vector<size_t>& stale_indexes, absl::Time now,
                              const SchedulerPolicy& policy) {
  const std::set<size_t> stale(stale_indexes.begin(), stale_indexes.end());
  for (size_t i = 0; i < batch.namespace_count; ++i) {
    // `stale` is meant for file commands only; a namespace command is done.
    for (const uint64_t seq : batch.commands[i].seqs()) EraseOutstanding(seq);
  }
  for (size_t j = 0; j < batch.file_keys.size(); ++j) {
    auto node = in_flight_.extract(batch.file_keys[j]);
    DirtyFile& file = node.mapped();
    const bool is_stale = stale.count(batch.namespace_count + j) > 0;
    if (!is_stale) {
      // An unlinked file's seqs were handed to its namespace command, which
      // erases them: erasing here too would release another holder's seq.
      if (!file.unlinked) {
        for (const uint64_t seq : file.seqs) EraseOutstanding(seq);
      }
      continue;
    }
    if (file.unlinked) continue;  // its namespace command owns the seqs now
    if (++file.stale_round_trips > kMaxStaleRoundTrips) {
      telemetry::LogError("scheduler", "giving up on a file after stale round trips",
                          {{"path", file.path}, {"inode", file.inode}, {"round_trips", kMaxStaleRoundTrips}});
      for (const uint64_t seq : file.seqs) EraseOutstanding(seq);
      dropped_stale_++;
      if (file.inode != 0) reread_whole_.insert(file.inode);
      continue;
    }
    // Give the rename that explains the stale path time to arrive.
    file.not_before = now + policy.quiet_interval;
    const std::string key = KeyFor(file.inode, file.path);  // before `file` is moved from
    Requeue(key, std::move(file));
  }
}

void PendingChanges::Fail(Batch batch) {
  for (size_t i = batch.namespace_count; i-- > 0;) {
    namespace_queue_.push_front(std::move(batch.commands[i]));
  }
  for (const std::string& key : batch.file_keys) {
    auto node = in_flight_.extract(key);
    DirtyFile& file = node.mapped();
    if (file.unlinked) continue;  // its namespace command owns the seqs now
    // The key first: argument order is unspecified, and a path moved from
    // first made every requeued directory touch the root's ("p:"), merged
    // into the root's own touch and never sent (issue 6, scenario 2).
    const std::string requeue_key = KeyFor(file.inode, file.path);
    Requeue(requeue_key, std::move(file));
  }
}

absl::Time PendingChanges::NextReadyTime(const SchedulerPolicy& policy) const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [key, file] : files_) {
    next = std::min(next, file.ReadyAt(policy.quiet_interval, policy.max_delay, OpenForWriting(file)));
  }
  return next;
}

uint64_t PendingChanges::acked_seq() const {
  return outstanding_.empty() ? highest_seq_ : *outstanding_.begin() - 1;
}

uint64_t PendingChanges::dirty_bytes() const {
  uint64_t bytes = 0;
  for (const auto& [key, file] : files_) bytes += file.dirty.total_bytes();
  for (const auto& [key, file] : in_flight_) bytes += file.dirty.total_bytes();
  return bytes;
}

}  // namespace replifs::scheduler

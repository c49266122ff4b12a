#include "replicator/scheduler/dirty_file.h"

#include <sys/stat.h>

#include <algorithm>
#include <iterator>

namespace replifs::scheduler {

using replifs::v1::BackupCommand;
using replifs::v1::ChangeEvent;

void DirtyFile::Apply(const ChangeEvent& event, absl::Time now) {
  if (seqs.empty()) first_change = now;
  last_change = now;
  path = event.path();  // the newest event knows the current name best
  inode = event.inode();
  time_ns = std::max(time_ns, event.time_ns());
  seqs.push_back(event.seq());
  switch (event.op()) {
    case ChangeEvent::WRITE:
    case ChangeEvent::FALLOCATE:
    case ChangeEvent::COPY_RANGE:
      content_changed = true;
      dirty.Insert(event.offset(), event.length());
      break;
    case ChangeEvent::TRUNCATE:
      content_changed = true;
      dirty.TruncateTo(event.new_size());
      truncated_to = was_truncated ? std::min(truncated_to, event.new_size()) : event.new_size();
      was_truncated = true;
      break;
    case ChangeEvent::RESCAN:  // state unknown: send it all
      // A rescan from the fanotify backstop or a mapping flush names a file
      // without its attributes (mode 0): what changed is unknown, so it is
      // read whole like a regular file, never trusted as "attributes only".
      if (S_ISREG(event.attributes().mode()) || event.attributes().mode() == 0) {
        content_changed = true;
        whole_file = true;
      } else {
        attributes_changed = true;
      }
      break;
    default:  // SETATTR, SETXATTR, REMOVEXATTR
      attributes_changed = true;
      break;
  }
}

void DirtyFile::MergeOlder(DirtyFile&& older) {
  // A truncate in the newer changes also cut what the older ones wrote.
  if (was_truncated) older.dirty.TruncateTo(truncated_to);
  dirty.Merge(older.dirty);
  content_changed |= older.content_changed;
  attributes_changed |= older.attributes_changed;
  whole_file |= older.whole_file;
  if (older.was_truncated) {
    truncated_to = was_truncated ? std::min(truncated_to, older.truncated_to) : older.truncated_to;
    was_truncated = true;
  }
  first_change = std::min(first_change, older.first_change);
  not_before = std::max(not_before, older.not_before);
  time_ns = std::max(time_ns, older.time_ns);
  stale_round_trips = std::max(stale_round_trips, older.stale_round_trips);
  std::vector<uint64_t> merged;
  merged.reserve(seqs.size() + older.seqs.size());
  std::merge(older.seqs.begin(), older.seqs.end(), seqs.begin(), seqs.end(),
             std::back_inserter(merged));
  seqs = std::move(merged);
}

bool DirtyFile::Ready(absl::Time now, absl::Duration quiet, absl::Duration max_delay,
                      uint64_t flush_target, bool open_for_writing) const {
  if (now < not_before) return false;
  return now >= ReadyAt(quiet, max_delay, open_for_writing) ||
         (!seqs.empty() && seqs.front() <= flush_target);
}

absl::Time DirtyFile::ReadyAt(absl::Duration quiet, absl::Duration max_delay,
                              bool open_for_writing) const {
  const absl::Time by_max_delay = first_change + max_delay;
  if (open_for_writing) return std::max(not_before, by_max_delay);
  return std::max(not_before, std::min(last_change + quiet, by_max_delay));
}

BackupCommand DirtyFile::ToCommand() const {
  BackupCommand command;
  command.set_kind(content_changed || whole_file ? BackupCommand::CONTENT : BackupCommand::ATTRIBUTES);
  command.set_path(path);
  command.set_inode(inode);
  if (whole_file) {
    // No chunk map may be trusted around the dropped changes: recut it all.
    replifs::v1::ByteRange* range = command.add_dirty();
    range->set_offset(0);
    range->set_length(UINT64_MAX / 2);
  }
  for (const auto& [offset, length] : dirty.ranges()) {
    replifs::v1::ByteRange* range = command.add_dirty();
    range->set_offset(offset);
    range->set_length(length);
  }
  if (was_truncated) {
    command.set_was_truncated(true);
    command.set_truncated_to(truncated_to);
  }
  command.set_time_ns(time_ns);
  for (const uint64_t seq : seqs) command.add_seqs(seq);
  return command;
}

}  // namespace replifs::scheduler

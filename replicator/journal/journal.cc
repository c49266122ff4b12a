#include "replicator/journal/journal.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "replicator/journal/format.h"
#include "replicator/journal/posix_file.h"
#include "replicator/journal/segment_reader.h"
#include "replicator/server/fault_injection.h"

namespace replifs::journal {
namespace {

using replifs::v1::ChangeEvent;

absl::StatusOr<std::string> NewJournalId() {
  std::string id(kJournalIdBytes, '\0');
  size_t filled = 0;
  while (filled < id.size()) {
    const ssize_t n = ::getrandom(id.data() + filled, id.size() - filled, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("getrandom", errno);
    filled += static_cast<size_t>(n);
  }
  return id;
}

class JournalImpl final : public Journal {
 public:
  explicit JournalImpl(JournalOptions options) : options_(std::move(options)) {}

  // Runs once inside Open, before any other thread can see the journal.
  absl::Status Recover();

  absl::StatusOr<uint64_t> Append(ChangeEvent& event) override;
  absl::Status Sync() override;
  absl::Status Trim(uint64_t acked_seq) override;
  absl::Status Replay(const std::function<void(const ChangeEvent&)>& visit) override;
  const std::string& id() const override { return id_; }
  JournalStats stats() const override;

 private:
  std::string PathOf(uint64_t first_seq) const {
    return absl::StrCat(options_.directory, "/", SegmentFileName(first_seq));
  }
  absl::Status LoadId(bool have_segments);
  absl::Status LoadAcked();
  // Creates segment `first_seq` with its header and makes it the active one.
  absl::Status StartSegmentLocked(uint64_t first_seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // fdatasyncs the full active segment, then starts `first_seq`.
  absl::Status RollLocked(uint64_t first_seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const JournalOptions options_;
  std::string id_;  // set by Recover, constant afterwards

  // Serializes Trim so ACKED can be replaced without holding mu_.
  // Lock order: trim_mu_ before mu_.
  absl::Mutex trim_mu_;
  // Guards everything below. Innermost lock; released around the group
  // commit's fdatasync so appends continue while it runs.
  mutable absl::Mutex mu_;
  absl::CondVar sync_done_;  // signalled when a Sync leader finishes
  std::map<uint64_t, uint64_t> segments_
      ABSL_GUARDED_BY(mu_);  // first seq -> bytes; last is active
  // Shared so a Sync leader's fd survives a roll that replaces active_.
  std::shared_ptr<FileDescriptor> active_ ABSL_GUARDED_BY(mu_);
  uint64_t last_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t acked_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t synced_seq_ ABSL_GUARDED_BY(mu_) = 0;
  bool sync_running_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status broken_ ABSL_GUARDED_BY(mu_);  // sticky: a failed fdatasync or truncate
  uint64_t syncs_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sync_calls_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t torn_records_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t torn_bytes_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  // Where the last fdatasync ended: (segment, bytes). Reported to fault tests
  // (REPLIFS_FAULT_NOTES) so they can drop exactly the unsynced tail.
  uint64_t synced_segment_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t synced_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  void NoteSyncedLocked(uint64_t segment, uint64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (segment < synced_segment_ || (segment == synced_segment_ && bytes <= synced_bytes_)) return;
    synced_segment_ = segment;
    synced_bytes_ = bytes;
    if (fault::NotesEnabled()) {
      fault::Note("journal-synced", absl::StrCat(SegmentFileName(segment), " ", bytes, " ", synced_seq_, "\n"));
    }
  }
};

absl::Status JournalImpl::LoadId(bool have_segments) {
  const std::string path = absl::StrCat(options_.directory, "/", kJournalIdFile);
  absl::StatusOr<std::string> id = ReadWholeFile(path);
  if (id.ok()) {
    if (id->size() != kJournalIdBytes) return absl::DataLossError(absl::StrCat(path, ": bad size"));
    id_ = *std::move(id);
    return absl::OkStatus();
  }
  if (!absl::IsNotFound(id.status())) return id.status();
  // A new id over old segments would let their seqs be reused under it.
  if (have_segments) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.directory, " holds journal segments but no ", kJournalIdFile));
  }
  absl::StatusOr<std::string> fresh = NewJournalId();
  if (!fresh.ok()) return fresh.status();
  if (absl::Status s = ReplaceFileAtomically(options_.directory, kJournalIdFile, *fresh); !s.ok()) {
    return s;
  }
  id_ = *std::move(fresh);
  return absl::OkStatus();
}

absl::Status JournalImpl::LoadAcked() {
  const std::string path = absl::StrCat(options_.directory, "/", kAckedFile);
  absl::StatusOr<std::string> bytes = ReadWholeFile(path);
  if (absl::IsNotFound(bytes.status())) return absl::OkStatus();
  if (!bytes.ok()) return bytes.status();
  const std::optional<uint64_t> acked = DecodeAcked(*bytes);
  if (!acked) return absl::DataLossError(absl::StrCat(path, " is corrupt"));
  absl::MutexLock lock(&mu_);
  acked_seq_ = *acked;
  return absl::OkStatus();
}

absl::Status JournalImpl::Recover() {
  std::error_code ec;
  std::filesystem::create_directories(options_.directory, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("mkdir ", options_.directory, ": ", ec.message()));

  absl::StatusOr<std::vector<std::string>> names = ListDirectory(options_.directory);
  if (!names.ok()) return names.status();
  std::vector<uint64_t> found;
  for (const std::string& name : *names) {
    if (absl::EndsWith(name, ".tmp")) {
      ::unlink(absl::StrCat(options_.directory, "/", name).c_str());  // an interrupted replace
    } else if (std::optional<uint64_t> seq = ParseSegmentFileName(name); seq && *seq > 0) {
      found.push_back(*seq);
    }
  }
  std::sort(found.begin(), found.end());
  if (absl::Status s = LoadId(!found.empty()); !s.ok()) return s;
  if (absl::Status s = LoadAcked(); !s.ok()) return s;

  absl::MutexLock lock(&mu_);
  uint64_t last_seq = 0;             // last intact record
  uint64_t used_floor = acked_seq_;  // seqs <= this may have been used
  size_t set_aside_from = found.size();
  for (size_t i = 0; i < found.size(); ++i) {
    const uint64_t first = found[i];
    const std::string path = PathOf(first);
    absl::StatusOr<std::string> bytes = ReadWholeFile(path);
    if (!bytes.ok()) return bytes.status();
    const SegmentScan scan = ScanSegment(*bytes, first, {});
    if (scan.header == SegmentHeaderState::kUnknownVersion) {
      return absl::FailedPreconditionError(absl::StrCat(path, ": unknown journal format version"));
    }
    const bool is_last = i + 1 == found.size();
    if (scan.header == SegmentHeaderState::kTorn && is_last &&
        bytes->size() <= kSegmentHeaderSize) {
      // A crash while the segment was being created: nothing in it yet.
      ::unlink(path.c_str());
      used_floor = std::max(used_floor, first - 1);
      break;
    }
    if (scan.header == SegmentHeaderState::kTorn || (last_seq != 0 && first <= last_seq)) {
      set_aside_from = i;
      break;
    }
    used_floor = std::max(used_floor, first - 1);
    if (scan.records > 0) last_seq = scan.last_seq;
    segments_[first] = scan.valid_end;
    if (!scan.clean) {
      // Torn or corrupt tail: cut it so new records start on a clean boundary.
      const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path), errno);
      FileDescriptor owner(fd);
      if (::ftruncate(fd, static_cast<off_t>(scan.valid_end)) != 0 || ::fdatasync(fd) != 0) {
        return ErrnoStatus(absl::StrCat("truncate ", path), errno);
      }
      torn_records_dropped_++;
      torn_bytes_dropped_ += bytes->size() - scan.valid_end;
      set_aside_from = i + 1;
      break;
    }
  }
  // Later segments cannot be trusted after a gap; keep them for a human.
  if (set_aside_from < found.size()) {
    if (torn_records_dropped_ == 0) torn_records_dropped_++;  // one dropped tail, counted once
    for (size_t i = set_aside_from; i < found.size(); ++i) {
      const std::string path = PathOf(found[i]);
      std::error_code size_ec;
      const uint64_t size = std::filesystem::file_size(path, size_ec);
      const uint64_t bytes = size_ec ? 0 : size;
      torn_bytes_dropped_ += bytes;
      // Every record takes at least a header, so this bounds the seqs used.
      used_floor = std::max(used_floor, found[i] - 1 + bytes / kRecordHeaderSize);
      if (::rename(path.c_str(), absl::StrCat(path, ".corrupt").c_str()) != 0) {
        return ErrnoStatus(absl::StrCat("rename ", path), errno);
      }
    }
  }

  last_seq_ = std::max(last_seq, used_floor);
  // What survived the restart is what a later power loss must keep: sync it.
  synced_seq_ = last_seq_;
  if (segments_.empty()) return StartSegmentLocked(last_seq_ + 1);

  const auto& [active_first, active_bytes] = *segments_.rbegin();
  const std::string active_path = PathOf(active_first);
  const int fd = ::open(active_path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", active_path), errno);
  active_ = std::make_shared<FileDescriptor>(fd);
  if (::fdatasync(fd) != 0) return ErrnoStatus(absl::StrCat("fdatasync ", active_path), errno);
  NoteSyncedLocked(active_first, active_bytes);
  const bool active_empty = active_bytes == kSegmentHeaderSize;
  const uint64_t active_next = active_empty ? active_first : last_seq + 1;
  if (active_next == last_seq_ + 1) return absl::OkStatus();
  // Seqs were skipped (ACKED ran ahead, or segments were set aside): a new
  // segment keeps "+1 within a segment" true.
  if (active_empty) {
    segments_.erase(active_first);
    active_.reset();
    ::unlink(active_path.c_str());
    return StartSegmentLocked(last_seq_ + 1);
  }
  return RollLocked(last_seq_ + 1);
}

absl::Status JournalImpl::StartSegmentLocked(uint64_t first_seq) {
  const std::string path = PathOf(first_seq);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(absl::StrCat("create ", path), errno);
  auto file = std::make_shared<FileDescriptor>(fd);
  if (absl::Status s = WriteAllAt(fd, EncodeSegmentHeader(), 0); !s.ok()) return s;
  // The name must survive a power loss before any record in it is "synced".
  if (absl::Status s = SyncDirectory(options_.directory); !s.ok()) return s;
  segments_[first_seq] = kSegmentHeaderSize;
  active_ = std::move(file);
  NoteSyncedLocked(first_seq, kSegmentHeaderSize);
  return absl::OkStatus();
}

absl::Status JournalImpl::RollLocked(uint64_t first_seq) {
  if (::fdatasync(active_->get()) != 0) {
    broken_ = ErrnoStatus("fdatasync (segment roll)", errno);
    return broken_;
  }
  // Everything so far lives in the segment just synced.
  synced_seq_ = std::max(synced_seq_, last_seq_);
  return StartSegmentLocked(first_seq);
}

absl::StatusOr<uint64_t> JournalImpl::Append(ChangeEvent& event) {
  absl::MutexLock lock(&mu_);
  if (!broken_.ok()) return broken_;
  const uint64_t seq = last_seq_ + 1;
  event.set_seq(seq);
  std::string payload;
  if (!event.SerializeToString(&payload) || payload.size() > kMaxPayloadBytes) {
    event.set_seq(0);
    return absl::InvalidArgumentError(absl::StrCat("event too large: ", payload.size(), " bytes"));
  }
  const std::string record = EncodeRecord(seq, payload);
  if (options_.max_bytes > 0) {
    uint64_t live = 0;
    for (const auto& [first, bytes] : segments_) live += bytes;
    const bool rolls = segments_.rbegin()->second > kSegmentHeaderSize &&
                       segments_.rbegin()->second + record.size() > options_.segment_bytes;
    if (live + record.size() + (rolls ? kSegmentHeaderSize : 0) > options_.max_bytes) {
      event.set_seq(0);
      return absl::ResourceExhaustedError(absl::StrCat(
          "journal is full: ", live, " bytes held, limit ", options_.max_bytes));
    }
  }
  const fault::Action injected = fault::Hit("journal-append-write");
  if (injected == fault::Action::kEio || injected == fault::Action::kEnospc) {
    event.set_seq(0);
    return ErrnoStatus("append (injected)", injected == fault::Action::kEio ? EIO : ENOSPC);
  }
  if (segments_.rbegin()->second > kSegmentHeaderSize &&
      segments_.rbegin()->second + record.size() > options_.segment_bytes) {
    if (absl::Status s = RollLocked(seq); !s.ok()) {
      event.set_seq(0);
      return s;
    }
  }
  uint64_t& active_bytes = segments_.rbegin()->second;
  // One write(2) per record: after kill -9 a record is whole or torn at the tail.
  const size_t length = injected == fault::Action::kShort ? record.size() / 2 : record.size();
  const ssize_t n =
      ::pwrite(active_->get(), record.data(), length, static_cast<off_t>(active_bytes));
  if (n != static_cast<ssize_t>(record.size())) {
    const int err = n < 0 ? errno : ENOSPC;
    event.set_seq(0);
    // Take the partial record back so the next one starts on a boundary.
    if (n > 0 && ::ftruncate(active_->get(), static_cast<off_t>(active_bytes)) != 0) {
      broken_ = ErrnoStatus("ftruncate after a failed append", errno);
    }
    return ErrnoStatus("append", err);
  }
  active_bytes += record.size();
  last_seq_ = seq;
  return seq;
}

absl::Status JournalImpl::Sync() {
  absl::MutexLock lock(&mu_);
  const uint64_t target = last_seq_;
  if (synced_seq_ < target) sync_calls_++;
  while (synced_seq_ < target) {
    if (!broken_.ok()) return broken_;
    if (sync_running_) {
      // A leader is syncing; it may or may not cover `target` (it covers
      // what was appended before it started). Re-check when it finishes.
      sync_done_.Wait(&mu_);
      continue;
    }
    sync_running_ = true;
    const uint64_t covered = last_seq_;
    const uint64_t covered_segment = segments_.rbegin()->first;
    const uint64_t covered_bytes = segments_.rbegin()->second;
    const std::shared_ptr<FileDescriptor> file = active_;
    mu_.Unlock();
    if (options_.before_fdatasync_for_testing) options_.before_fdatasync_for_testing();
    int rc = 0;
    int err = 0;
    if (fault::Hit("journal-fdatasync") == fault::Action::kEio) {
      rc = -1;
      err = EIO;
    } else {
      rc = ::fdatasync(file->get());
      err = errno;
    }
    mu_.Lock();
    sync_running_ = false;
    syncs_++;
    if (rc != 0) {
      // After a failed fsync the kernel may have dropped the dirty pages:
      // a retry could "succeed" without the data, so stop for good.
      broken_ = ErrnoStatus("fdatasync", err);
    } else {
      synced_seq_ = std::max(synced_seq_, covered);
      NoteSyncedLocked(covered_segment, covered_bytes);
    }
    sync_done_.SignalAll();
  }
  return absl::OkStatus();
}

absl::Status JournalImpl::Trim(uint64_t acked_seq) {
  absl::MutexLock trim_lock(&trim_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (acked_seq > last_seq_) {
      return absl::InvalidArgumentError(
          absl::StrCat("Trim(", acked_seq, ") is past the last seq ", last_seq_));
    }
    if (acked_seq <= acked_seq_) return absl::OkStatus();
  }
  // Watermark first: a crash before the deletes only leaves segments Replay skips.
  if (absl::Status s = fault::Check("journal-write-acked"); !s.ok()) return s;
  if (absl::Status s =
          ReplaceFileAtomically(options_.directory, kAckedFile, EncodeAcked(acked_seq));
      !s.ok()) {
    return s;
  }
  std::vector<uint64_t> doomed;
  {
    absl::MutexLock lock(&mu_);
    acked_seq_ = acked_seq;
    // Segment N holds [N, next name - 1]; the active one is never deleted.
    while (segments_.size() > 1) {
      const auto next = std::next(segments_.begin());
      if (next->first - 1 > acked_seq) break;
      doomed.push_back(segments_.begin()->first);
      segments_.erase(segments_.begin());
    }
  }
  absl::Status status;
  for (const uint64_t first : doomed) {
    if (::unlink(PathOf(first).c_str()) != 0 && errno != ENOENT) {
      status.Update(ErrnoStatus(absl::StrCat("unlink ", PathOf(first)), errno));
    }
  }
  return status;
}

absl::Status JournalImpl::Replay(const std::function<void(const ChangeEvent&)>& visit) {
  std::vector<uint64_t> segments;
  uint64_t acked = 0;
  uint64_t last = 0;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [first, bytes] : segments_) segments.push_back(first);
    acked = acked_seq_;
    last = last_seq_;
  }
  // Read without the lock: `visit` may take a while or call back into us.
  for (const uint64_t first : segments) {
    if (first > last) break;
    absl::StatusOr<std::string> bytes = ReadWholeFile(PathOf(first));
    if (absl::IsNotFound(bytes.status())) continue;  // trimmed meanwhile: all acked
    if (!bytes.ok()) return bytes.status();
    ScanSegment(*bytes, first, [&](const ChangeEvent& event) {
      if (event.seq() > acked && event.seq() <= last) visit(event);
    });
  }
  return absl::OkStatus();
}

JournalStats JournalImpl::stats() const {
  absl::MutexLock lock(&mu_);
  JournalStats stats;
  stats.last_seq = last_seq_;
  stats.acked_seq = acked_seq_;
  for (const auto& [first, bytes] : segments_) stats.disk_bytes += bytes;
  stats.torn_records_dropped = torn_records_dropped_;
  stats.torn_bytes_dropped = torn_bytes_dropped_;
  stats.synced_seq = synced_seq_;
  stats.syncs = syncs_;
  stats.sync_calls = sync_calls_;
  stats.synced_segment = synced_segment_;
  stats.synced_bytes = synced_bytes_;
  return stats;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(const JournalOptions& options) {
  if (options.directory.empty()) return absl::InvalidArgumentError("journal directory is empty");
  auto journal = std::make_unique<JournalImpl>(options);
  if (absl::Status s = journal->Recover(); !s.ok()) return s;
  return journal;
}

}  // namespace replifs::journal

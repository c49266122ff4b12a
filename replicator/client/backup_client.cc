#include "replicator/client/backup_client.h"

#include <cstdlib>
#include <future>
#include <iostream>
#include <algorithm>
#include <map>
#include <system_error>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "replicator/client/node_snapshot.h"
#include "replicator/delta/chunk_list_delta.h"
#include "replicator/delta/chunk_patch.h"
#include "replicator/client/path_rules.h"
#include "replicator/client/upload_pipeline.h"
#include "replicator/telemetry/log.h"

namespace replifs::client {
namespace {

// Chunks read are handed to the upload thread in groups of this size (the
// server stores 16 MiB per sync); two groups may wait while a third is read.
constexpr size_t kUploadBatchBytes = 16 << 20;

uint64_t MaxSeq(const v1::BackupCommand& command) {
  uint64_t seq = command.event().seq();
  for (uint64_t s : command.seqs()) seq = std::max(seq, s);
  return seq;
}

}  // namespace

// Collects the operations of one batch and uploads the chunks they need,
// asking the server which ones it lacks, a window at a time.
class BackupClient::BatchBuilder {
 public:
  BatchBuilder(RepoConnection* connection, int root_fd, ChunkMapStore* maps,
               BackupClientStats* stats)
      : connection_(connection), root_fd_(root_fd), maps_(maps), stats_(stats), uploads_(connection) {}

  // Files open for writing are settled before they are read (both may be null).
  void SetWholeState(const scheduler::OpenWritersView* writers, const WholeStateSource* source) {
    open_writers_ = writers;
    whole_state_ = source;
  }

  // Snapshot of `path` as a put; NotFound if it is gone. With `command`
  // (CONTENT or ATTRIBUTES) the file's chunk map limits what is read.
  absl::Status AddPut(const std::string& path, uint64_t seq, int64_t time_ns,
                      uint64_t expected_inode, const v1::BackupCommand* command = nullptr) {
    ContentSnapshotOptions options;
    options.expected_inode = expected_inode;
    // Content of a file still being written (sent at the max delay): a
    // settled whole state, never a writeback mix (whole_state.h).
    if (command != nullptr && command->kind() == v1::BackupCommand::CONTENT && expected_inode != 0 &&
        whole_state_ != nullptr && open_writers_ != nullptr &&
        open_writers_->IsOpenForWriting(expected_inode)) {
      options.whole_state = whole_state_;
    }
    // Tests only (fault_test shows what the fallback is for): a file that
    // never stops changing is read in place or not at all.
    static const bool no_fallback = getenv("REPLIFS_NO_NEVER_QUIET_FALLBACK") != nullptr;
    if (no_fallback) {
      options.whole_state = nullptr;
      options.stable_copy_attempts = 0;
    }
    if (command != nullptr && maps_ != nullptr) {
      options.previous_map = [this](uint64_t device, uint64_t inode) { return maps_->Get(device, inode); };
      options.content_unchanged = command->kind() == v1::BackupCommand::ATTRIBUTES;
      for (const v1::ByteRange& range : command->dirty()) {
        options.changed.push_back({range.offset(), range.length()});
      }
      if (command->was_truncated()) {
        // From the cut on, bytes may be zeros that no write names.
        options.changed.push_back({command->truncated_to(), UINT64_MAX / 2});
      }
    }
    return Snapshot(path, seq, time_ns, options);
  }

  // Chunks reused from chunk maps must still be on the server (a store can
  // be collected or replaced): files naming a missing one are read again.
  // Called only after the server refused a commit (it refuses, atomically,
  // a put naming a chunk it does not store): asking first would cost ~18
  // bytes per chunk of every edited file, 300 KB for one edit of a 1 GiB file.
  bool has_reused() const { return !reused_.empty(); }
  absl::Status CheckReusedChunks() {
    std::vector<std::string> ids;
    for (const auto& [index, reused] : reused_) ids.insert(ids.end(), reused.begin(), reused.end());
    if (ids.empty()) return absl::OkStatus();
    absl::StatusOr<std::vector<std::string>> missing = connection_->MissingChunks(ids);
    if (!missing.ok()) return missing.status();
    if (missing->empty()) return absl::OkStatus();
    const std::set<std::string> gone(missing->begin(), missing->end());
    for (const auto& [index, reused] : reused_) {
      bool lacks = std::any_of(reused.begin(), reused.end(), [&](const std::string& id) { return gone.count(id); });
      if (!lacks) continue;
      v1::Operation& op = operations_[index];
      ContentSnapshotOptions full;  // no map: read the whole file
      ChunkMap map;
      full.map_out = &map;
      full.bytes_read = &stats_->bytes_read;
      absl::StatusOr<v1::NodeState> state =
          SnapshotNode(root_fd_, op.put().path(), connection_->hasher(), ChunkSinkFn(), full);
      if (!state.ok()) return state.status();  // the batch is retried
      *op.mutable_put() = std::move(*state);
      maps_out_[index] = std::move(map);
    }
    return FlushUploads();
  }

  std::vector<ChunkMap> TakeMaps() {
    std::vector<ChunkMap> out;
    for (auto& [index, map] : maps_out_) out.push_back(std::move(map));
    return out;
  }

  // The object as the event saw it, without content or xattrs.
  void AddPutFromEvent(const v1::ChangeEvent& event, uint64_t seq, int64_t time_ns) {
    const v1::Attributes& attributes = event.attributes();
    v1::Operation op;
    op.set_seq(seq);
    op.set_time_ns(time_ns);
    v1::NodeState* state = op.mutable_put();
    state->set_path(event.path());
    state->set_type(NodeTypeOf(attributes.mode()));
    if (state->type() == v1::NodeState::TYPE_UNSPECIFIED) return;  // the event did not say
    state->set_mode(attributes.mode() & 07777);
    state->set_uid(attributes.uid());
    state->set_gid(attributes.gid());
    state->set_mtime_ns(attributes.mtime_ns());
    state->set_rdev(attributes.rdev());
    state->set_symlink_target(event.symlink_target());
    if (state->type() == v1::NodeState::SYMLINK) state->set_size(event.symlink_target().size());
    operations_.push_back(std::move(op));
  }

  void AddRemove(const std::string& path, uint64_t seq, int64_t time_ns) {
    v1::Operation op;
    op.set_seq(seq);
    op.set_time_ns(time_ns);
    op.set_remove(path);
    operations_.push_back(std::move(op));
  }

  void AddRename(const v1::ChangeEvent& event, int64_t time_ns) {
    v1::Operation op;
    op.set_seq(event.seq());
    op.set_time_ns(time_ns);
    op.mutable_rename()->set_from(event.path());
    op.mutable_rename()->set_to(event.new_path());
    op.mutable_rename()->set_flags(event.rename_flags());
    operations_.push_back(std::move(op));
  }

  // Hands what was read so far to the upload thread and waits until the
  // server stores all of it: before an Apply.
  absl::Status FlushUploads() {
    absl::Status status = SubmitPending();
    status.Update(uploads_.Drain());
    stats_->chunks_uploaded += uploads_.chunks_uploaded() - counted_chunks_;
    stats_->bytes_uploaded += uploads_.bytes_uploaded() - counted_bytes_;
    counted_chunks_ = uploads_.chunks_uploaded();
    counted_bytes_ = uploads_.bytes_uploaded();
    return status;
  }

  std::vector<v1::Operation>& operations() { return operations_; }

  // The operations as sent: with `use_deltas`, a put whose previous chunk
  // list the server should hold (the file's acknowledged map) carries only
  // splices of it when that is smaller (backup.proto, ChunkListDelta).
  std::vector<v1::Operation> WireOperations(bool use_deltas) {
    std::vector<v1::Operation> wire = operations_;
    sent_deltas_ = false;
    if (!use_deltas) return wire;
    for (const auto& [index, base] : bases_) {
      v1::Operation& op = wire[index];
      if (!op.has_put() || op.put().type() != v1::NodeState::REGULAR) continue;
      v1::ChunkListDelta delta = delta::MakeChunkListDelta(base, op.put().chunks());
      size_t full_bytes = 0;
      for (const v1::ChunkRef& ref : op.put().chunks()) full_bytes += ref.ByteSizeLong() + 2;
      if (delta.ByteSizeLong() >= full_bytes) continue;
      op.mutable_put()->clear_chunks();
      *op.mutable_put_chunks_delta() = std::move(delta);
      sent_deltas_ = true;
    }
    return wire;
  }
  bool sent_deltas() const { return sent_deltas_; }

 private:
  ChunkSink ChunkSinkFn() {
    return [this](const chunker::ChunkId& id, std::span<const uint8_t> data) {
      std::optional<delta::ChunkPatch> patch = std::exchange(next_patch_, std::nullopt);
      std::string key = id.ToBytes();
      if (!queued_ids_.insert(key).second) return absl::OkStatus();
      pending_.push_back({std::move(key), std::string(reinterpret_cast<const char*>(data.data()), data.size()),
                          std::move(patch)});
      pending_bytes_ += data.size();
      // Reading goes on while the group is compressed and sent.
      return pending_bytes_ >= kUploadBatchBytes ? SubmitPending() : absl::OkStatus();
    };
  }

  absl::Status SubmitPending() {
    std::vector<RepoConnection::UploadItem> group;
    group.swap(pending_);
    pending_bytes_ = 0;
    return uploads_.Submit(std::move(group));
  }

  absl::Status Snapshot(const std::string& path, uint64_t seq, int64_t time_ns,
                        ContentSnapshotOptions options) {
    ChunkMap map;
    std::vector<std::string> reused;
    options.map_out = &map;
    options.reused_ids = &reused;
    options.bytes_read = &stats_->bytes_read;
    // The acknowledged map the file is re-chunked from is also the base of
    // its chunk-list delta, and its chunks the sources of patches.
    std::optional<ChunkMap> base;
    if (options.previous_map) {
      options.previous_map = [lookup = options.previous_map, &base](uint64_t device, uint64_t inode) {
        base = lookup(device, inode);
        return base;
      };
      options.on_recut_chunk = [this, &options](const ChunkMap& previous, const chunker::ChunkRecord& record,
                                                std::span<const uint8_t> data) {
        // Writes through the mount are in place: bytes outside the dirty
        // ranges are the previous version's (the server checks the result).
        next_patch_ = delta::MakeInPlacePatch(record.offset, data, previous.chunks,
                                              previous.identity.size, options.changed);
      };
    }
    absl::StatusOr<v1::NodeState> state =
        SnapshotNode(root_fd_, path, connection_->hasher(), ChunkSinkFn(), options);
    next_patch_.reset();
    if (!state.ok()) return state.status();
    const bool regular = state->type() == v1::NodeState::REGULAR;
    v1::Operation op;
    op.set_seq(seq);
    op.set_time_ns(time_ns);
    *op.mutable_put() = std::move(*state);
    operations_.push_back(std::move(op));
    if (regular) {
      if (base.has_value()) {
        delta::ChunkList& list = bases_[operations_.size() - 1];
        for (const chunker::ChunkRecord& record : base->chunks) {
          v1::ChunkRef* ref = list.Add();
          ref->set_id(record.id.ToBytes());
          ref->set_length(record.length);
        }
      }
      maps_out_[operations_.size() - 1] = std::move(map);
      if (!reused.empty()) reused_[operations_.size() - 1] = std::move(reused);
    }
    return absl::OkStatus();
  }

  RepoConnection* connection_;
  int root_fd_;
  ChunkMapStore* maps_;  // may be null: no incremental chunking
  BackupClientStats* stats_;
  const scheduler::OpenWritersView* open_writers_ = nullptr;
  const WholeStateSource* whole_state_ = nullptr;
  std::map<size_t, ChunkMap> maps_out_;                 // by operation index
  std::map<size_t, std::vector<std::string>> reused_;   // by operation index
  std::map<size_t, delta::ChunkList> bases_;            // by operation index: the acknowledged list
  std::optional<delta::ChunkPatch> next_patch_;  // of the chunk the sink gets next
  bool sent_deltas_ = false;
  std::vector<v1::Operation> operations_;
  std::vector<RepoConnection::UploadItem> pending_;
  std::set<std::string> queued_ids_;
  size_t pending_bytes_ = 0;
  UploadPipeline uploads_;  // last: its thread is joined before the rest goes
  uint64_t counted_chunks_ = 0, counted_bytes_ = 0;  // uploads_ totals already in stats_
};

BackupClient::BackupClient(ConnectionOptions options, int backing_root_fd,
                           ChunkMapStore* chunk_maps)
    : options_(std::move(options)),
      backing_root_fd_(backing_root_fd),
      trace_(getenv("REPLIFS_TRACE") != nullptr),
      chunk_maps_(chunk_maps) {}

absl::StatusOr<RepoConnection*> BackupClient::Connection() {
  std::lock_guard lock(mutex_);
  if (connection_ == nullptr) {
    auto connection = RepoConnection::Open(options_);
    if (!connection.ok()) {
      RecordError(connection.status());
      PublishStatsLocked();
      return connection.status();
    }
    connection_ = std::move(*connection);
    stats_.reachable = true;
    PublishStatsLocked();
  }
  return connection_.get();
}

BackupClientStats BackupClient::stats() const {
  BackupClientStats stats;
  if (std::unique_lock lock(mutex_, std::try_to_lock); lock.owns_lock()) {
    stats = stats_;
  } else {  // a batch is running: `replifs status` must not wait for it
    std::lock_guard published(published_mutex_);
    stats = published_;
  }
  if (RepoConnection* connection = live_connection_.load()) stats.wire_bytes = connection->wire_bytes();
  return stats;
}

void BackupClient::PublishStatsLocked() {
  live_connection_.store(connection_.get());
  std::lock_guard published(published_mutex_);
  published_ = stats_;
}

void BackupClient::RecordError(const absl::Status& status) {
  stats_.last_error = std::string(status.message());
  if (absl::IsUnavailable(status)) stats_.reachable = false;
}

absl::Status BackupClient::Execute(const std::vector<v1::BackupCommand>& batch,
                                   std::vector<size_t>* stale) {
  if (absl::StatusOr<RepoConnection*> connection = Connection(); !connection.ok()) {
    return connection.status();
  }
  std::lock_guard lock(mutex_);
  absl::Status status = ExecuteLocked(batch, stale);
  if (status.ok()) {
    stats_.reachable = true;
    stats_.last_error.clear();
  } else {
    RecordError(status);
    applied_seq_unknown_ = true;  // the server may have committed it, reply lost
  }
  PublishStatsLocked();
  return status;
}

absl::Status BackupClient::ExecuteLocked(const std::vector<v1::BackupCommand>& batch,
                                         std::vector<size_t>* stale) {
  if (applied_seq_unknown_) {
    absl::StatusOr<uint64_t> applied = connection_->FetchAppliedSeq();
    if (!applied.ok()) return applied.status();
    known_applied_seq_ = *applied;
    applied_seq_unknown_ = false;
  }
  // After missed changes the maps are suspect: read whole files, and record
  // maps only if no loss was noted while this batch was read (ChunkMapTrust).
  WaitForMapSave();  // this batch reads the maps the last one saved
  const uint64_t trust_epoch = map_trust_.epoch();
  BatchBuilder builder(connection_.get(), backing_root_fd_,
                       map_trust_.trusted() ? chunk_maps_ : nullptr, &stats_);
  builder.SetWholeState(open_writers_.load(), whole_state_.load());
  auto next_time = [this](int64_t time_ns) {
    last_time_ns_ = std::max(time_ns, last_time_ns_ + 1);
    return last_time_ns_;
  };

  for (size_t i = 0; i < batch.size(); ++i) {
    const v1::BackupCommand& command = batch[i];
    const uint64_t seq = MaxSeq(command);
    if (command.kind() == v1::BackupCommand::NAMESPACE) {
      // Applied already (a retry after a lost reply, or a replay): sending
      // it again would, for a create whose path is gone by now, put back a
      // file that an unlink the server then skips as applied had removed.
      if (seq <= known_applied_seq_) continue;
      const v1::ChangeEvent& event = command.event();
      const int64_t time_ns = next_time(event.time_ns());
      switch (event.op()) {
        case v1::ChangeEvent::RENAME:
          // Directory mtimes changed by namespace operations come as the
          // scheduler's ATTRIBUTES commands for the parents.
          builder.AddRename(event, time_ns);
          break;
        case v1::ChangeEvent::UNLINK:
        case v1::ChangeEvent::RMDIR:
          builder.AddRemove(event.path(), seq, time_ns);
          break;
        case v1::ChangeEvent::LINK: {
          // Both names now belong to a link group: put both.
          for (const std::string& path : {event.path(), event.new_path()}) {
            absl::Status status = builder.AddPut(path, seq, time_ns, 0);
            if (!status.ok() && !absl::IsNotFound(status)) return status;
          }
          break;
        }
        default: {  // CREATE, MKDIR, MKNOD, SYMLINK, RESCAN: send the path as it is now
          const scheduler::OpenWritersView* writers = open_writers_.load();
          if (event.op() == v1::ChangeEvent::CREATE && writers != nullptr &&
              writers->IsOpenForWriting(event.inode())) {
            builder.AddPutFromEvent(event, seq, time_ns);  // the empty file; content at close
            break;
          }
          const bool rescan = event.op() == v1::ChangeEvent::RESCAN;
          absl::Status status = builder.AddPut(event.path(), seq, time_ns, rescan ? 0 : event.inode());
          if (rescan && absl::IsNotFound(status)) {
            builder.AddRemove(event.path(), seq, time_ns);  // a rescan exists to find this out
          } else if (absl::IsNotFound(status) || absl::IsFailedPrecondition(status)) {
            // Renamed away (or replaced) since: put what the event saw, so
            // that the RENAME that follows in journal order finds it. Its
            // content follows in the inode's CONTENT command.
            builder.AddPutFromEvent(event, seq, time_ns);
          } else if (absl::IsAborted(status)) {
            // Still being written: its CONTENT command (or a later rescan) sends it.
          } else if (!status.ok()) {
            return status;
          }
          break;
        }
      }
      continue;
    }
    // CONTENT or ATTRIBUTES: the inode's current path, checked against its inode.
    absl::Status status =
        builder.AddPut(command.path(), seq, next_time(command.time_ns()), command.inode(), &command);
    if (absl::IsNotFound(status) || absl::IsFailedPrecondition(status) ||
        absl::IsAborted(status)) {
      if (trace_) std::cerr << "replifs trace: stale " << command.path() << ": " << status << std::endl;
      stale->push_back(i);
    } else if (!status.ok()) {
      return status;
    }
  }
  if (absl::Status status = builder.FlushUploads(); !status.ok()) return status;
  if (builder.operations().empty()) return absl::OkStatus();
  if (trace_) {
    for (const v1::Operation& op : builder.operations()) {
      std::cerr << "replifs trace: apply seq " << op.seq() << " " << op.ShortDebugString().substr(0, 200)
                << std::endl;
    }
  }
  absl::StatusOr<uint64_t> applied = connection_->Apply(builder.WireOperations(/*use_deltas=*/true));
  if (absl::IsFailedPrecondition(applied.status()) && builder.sent_deltas()) {
    // The server's list is not the acknowledged one (or a chunk is gone): full lists.
    telemetry::LogWarn("client", "chunk-list delta refused; sending full lists", {{"error", applied.status()}});
    ++stats_.deltas_refused;
    applied = connection_->Apply(builder.WireOperations(/*use_deltas=*/false));
  }
  if (absl::IsFailedPrecondition(applied.status()) && builder.has_reused()) {
    // Perhaps a reused chunk is gone: re-read the files that name one, retry once.
    if (absl::Status status = builder.CheckReusedChunks(); !status.ok()) return status;
    applied = connection_->Apply(builder.WireOperations(/*use_deltas=*/false));
  }
  if (!applied.ok()) return applied.status();
  known_applied_seq_ = std::max(known_applied_seq_, *applied);
  ++stats_.commits;
  stats_.operations += builder.operations().size();
  if (chunk_maps_ != nullptr) {
    // Only now are these chunk lists what the server has committed. They are
    // saved after the acknowledgement, off its path (a 1 GiB file's map is
    // 330 KB: tens of ms); the next batch waits for the save before it reads
    // maps, and the journal is trimmed only once it is done (WaitForSavedMaps).
    uint64_t save_number;
    {
      std::lock_guard lock(saves_mutex_);
      save_number = ++saves_started_;
    }
    auto save = [this, save_number, maps = builder.TakeMaps(), trusted = map_trust_.epoch() == trust_epoch] {
      absl::Status saved;
      if (trusted) {
        saved = chunk_maps_->PutAll(maps);
      } else {
        for (const ChunkMap& map : maps) saved.Update(chunk_maps_->Invalidate(map.identity.device, map.identity.inode));
      }
      if (!saved.ok()) telemetry::LogWarn("client", "chunk maps not saved; files will be re-read", {{"error", saved}});
      std::lock_guard lock(saves_mutex_);
      saves_finished_ = save_number;
      saves_done_.notify_all();
    };
    try {
      map_save_ = std::async(std::launch::async, save);
    } catch (const std::system_error&) {
      save();  // no thread to be had: saved before the batch returns
    }
  }
  return absl::OkStatus();
}

void BackupClient::WaitForMapSave() {
  if (map_save_.valid()) map_save_.get();
}

void BackupClient::WaitForSavedMaps() {
  std::unique_lock lock(saves_mutex_);
  const uint64_t started = saves_started_;
  saves_done_.wait(lock, [&] { return saves_finished_ >= started; });
}

BackupClient::~BackupClient() { WaitForMapSave(); }

}  // namespace replifs::client

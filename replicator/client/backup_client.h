// The source's network backup unit: turns the scheduler's BackupCommands into
// chunk uploads and one atomic Apply per batch. Reads file data from the
// backing directory (not through the mount).
#pragma once

#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "replicator/client/chunk_map_trust.h"
#include "replicator/client/chunk_map_store.h"
#include "replicator/client/repo_connection.h"
#include "replicator/client/whole_state.h"
#include "replicator/scheduler/scheduler.h"

namespace replifs::client {

struct BackupClientStats {
  uint64_t commits = 0;          // successful Apply calls
  uint64_t operations = 0;       // operations applied
  uint64_t chunks_uploaded = 0;
  uint64_t bytes_uploaded = 0;   // on the wire, after compression
  uint64_t bytes_read = 0;       // file bytes read to chunk
  uint64_t wire_bytes = 0;       // every gRPC message to and from the server, serialized
  uint64_t deltas_refused = 0;   // Applies resent with full chunk lists (base mismatch)
  bool reachable = false;
  std::string last_error;
};

class BackupClient : public scheduler::CommandExecutor {
 public:
  // `chunk_maps` (may be null) lets a change re-chunk only around its dirty
  // ranges; it must outlive the client.
  BackupClient(ConnectionOptions options, int backing_root_fd, ChunkMapStore* chunk_maps = nullptr);
  ~BackupClient() override;  // waits for the last chunk-map save

  absl::Status Execute(const std::vector<v1::BackupCommand>& batch,
                       std::vector<size_t>* stale) override;

  // Connects if needed (Hello). Thread-safe.
  absl::StatusOr<RepoConnection*> Connection();
  BackupClientStats stats() const;
  // The acknowledged chunk maps (null if none): Reconcile compares with them.
  ChunkMapStore* chunk_maps() const { return chunk_maps_; }
  // Told when changes were missed; Reconcile restores it.
  ChunkMapTrust& chunk_map_trust() { return map_trust_; }
  // Files open for writing through the mount (null: none known). The create
  // of such a file goes out as its event saw it, without reading what is
  // half written; the content follows in its CONTENT command at the close.
  void SetOpenWriters(const scheduler::OpenWritersView* writers) { open_writers_.store(writers); }
  // Returns once the chunk maps of every batch committed so far are saved.
  // The journal is trimmed only after this: a trimmed change whose map was
  // lost to a crash would be re-chunked against an older map. Thread-safe.
  void WaitForSavedMaps();
  // Settles files open for writing before their content is read (a version
  // at the max delay is then a state the program wrote, whole_state.h).
  void SetWholeState(const WholeStateSource* source) { whole_state_.store(source); }

 private:
  class BatchBuilder;
  absl::Status ExecuteLocked(const std::vector<v1::BackupCommand>& batch,
                             std::vector<size_t>* stale);
  void RecordError(const absl::Status& status);
  void PublishStatsLocked();  // mutex_ held
  void WaitForMapSave();      // mutex_ held

  const ConnectionOptions options_;
  const int backing_root_fd_;
  const bool trace_;
  ChunkMapStore* const chunk_maps_;
  ChunkMapTrust map_trust_;  // REPLIFS_TRACE set: log every operation sent (daemon.log)
  mutable std::mutex mutex_;  // guards everything below; Execute runs one batch at a time
  std::unique_ptr<RepoConnection> connection_;
  int64_t last_time_ns_ = 0;  // versions get strictly increasing times
  // Namespace commands with a seq at or below this are applied on the
  // server (it applies them in journal order); unknown after a failure.
  uint64_t known_applied_seq_ = 0;
  bool applied_seq_unknown_ = true;
  BackupClientStats stats_;
  std::future<void> map_save_;  // the last batch's chunk maps, saved after its acknowledgement
  std::mutex saves_mutex_;      // a leaf lock: guards the two counts below
  std::condition_variable saves_done_;
  uint64_t saves_started_ = 0, saves_finished_ = 0;
  // stats_ as of the last time mutex_ was released: stats() answers from it
  // while a batch holds mutex_ (minutes on a slow link), never waiting.
  mutable std::mutex published_mutex_;
  BackupClientStats published_;  // guarded by published_mutex_
  std::atomic<RepoConnection*> live_connection_{nullptr};  // for live wire bytes
  std::atomic<const scheduler::OpenWritersView*> open_writers_{nullptr};
  std::atomic<const WholeStateSource*> whole_state_{nullptr};
};

}  // namespace replifs::client

// ChunkStore and PageStore on pack files (FORMAT.md, "Pack file"):
// entries are appended to one open pack per repository and process,
// <store>/repos/<repo_id>/packs/<16 hex>.pack, and found through an index,
// <store>/repos/pack-index.sqlite, that RebuildIndex() can recreate from the
// packs alone. Chunks stored by older servers as one file each
// (FileChunkStore) are still read and deleted: stores are not converted.
// Thread-safe (one mutex); several processes may share a store (the
// maintenance commands run beside the server).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "replicator/server/chunk_store.h"
#include "replicator/server/file_chunk_store.h"
#include "replicator/server/pack_format.h"
#include "replicator/server/page_store.h"
#include "replicator/server/posix_io.h"
#include "replicator/server/sqlite_db.h"

namespace replifs::server {

class PackChunkStore : public ChunkStore, public PageStore {
 public:
  struct Options {
    // A pack is sealed (never appended to again) once it reaches this size.
    uint64_t target_pack_size = 32 << 20;
  };
  static constexpr char kIndexName[] = "pack-index.sqlite";

  // `repos_dir` is <store>/repos; it is created if absent.
  static absl::StatusOr<std::unique_ptr<PackChunkStore>> Open(const std::string& repos_dir,
                                                              Options options);
  static absl::StatusOr<std::unique_ptr<PackChunkStore>> Open(const std::string& repos_dir) {
    return Open(repos_dir, Options());
  }

  // ChunkStore.
  absl::Status Put(int64_t repo_id, std::string_view id, std::string_view data) override;
  // One fdatasync and one index transaction for the whole batch.
  absl::Status PutMany(int64_t repo_id, const std::vector<PendingChunk>& chunks) override;
  absl::StatusOr<std::string> Get(int64_t repo_id, std::string_view id) override;
  absl::StatusOr<StoredChunk> GetStored(int64_t repo_id, std::string_view id) override;
  absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> GuardWrite() override;
  absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> GuardCollection() override;
  // Drops the index entry (the bytes go at the next Compact) and any
  // per-chunk file of an older server.
  absl::Status Delete(int64_t repo_id, std::string_view id) override;

  // PageStore.
  absl::StatusOr<bool> HasPage(int64_t repo_id, std::string_view id) override;
  absl::Status PutPage(int64_t repo_id, std::string_view id, std::string_view data) override;
  absl::StatusOr<std::string> GetPage(int64_t repo_id, std::string_view id) override;
  absl::Status DeletePage(int64_t repo_id, std::string_view id);

  // Every indexed id of `kind` in the repository, sorted.
  absl::StatusOr<std::vector<std::string>> ListIds(int64_t repo_id, EntryKind kind);

  struct CompactStats {
    int packs_removed = 0;       // packs whose live entries moved (or had none)
    int packs_skipped_damaged = 0;
    uint64_t bytes_freed = 0;    // file bytes of removed packs minus bytes copied
    uint64_t bytes_copied = 0;
  };
  // Seals every pack of the repository (writers start new ones), then
  // rewrites packs whose live bytes are below `min_live_fraction` of their
  // size, and merges small packs. The caller holds GuardCollection().
  absl::StatusOr<CompactStats> Compact(int64_t repo_id, double min_live_fraction);

  struct RebuildStats {
    int packs = 0;
    uint64_t entries = 0;
    uint64_t torn_bytes = 0;  // cut off pack tails that were not whole entries
  };
  // Recreates the index from the packs, truncating torn tails, and calls
  // `on_chunk` for every chunk entry (to re-record it in the catalog). Only
  // while no other process uses the store (the caller holds its LOCK).
  absl::StatusOr<RebuildStats> RebuildIndex(
      const std::function<absl::Status(int64_t repo_id, const std::string& id, uint32_t length)>&
          on_chunk);
  // True if the index names no pack while pack files exist (it was deleted,
  // or lost): call RebuildIndex before serving.
  bool needs_rebuild() const { return needs_rebuild_; }

  // Observability for tests and benchmarks (this process only).
  uint64_t entries_written(EntryKind kind) const {
    return kind == EntryKind::kPage ? pages_written_.load() : chunks_written_.load();
  }
  uint64_t bytes_appended() const { return bytes_appended_.load(); }

 private:
  struct Writer {
    UniqueFd fd;
    int64_t pack_id = 0;
    uint64_t size = 0;
  };
  struct Location {
    std::string pack_name;
    int64_t pack_id = 0;
    uint64_t offset = 0;
    uint64_t size = 0;
  };

  PackChunkStore(UniqueFd repos_fd, std::string repos_dir, SqliteDb index,
                 std::unique_ptr<FileChunkStore> legacy, Options options, bool needs_rebuild)
      : repos_fd_(std::move(repos_fd)),
        repos_dir_(std::move(repos_dir)),
        legacy_(std::move(legacy)),
        options_(options),
        needs_rebuild_(needs_rebuild),
        index_(std::move(index)) {}

  struct Item {
    std::string_view id;
    std::string_view data;
    std::string_view zstd_frame;  // of data, if the client sent one
  };
  absl::Status Append(int64_t repo_id, EntryKind kind, const std::vector<Item>& items);
  // One entry of a pack, as its index row names it.
  struct IndexEntry {
    EntryKind kind = EntryKind::kChunk;
    std::string id;
    uint64_t offset = 0;
    uint64_t size = 0;
  };
  // Syncs the writer's pack, then commits index entries for what was
  // appended to it since the last sync.
  absl::Status SyncAndIndex(int64_t repo_id, EntryKind kind, Writer* writer,
                            std::vector<IndexEntry>* appended) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The one writer of index rows, inside the caller's transaction. kAdd:
  // entries new in pack_id; an id already indexed keeps the copy it has.
  // kMove: Compact copied these entries to pack_id; their rows follow.
  enum class IndexUpdate { kAdd, kMove };
  absl::Status IndexEntries(int64_t repo_id, int64_t pack_id,
                            const std::vector<IndexEntry>& entries, IndexUpdate update)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A row for pack `name`; returns its id.
  absl::StatusOr<int64_t> IndexPack(int64_t repo_id, const std::string& name, bool sealed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // With `stored_compressed`: the payload as stored, and whether it is a zstd frame.
  absl::StatusOr<std::string> Read(int64_t repo_id, EntryKind kind, std::string_view id,
                                   bool* stored_compressed = nullptr);
  absl::StatusOr<std::optional<Location>> Lookup(int64_t repo_id, EntryKind kind,
                                                 std::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status DeleteEntry(int64_t repo_id, EntryKind kind, std::string_view id);
  // The writer of the repository's open pack, starting a pack if needed.
  absl::StatusOr<Writer*> WritablePack(int64_t repo_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Writer> CreatePack(int64_t repo_id, bool sealed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<UniqueFd> OpenPacksDir(int64_t repo_id, bool create);
  absl::StatusOr<UniqueFd> OpenPack(int64_t repo_id, const std::string& name);

  const UniqueFd repos_fd_;
  const std::string repos_dir_;
  const std::unique_ptr<FileChunkStore> legacy_;  // per-chunk files of older servers; GC.LOCK
  const Options options_;
  bool needs_rebuild_;
  std::atomic<uint64_t> pages_written_ = 0, chunks_written_ = 0, bytes_appended_ = 0;

  absl::Mutex mu_;
  SqliteDb index_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, Writer> writers_ ABSL_GUARDED_BY(mu_);  // by repo id
};

}  // namespace replifs::server

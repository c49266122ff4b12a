// ChunkStore on plain files: <store>/repos/<repo_id>/chunks/<hh>/<32 hex>,
// each file in the format of chunk_file_format.h. Write path: tmp file,
// fdatasync, rename, fsync of the directory (FORMAT.md). Thread-safe: all
// state is on the file system, and renames of equal content are idempotent.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "replicator/server/chunk_store.h"
#include "replicator/server/posix_io.h"

namespace replifs::server {

class FileChunkStore : public ChunkStore {
 public:
  // `repos_dir` is <store>/repos; it is created if absent.
  static absl::StatusOr<std::unique_ptr<FileChunkStore>> Open(const std::string& repos_dir);

  absl::Status Put(int64_t repo_id, std::string_view id, std::string_view data) override;
  absl::StatusOr<std::string> Get(int64_t repo_id, std::string_view id) override;
  // flock(2) on <store>/repos/GC.LOCK, one open file per guard.
  absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> GuardWrite() override;
  absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> GuardCollection() override;
  absl::Status Delete(int64_t repo_id, std::string_view id) override;

 private:
  explicit FileChunkStore(UniqueFd repos_fd) : repos_fd_(std::move(repos_fd)) {}

  // The <hh> directory of a chunk, created on demand if `create`.
  absl::StatusOr<UniqueFd> OpenFanoutDirectory(int64_t repo_id, const std::string& hex,
                                               bool create);

  absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> Guard(int operation);

  const UniqueFd repos_fd_;
  std::atomic<uint64_t> next_tmp_ = 0;
};

}  // namespace replifs::server

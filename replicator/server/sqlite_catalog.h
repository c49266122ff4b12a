// Catalog on an embedded SQLite database (WAL, synchronous=FULL). One
// connection; every call holds mu_ for its whole duration, so Apply batches
// are serialized. Schema and commit order: FORMAT.md.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/container/flat_hash_set.h"
#include "replicator/server/catalog.h"
#include "replicator/server/page_store.h"
#include "replicator/server/sqlite_db.h"

namespace replifs::server {

class SqliteCatalog : public Catalog {
 public:
  // Opens or creates the database file at `path`. With `pages`, chunk lists
  // longer than kMaxInlineChunks are stored as page trees there (it must
  // outlive the catalog); without, every list stays inline.
  static absl::StatusOr<std::unique_ptr<SqliteCatalog>> Open(const std::string& path,
                                                             PageStore* pages = nullptr);

  absl::StatusOr<Repo> FindOrCreateRepo(std::string_view name,
                                        std::string_view secret_if_new) override;
  absl::StatusOr<Repo> FindRepo(std::string_view name) override;
  absl::StatusOr<Repo> CreateRepo(std::string_view name, std::string_view secret,
                                  std::string_view token_hash) override;
  absl::Status SetRepoTokenHash(std::string_view name, std::string_view token_hash) override;
  absl::StatusOr<std::vector<Repo>> ListRepos() override;
  absl::StatusOr<std::vector<v1::NodeState>> ListVersions(int64_t repo_id,
                                                          std::string_view path) override;
  absl::StatusOr<uint64_t> AppliedSeq(int64_t repo_id, std::string_view journal_id) override;
  absl::Status RecordChunk(int64_t repo_id, std::string_view id, uint32_t length) override;
  absl::StatusOr<uint32_t> ChunkLength(int64_t repo_id, std::string_view id) override;
  absl::StatusOr<std::vector<std::string>> MissingChunks(
      int64_t repo_id, const std::vector<std::string>& ids) override;
  absl::StatusOr<uint64_t> Apply(int64_t repo_id, std::string_view journal_id,
                                 const google::protobuf::RepeatedPtrField<v1::Operation>& ops,
                                 int64_t now_ns) override;
  absl::StatusOr<std::vector<v1::NodeState>> List(int64_t repo_id, int64_t at_time_ns,
                                                  const std::vector<std::string>& paths) override;

  // Maintenance (replifs-server scrub / prune), not part of Catalog.
  using ChunkRecord = server::ChunkRecord;
  absl::StatusOr<std::vector<ChunkRecord>> ListChunks(int64_t repo_id);
  struct VersionRow {
    int64_t row_id = 0;
    std::string path;
    int64_t time_ns = 0;
    bool deleted = false;
    uint64_t size = 0;
  };
  // Every version row, by path then time.
  absl::StatusOr<std::vector<VersionRow>> ListVersionRows(int64_t repo_id);
  absl::Status DeleteVersionRows(int64_t repo_id, const std::vector<int64_t>& row_ids);
  // Chunk rows no version names and not touched since `touched_before_ns`:
  // deleted in one transaction (unless dry_run), then `after_commit` runs
  // for each (to delete the file). Returns their ids.
  absl::StatusOr<std::vector<std::string>> DeleteUnreferencedChunks(
      int64_t repo_id, int64_t touched_before_ns, bool dry_run,
      const std::function<absl::Status(const std::string& id)>& after_commit);
  // RecordChunk for many chunks in one transaction (one fsync).
  absl::Status RecordChunks(int64_t repo_id, const std::vector<ChunkRecord>& chunks) override;
  // Every page reachable from a version row. Under the store's collection
  // guard (no Apply can add pages meanwhile), pages not in it are garbage.
  absl::StatusOr<absl::flat_hash_set<std::string>> ReachablePages(int64_t repo_id);
  // Pages this catalog wrote (not found present), for tests and benchmarks.
  int pages_written() {
    absl::MutexLock lock(&mu_);
    return pages_written_;
  }

 private:
  SqliteCatalog(SqliteDb db, PageStore* pages) : pages_(pages), db_(std::move(db)) {}

  absl::Status Initialize() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status TouchChunks(int64_t repo_id, const std::vector<const std::string*>& ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::optional<Repo>> LookupRepo(std::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<uint64_t> AppliedSeqLocked(int64_t repo_id, std::string_view journal_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::optional<uint32_t>> RecordedChunkLength(int64_t repo_id, std::string_view id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The live states at `path` and below it as of `at_time_ns`, sorted by path.
  // The root "" selects everything.
  absl::StatusOr<std::vector<v1::NodeState>> LiveSubtree(int64_t repo_id, std::string_view path,
                                                         int64_t at_time_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Latest live states of other paths sharing `link_group`.
  absl::StatusOr<std::vector<v1::NodeState>> LiveLinkGroup(int64_t repo_id, uint64_t link_group,
                                                           std::string_view except_path)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Inserts a version of state.path(); deleted rows carry only the path.
  absl::Status InsertVersion(int64_t repo_id, const v1::NodeState& state, bool deleted,
                             int64_t time_ns, uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status InsertDeletion(int64_t repo_id, std::string_view path, int64_t time_ns, uint64_t seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // `known_chunks` (may be null): ids already named by a committed version,
  // not looked up again.
  absl::Status ApplyPut(int64_t repo_id, const v1::NodeState& state, int64_t time_ns, uint64_t seq,
                        const absl::flat_hash_set<std::string>* known_chunks = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A put whose chunk list is a delta of the path's current list (backup.proto).
  absl::Status ApplyPutDelta(int64_t repo_id, const v1::Operation& op, int64_t time_ns)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyRemove(int64_t repo_id, std::string_view path, int64_t time_ns, uint64_t seq)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ApplyRename(int64_t repo_id, const v1::Operation::Rename& rename, int64_t time_ns,
                           uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PageStore* const pages_;
  absl::Mutex mu_;
  SqliteDb db_ ABSL_GUARDED_BY(mu_);
  int pages_written_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace replifs::server

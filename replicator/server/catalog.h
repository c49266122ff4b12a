// The catalog: repositories, journals, recorded chunks and every committed
// version of every path. An interface so a distributed backend can replace
// the embedded SQLite one (SqliteCatalog). Format and commit order:
// replicator/server/FORMAT.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "replifs/v1/backup.pb.h"

namespace replifs::server {

struct Repo {
  int64_t id = 0;
  std::string name;
  std::string chunk_secret;
  std::string token_hash;  // SHA-256 of the repository's token; empty: no token yet
};

struct ChunkRecord {
  std::string id;
  uint32_t length = 0;
};

class Catalog {
 public:
  virtual ~Catalog() = default;

  // Returns the repository `name`, creating it with `secret_if_new` if absent.
  virtual absl::StatusOr<Repo> FindOrCreateRepo(std::string_view name,
                                                std::string_view secret_if_new) = 0;
  // NOT_FOUND if there is no repository `name`.
  virtual absl::StatusOr<Repo> FindRepo(std::string_view name) = 0;
  // Creates repository `name`; ALREADY_EXISTS if it exists.
  virtual absl::StatusOr<Repo> CreateRepo(std::string_view name, std::string_view secret,
                                          std::string_view token_hash) = 0;
  // Replaces the token hash of `name` (a lost or leaked token); NOT_FOUND.
  virtual absl::Status SetRepoTokenHash(std::string_view name, std::string_view token_hash) = 0;
  // Every repository, by name.
  virtual absl::StatusOr<std::vector<Repo>> ListRepos() = 0;

  // Highest remove/rename seq of `journal_id` applied so far; 0 if new.
  virtual absl::StatusOr<uint64_t> AppliedSeq(int64_t repo_id, std::string_view journal_id) = 0;

  // Records a chunk whose data is already durable in the ChunkStore.
  virtual absl::Status RecordChunk(int64_t repo_id, std::string_view id, uint32_t length) = 0;
  // RecordChunk for each, at once where the backend can (one transaction).
  virtual absl::Status RecordChunks(int64_t repo_id, const std::vector<ChunkRecord>& chunks) {
    for (const ChunkRecord& chunk : chunks) {
      if (absl::Status status = RecordChunk(repo_id, chunk.id, chunk.length); !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  }
  // Uncompressed length of a recorded chunk; NOT_FOUND if not recorded.
  virtual absl::StatusOr<uint32_t> ChunkLength(int64_t repo_id, std::string_view id) = 0;
  // The subset of `ids` not recorded for the repository, in request order.
  virtual absl::StatusOr<std::vector<std::string>> MissingChunks(
      int64_t repo_id, const std::vector<std::string>& ids) = 0;

  // Applies a batch atomically and durably (see FORMAT.md); returns the
  // journal's new applied_seq. Operations must have passed
  // ValidateOperations. A put naming an unrecorded chunk: FAILED_PRECONDITION
  // and nothing is applied. `now_ns` is the time of ops with time_ns == 0.
  virtual absl::StatusOr<uint64_t> Apply(
      int64_t repo_id, std::string_view journal_id,
      const google::protobuf::RepeatedPtrField<v1::Operation>& ops, int64_t now_ns) = 0;

  // Every path existing at `at_time_ns` (0: latest) that is one of `paths` or
  // below one ("" or no paths: everything), sorted by path, with time_ns and
  // seq set.
  virtual absl::StatusOr<std::vector<v1::NodeState>> List(
      int64_t repo_id, int64_t at_time_ns, const std::vector<std::string>& paths) = 0;

  // Every version of exactly `path`, oldest first; deletions have deleted set.
  virtual absl::StatusOr<std::vector<v1::NodeState>> ListVersions(int64_t repo_id,
                                                                  std::string_view path) = 0;
};

}  // namespace replifs::server

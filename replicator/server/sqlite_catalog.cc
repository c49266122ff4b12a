#include "replicator/server/sqlite_catalog.h"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "replicator/server/absl_string_view.h"
#include "replicator/delta/chunk_list_delta.h"
#include "replicator/server/chunk_tree.h"
#include "replicator/server/fault_injection.h"
#include "replicator/server/status_macros.h"
#include "replicator/server/version_codec.h"

namespace replifs::server {
namespace {

constexpr int64_t kSchemaVersion = 3;

// Version 1 -> 2: repositories get a token (only its SHA-256 is kept).
// Chunks get the time they were last stored or found present, so garbage
// collection spares chunks an in-flight commit is about to name.
constexpr const char* kSchemaV2 =
    "ALTER TABLE repos ADD COLUMN token_hash BLOB NOT NULL DEFAULT x'';"
    "ALTER TABLE chunks ADD COLUMN touched_ns INTEGER NOT NULL DEFAULT 0;";
// Version 2 -> 3: long chunk lists live in a tree of pages (chunk_tree.h);
// the row keeps the root page id and an empty `chunks`.
constexpr const char* kSchemaV3 = "ALTER TABLE versions ADD COLUMN chunk_tree BLOB NOT NULL DEFAULT x'';";
constexpr uint32_t kRenameExchange = 2;  // RENAME_EXCHANGE from <linux/fs.h>
constexpr int64_t kEndOfTime = std::numeric_limits<int64_t>::max();

constexpr const char* kSchema = R"sql(
CREATE TABLE repos(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  chunk_secret BLOB NOT NULL,
  created_ns INTEGER NOT NULL);
CREATE TABLE journals(
  repo_id INTEGER NOT NULL,
  journal_id BLOB NOT NULL,
  applied_seq INTEGER NOT NULL,
  PRIMARY KEY(repo_id, journal_id)) WITHOUT ROWID;
CREATE TABLE chunks(
  repo_id INTEGER NOT NULL,
  id BLOB NOT NULL,
  length INTEGER NOT NULL,
  PRIMARY KEY(repo_id, id)) WITHOUT ROWID;
CREATE TABLE versions(
  id INTEGER PRIMARY KEY,
  repo_id INTEGER NOT NULL,
  path BLOB NOT NULL,
  time_ns INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  type INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  rdev INTEGER NOT NULL,
  symlink_target BLOB NOT NULL,
  xattrs BLOB NOT NULL,
  chunks BLOB NOT NULL,
  link_group INTEGER NOT NULL);
CREATE INDEX versions_by_path ON versions(repo_id, path, time_ns);
CREATE INDEX versions_by_link_group ON versions(repo_id, link_group) WHERE link_group != 0;
)sql";

// Columns read back into a NodeState, in RowToState order (0..14).
constexpr const char* kStateColumns =
    "v.path, v.time_ns, v.seq, v.type, v.mode, v.uid, v.gid, v.size, v.mtime_ns, v.rdev, "
    "v.symlink_target, v.xattrs, v.chunks, v.link_group, v.chunk_tree";

// True for the row that is the state of its path as of ?2 (FORMAT.md).
constexpr const char* kIsStateAsOfTime =
    "v.id = (SELECT w.id FROM versions AS w WHERE w.repo_id = v.repo_id AND w.path = v.path "
    "AND w.time_ns <= ?2 ORDER BY w.time_ns DESC, w.id DESC LIMIT 1) AND v.deleted = 0";

int64_t AsStored(uint64_t value) { return static_cast<int64_t>(value); }
uint64_t AsUnsigned(int64_t value) { return static_cast<uint64_t>(value); }

absl::StatusOr<v1::NodeState> RowToState(const SqliteStatement& row, PageStore* pages,
                                         int64_t repo_id) {
  v1::NodeState state;
  state.set_path(row.ColumnBlob(0));
  state.set_time_ns(row.ColumnInt(1));
  state.set_seq(AsUnsigned(row.ColumnInt(2)));
  const int64_t type = row.ColumnInt(3);
  if (!v1::NodeState::Type_IsValid(static_cast<int>(type))) {
    return absl::DataLossError(absl::StrCat("catalog: version with unknown type ", type));
  }
  state.set_type(static_cast<v1::NodeState::Type>(type));
  state.set_mode(static_cast<uint32_t>(row.ColumnInt(4)));
  state.set_uid(static_cast<uint32_t>(row.ColumnInt(5)));
  state.set_gid(static_cast<uint32_t>(row.ColumnInt(6)));
  state.set_size(AsUnsigned(row.ColumnInt(7)));
  state.set_mtime_ns(row.ColumnInt(8));
  state.set_rdev(AsUnsigned(row.ColumnInt(9)));
  state.set_symlink_target(row.ColumnBlob(10));
  REPLIFS_RETURN_IF_ERROR(DecodeXattrs(row.ColumnBlob(11), &state));
  REPLIFS_RETURN_IF_ERROR(DecodeChunkList(row.ColumnBlob(12), &state));
  if (const std::string root = row.ColumnBlob(14); !root.empty()) {
    if (pages == nullptr) return absl::FailedPreconditionError("catalog: no page store");
    REPLIFS_RETURN_IF_ERROR(ReadChunkTree(*pages, repo_id, root, &state));
  }
  state.set_link_group(AsUnsigned(row.ColumnInt(13)));
  return state;
}

// Every row `stmt` yields, through RowToState; a query that selects
// v.deleted after kStateColumns names its column in `deleted_column`.
absl::StatusOr<std::vector<v1::NodeState>> RowsToStates(SqliteStatement& stmt, PageStore* pages,
                                                        int64_t repo_id, int deleted_column = -1) {
  std::vector<v1::NodeState> states;
  while (true) {
    REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    REPLIFS_ASSIGN_OR_RETURN(v1::NodeState state, RowToState(stmt, pages, repo_id));
    if (deleted_column >= 0) state.set_deleted(stmt.ColumnInt(deleted_column) != 0);
    states.push_back(std::move(state));
  }
  return states;
}

// `path` with its prefix `from` replaced by `to`.
std::string MapPath(std::string_view path, std::string_view from, std::string_view to) {
  return absl::StrCat(ToAbsl(to), ToAbsl(path.substr(from.size())));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteCatalog>> SqliteCatalog::Open(const std::string& path,
                                                                   PageStore* pages) {
  REPLIFS_ASSIGN_OR_RETURN(SqliteDb db, SqliteDb::Open(path));
  std::unique_ptr<SqliteCatalog> catalog(new SqliteCatalog(std::move(db), pages));
  absl::MutexLock lock(&catalog->mu_);
  REPLIFS_RETURN_IF_ERROR(catalog->Initialize());
  return catalog;
}

absl::Status SqliteCatalog::Initialize() {
  REPLIFS_RETURN_IF_ERROR(MakeDurable(db_, "catalog"));

  SqliteTransaction txn(&db_, "before-server-fsync");
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement version, db_.Prepare("PRAGMA user_version"));
  REPLIFS_ASSIGN_OR_RETURN(bool has_row, version.Step());
  const int64_t user_version = has_row ? version.ColumnInt(0) : 0;
  if (user_version == kSchemaVersion) return txn.Commit();
  if (user_version == 1 || user_version == 2) {
    if (user_version == 1) REPLIFS_RETURN_IF_ERROR(db_.Exec(kSchemaV2));
    REPLIFS_RETURN_IF_ERROR(db_.Exec(kSchemaV3));
    REPLIFS_RETURN_IF_ERROR(
        db_.Exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion).c_str()));
    return txn.Commit();
  }
  if (user_version != 0) {
    return absl::FailedPreconditionError(absl::StrCat("catalog: schema version ", user_version,
                                                      " is not supported (this server "
                                                      "reads version ",
                                                      kSchemaVersion, ")"));
  }
  REPLIFS_RETURN_IF_ERROR(db_.Exec(kSchema));
  REPLIFS_RETURN_IF_ERROR(db_.Exec(kSchemaV2));
  REPLIFS_RETURN_IF_ERROR(db_.Exec(kSchemaV3));
  REPLIFS_RETURN_IF_ERROR(db_.Exec(absl::StrCat("PRAGMA user_version = ", kSchemaVersion).c_str()));
  return txn.Commit();
}

absl::StatusOr<std::optional<Repo>> SqliteCatalog::LookupRepo(std::string_view name) {
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement stmt,
                           db_.Prepare("SELECT id, chunk_secret, token_hash FROM repos WHERE name = ?1"));
  stmt.BindText(1, name);
  REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  if (!has_row) return std::nullopt;
  return Repo{.id = stmt.ColumnInt(0),
              .name = std::string(name),
              .chunk_secret = stmt.ColumnBlob(1),
              .token_hash = stmt.ColumnBlob(2)};
}

absl::StatusOr<Repo> SqliteCatalog::CreateRepo(std::string_view name, std::string_view secret,
                                               std::string_view token_hash) {
  absl::MutexLock lock(&mu_);
  SqliteTransaction txn(&db_, "before-server-fsync");
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_ASSIGN_OR_RETURN(std::optional<Repo> existing, LookupRepo(name));
  if (existing.has_value()) {
    return absl::AlreadyExistsError(
        absl::StrCat("repository \"", absl::CHexEscape(ToAbsl(name)), "\" already exists"));
  }
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement insert,
                           db_.Prepare("INSERT INTO repos(name, chunk_secret, created_ns, "
                                       "token_hash) VALUES (?1, ?2, ?3, ?4)"));
  insert.BindText(1, name);
  insert.BindBlob(2, secret);
  insert.BindInt(3, absl::GetCurrentTimeNanos());
  insert.BindBlob(4, token_hash);
  REPLIFS_RETURN_IF_ERROR(insert.Run());
  REPLIFS_ASSIGN_OR_RETURN(std::optional<Repo> created, LookupRepo(name));
  REPLIFS_RETURN_IF_ERROR(txn.Commit());
  if (!created.has_value()) return absl::InternalError("catalog: created repository vanished");
  return *created;
}

absl::Status SqliteCatalog::SetRepoTokenHash(std::string_view name, std::string_view token_hash) {
  absl::MutexLock lock(&mu_);
  SqliteTransaction txn(&db_, "before-server-fsync");
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_ASSIGN_OR_RETURN(std::optional<Repo> existing, LookupRepo(name));
  if (!existing.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no repository named \"", absl::CHexEscape(ToAbsl(name)), "\""));
  }
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement update,
                           db_.Prepare("UPDATE repos SET token_hash = ?1 WHERE id = ?2"));
  update.BindBlob(1, token_hash);
  update.BindInt(2, existing->id);
  REPLIFS_RETURN_IF_ERROR(update.Run());
  return txn.Commit();
}

absl::StatusOr<std::vector<Repo>> SqliteCatalog::ListRepos() {
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement stmt,
      db_.Prepare("SELECT id, name, chunk_secret, token_hash FROM repos ORDER BY name"));
  std::vector<Repo> repos;
  while (true) {
    REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    repos.push_back(Repo{.id = stmt.ColumnInt(0),
                         .name = stmt.ColumnBlob(1),
                         .chunk_secret = stmt.ColumnBlob(2),
                         .token_hash = stmt.ColumnBlob(3)});
  }
  return repos;
}

absl::StatusOr<std::vector<v1::NodeState>> SqliteCatalog::ListVersions(int64_t repo_id,
                                                                       std::string_view path) {
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement stmt,
      db_.Prepare(absl::StrCat("SELECT ", kStateColumns, ", v.deleted FROM versions AS v "
                               "WHERE v.repo_id = ?1 AND v.path = ?2 ORDER BY v.time_ns, v.id")));
  stmt.BindInt(1, repo_id);
  stmt.BindBlob(2, path);
  return RowsToStates(stmt, pages_, repo_id, /*deleted_column=*/15);
}

absl::StatusOr<Repo> SqliteCatalog::FindOrCreateRepo(std::string_view name,
                                                     std::string_view secret_if_new) {
  absl::MutexLock lock(&mu_);
  SqliteTransaction txn(&db_, "before-server-fsync");
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_ASSIGN_OR_RETURN(std::optional<Repo> existing, LookupRepo(name));
  if (existing.has_value()) {
    REPLIFS_RETURN_IF_ERROR(txn.Commit());
    return *existing;
  }
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement insert,
      db_.Prepare("INSERT INTO repos(name, chunk_secret, created_ns) VALUES (?1, ?2, ?3)"));
  insert.BindText(1, name);
  insert.BindBlob(2, secret_if_new);
  insert.BindInt(3, absl::GetCurrentTimeNanos());
  REPLIFS_RETURN_IF_ERROR(insert.Run());
  REPLIFS_ASSIGN_OR_RETURN(std::optional<Repo> created, LookupRepo(name));
  REPLIFS_RETURN_IF_ERROR(txn.Commit());
  if (!created.has_value()) return absl::InternalError("catalog: created repository vanished");
  return *created;
}

absl::StatusOr<Repo> SqliteCatalog::FindRepo(std::string_view name) {
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(std::optional<Repo> repo, LookupRepo(name));
  if (!repo.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("no repository named \"", absl::CHexEscape(ToAbsl(name)), "\""));
  }
  return *repo;
}

absl::StatusOr<uint64_t> SqliteCatalog::AppliedSeqLocked(int64_t repo_id,
                                                         std::string_view journal_id) {
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement stmt,
      db_.Prepare("SELECT applied_seq FROM journals WHERE repo_id = ?1 AND journal_id = ?2"));
  stmt.BindInt(1, repo_id);
  stmt.BindBlob(2, journal_id);
  REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  return has_row ? AsUnsigned(stmt.ColumnInt(0)) : 0;
}

absl::StatusOr<uint64_t> SqliteCatalog::AppliedSeq(int64_t repo_id, std::string_view journal_id) {
  absl::MutexLock lock(&mu_);
  return AppliedSeqLocked(repo_id, journal_id);
}

absl::Status SqliteCatalog::RecordChunk(int64_t repo_id, std::string_view id, uint32_t length) {
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement stmt,
      db_.Prepare("INSERT INTO chunks(repo_id, id, length, touched_ns) VALUES (?1, ?2, ?3, ?4) "
                  "ON CONFLICT(repo_id, id) DO UPDATE SET touched_ns = excluded.touched_ns"));
  stmt.BindInt(1, repo_id);
  stmt.BindBlob(2, id);
  stmt.BindInt(3, length);
  stmt.BindInt(4, absl::GetCurrentTimeNanos());
  return stmt.Run();
}

absl::StatusOr<std::optional<uint32_t>> SqliteCatalog::RecordedChunkLength(int64_t repo_id,
                                                                           std::string_view id) {
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement stmt,
                           db_.Prepare("SELECT length FROM chunks WHERE repo_id = ?1 AND id = ?2"));
  stmt.BindInt(1, repo_id);
  stmt.BindBlob(2, id);
  REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  if (!has_row) return std::nullopt;
  return static_cast<uint32_t>(stmt.ColumnInt(0));
}

absl::StatusOr<uint32_t> SqliteCatalog::ChunkLength(int64_t repo_id, std::string_view id) {
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(std::optional<uint32_t> length, RecordedChunkLength(repo_id, id));
  if (!length.has_value()) {
    return absl::NotFoundError(
        absl::StrCat("chunk ", absl::BytesToHexString(ToAbsl(id)), " not found"));
  }
  return *length;
}

absl::StatusOr<std::vector<std::string>> SqliteCatalog::MissingChunks(
    int64_t repo_id, const std::vector<std::string>& ids) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> missing;
  std::vector<const std::string*> present;
  for (const std::string& id : ids) {
    REPLIFS_ASSIGN_OR_RETURN(std::optional<uint32_t> length, RecordedChunkLength(repo_id, id));
    if (length.has_value()) {
      present.push_back(&id);
    } else {
      missing.push_back(id);
    }
  }
  // A chunk reported present will be named by a commit soon: refresh its age
  // (best effort: on a full disk this only shortens the GC grace it gets;
  // FORMAT.md rule 2 keeps commits correct either way).
  if (!present.empty()) TouchChunks(repo_id, present).IgnoreError();
  return missing;
}

absl::StatusOr<std::vector<v1::NodeState>> SqliteCatalog::LiveSubtree(int64_t repo_id,
                                                                      std::string_view path,
                                                                      int64_t at_time_ns) {
  // Below "p" is the byte range ["p/", "p0"): '0' is the byte after '/'.
  // The range ["p", "p0") lets SQLite search the index (a bare OR of "= p"
  // and the range made it scan every version of the repository, once per
  // put: a first sync of 100,000 files never finished); the OR then drops
  // siblings such as "p.txt" that sort inside it.
  const bool everything = path.empty();
  const std::string sql = absl::StrCat(
      "SELECT ", kStateColumns, " FROM versions AS v WHERE v.repo_id = ?1 AND ",
      everything ? "" : "v.path >= ?3 AND v.path < ?5 AND (v.path = ?3 OR v.path >= ?4) AND ",
      kIsStateAsOfTime, " ORDER BY v.path");
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement stmt, db_.Prepare(sql));
  stmt.BindInt(1, repo_id);
  stmt.BindInt(2, at_time_ns);
  if (!everything) {
    stmt.BindBlob(3, path);
    stmt.BindBlob(4, absl::StrCat(ToAbsl(path), "/"));
    stmt.BindBlob(5, absl::StrCat(ToAbsl(path), "0"));
  }
  return RowsToStates(stmt, pages_, repo_id);
}

absl::StatusOr<std::vector<v1::NodeState>> SqliteCatalog::LiveLinkGroup(
    int64_t repo_id, uint64_t link_group, std::string_view except_path) {
  const std::string sql = absl::StrCat(
      "SELECT ", kStateColumns,
      " FROM versions AS v WHERE v.repo_id = ?1 AND v.link_group = ?3 AND v.path != ?4 AND ",
      kIsStateAsOfTime, " ORDER BY v.path");
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement stmt, db_.Prepare(sql));
  stmt.BindInt(1, repo_id);
  stmt.BindInt(2, kEndOfTime);
  stmt.BindInt(3, AsStored(link_group));
  stmt.BindBlob(4, except_path);
  return RowsToStates(stmt, pages_, repo_id);
}

absl::Status SqliteCatalog::InsertVersion(int64_t repo_id, const v1::NodeState& state, bool deleted,
                                          int64_t time_ns, uint64_t seq) {
  // Keep each path's times non-decreasing (FORMAT.md): a clock stepping back
  // must not hide this row behind an older one.
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement latest,
      db_.Prepare("SELECT MAX(time_ns) FROM versions WHERE repo_id = ?1 AND path = ?2"));
  latest.BindInt(1, repo_id);
  latest.BindBlob(2, state.path());
  REPLIFS_ASSIGN_OR_RETURN(bool has_row, latest.Step());
  if (has_row) time_ns = std::max(time_ns, latest.ColumnInt(0));

  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement insert,
      db_.Prepare("INSERT INTO versions(repo_id, path, time_ns, seq, deleted, type, mode, uid, "
                  "gid, size, mtime_ns, rdev, symlink_target, xattrs, chunks, link_group, "
                  "chunk_tree) VALUES "
                  "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"));
  insert.BindInt(1, repo_id);
  insert.BindBlob(2, state.path());
  insert.BindInt(3, time_ns);
  insert.BindInt(4, AsStored(seq));
  insert.BindInt(5, deleted ? 1 : 0);
  insert.BindInt(6, state.type());
  insert.BindInt(7, state.mode());
  insert.BindInt(8, state.uid());
  insert.BindInt(9, state.gid());
  insert.BindInt(10, AsStored(state.size()));
  insert.BindInt(11, state.mtime_ns());
  insert.BindInt(12, AsStored(state.rdev()));
  insert.BindBlob(13, state.symlink_target());
  insert.BindBlob(14, EncodeXattrs(state));
  // Long lists go to pages (written durably before this row commits).
  if (pages_ != nullptr && !deleted && state.chunks_size() > kMaxInlineChunks) {
    REPLIFS_ASSIGN_OR_RETURN(const std::string root,
                             WriteChunkTree(*pages_, repo_id, state, &pages_written_));
    insert.BindBlob(15, "");
    insert.BindBlob(17, root);
  } else {
    insert.BindBlob(15, EncodeChunkList(state));
    insert.BindBlob(17, "");
  }
  insert.BindInt(16, AsStored(state.link_group()));
  return insert.Run();
}

absl::Status SqliteCatalog::InsertDeletion(int64_t repo_id, std::string_view path, int64_t time_ns,
                                           uint64_t seq) {
  v1::NodeState tombstone;
  tombstone.set_path(std::string(path));
  return InsertVersion(repo_id, tombstone, /*deleted=*/true, time_ns, seq);
}

absl::Status SqliteCatalog::ApplyPut(int64_t repo_id, const v1::NodeState& state, int64_t time_ns,
                                     uint64_t seq, const absl::flat_hash_set<std::string>* known_chunks) {
  if (state.type() == v1::NodeState::REGULAR) {
    for (const v1::ChunkRef& chunk : state.chunks()) {
      if (known_chunks != nullptr && known_chunks->contains(chunk.id())) continue;
      REPLIFS_ASSIGN_OR_RETURN(std::optional<uint32_t> length,
                               RecordedChunkLength(repo_id, chunk.id()));
      if (!length.has_value()) {
        return absl::FailedPreconditionError(
            absl::StrCat("put of \"", absl::CHexEscape(state.path()), "\" names chunk ",
                         absl::BytesToHexString(chunk.id()), ", which is not stored"));
      }
      if (*length != chunk.length()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "put of \"", absl::CHexEscape(state.path()), "\": chunk ",
            absl::BytesToHexString(chunk.id()), " has length ", *length, ", not ", chunk.length()));
      }
    }
  }
  if (state.type() != v1::NodeState::DIRECTORY) {
    // A directory replaced by a non-directory (seen by a rescan): what was
    // below it is gone.
    REPLIFS_ASSIGN_OR_RETURN(std::vector<v1::NodeState> below,
                             LiveSubtree(repo_id, state.path(), kEndOfTime));
    for (const v1::NodeState& old : below) {
      if (old.path() == state.path()) continue;
      REPLIFS_RETURN_IF_ERROR(InsertDeletion(repo_id, old.path(), time_ns, seq));
    }
  }
  REPLIFS_RETURN_IF_ERROR(InsertVersion(repo_id, state, /*deleted=*/false, time_ns, seq));
  if (state.type() != v1::NodeState::REGULAR || state.link_group() == 0) return absl::OkStatus();

  // Hard links are one inode: the new content and attributes hold for all.
  REPLIFS_ASSIGN_OR_RETURN(std::vector<v1::NodeState> links,
                           LiveLinkGroup(repo_id, state.link_group(), state.path()));
  for (const v1::NodeState& link : links) {
    v1::NodeState linked = state;
    linked.set_path(link.path());
    REPLIFS_RETURN_IF_ERROR(InsertVersion(repo_id, linked, /*deleted=*/false, time_ns, seq));
  }
  return absl::OkStatus();
}

absl::Status SqliteCatalog::ApplyPutDelta(int64_t repo_id, const v1::Operation& op, int64_t time_ns) {
  const v1::NodeState& put = op.put();
  REPLIFS_ASSIGN_OR_RETURN(std::vector<v1::NodeState> live, LiveSubtree(repo_id, put.path(), kEndOfTime));
  const v1::NodeState* base = nullptr;
  for (const v1::NodeState& state : live) {
    if (state.path() == put.path() && state.type() == v1::NodeState::REGULAR) base = &state;
  }
  if (base == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "chunk-list base of \"", absl::CHexEscape(put.path()), "\" does not match: no regular file there"));
  }
  v1::NodeState full = put;
  REPLIFS_RETURN_IF_ERROR(
      delta::ApplyChunkListDelta(base->chunks(), op.put_chunks_delta(), put.path(), full.mutable_chunks()));
  uint64_t total = 0;
  for (const v1::ChunkRef& chunk : full.chunks()) total += chunk.length();
  if (total != full.size()) {
    return absl::InvalidArgumentError(absl::StrCat("put of \"", absl::CHexEscape(put.path()),
                                                   "\": chunk lengths add up to ", total,
                                                   " but size is ", full.size()));
  }
  // The base's chunks are named by a committed version: only new ones are looked up.
  absl::flat_hash_set<std::string> known;
  for (const v1::ChunkRef& chunk : base->chunks()) known.insert(chunk.id());
  return ApplyPut(repo_id, full, time_ns, op.seq(), &known);
}

absl::Status SqliteCatalog::ApplyRemove(int64_t repo_id, std::string_view path, int64_t time_ns,
                                        uint64_t seq) {
  REPLIFS_ASSIGN_OR_RETURN(std::vector<v1::NodeState> doomed,
                           LiveSubtree(repo_id, path, kEndOfTime));
  for (const v1::NodeState& state : doomed) {
    REPLIFS_RETURN_IF_ERROR(InsertDeletion(repo_id, state.path(), time_ns, seq));
  }
  return absl::OkStatus();
}

absl::Status SqliteCatalog::ApplyRename(int64_t repo_id, const v1::Operation::Rename& rename,
                                        int64_t time_ns, uint64_t seq) {
  const std::string& from = rename.from();
  const std::string& to = rename.to();
  if (from == to) return absl::OkStatus();
  REPLIFS_ASSIGN_OR_RETURN(std::vector<v1::NodeState> moving,
                           LiveSubtree(repo_id, from, kEndOfTime));
  if (moving.empty()) return absl::OkStatus();
  REPLIFS_ASSIGN_OR_RETURN(std::vector<v1::NodeState> at_target,
                           LiveSubtree(repo_id, to, kEndOfTime));
  const bool exchange = (rename.flags() & kRenameExchange) != 0;

  // Both subtrees leave their old paths; the source (and on exchange the
  // target) arrives at the other name. Old paths nothing arrives at are
  // deleted, so `to` loses whatever it held unless it is swapped back.
  std::vector<std::string> leaving;
  std::map<std::string, v1::NodeState> arriving;  // ordered by new path
  for (v1::NodeState& state : moving) {
    leaving.push_back(state.path());
    state.set_path(MapPath(state.path(), from, to));
    std::string key = state.path();
    arriving.emplace(std::move(key), std::move(state));
  }
  for (v1::NodeState& state : at_target) {
    leaving.push_back(state.path());
    if (!exchange) continue;
    state.set_path(MapPath(state.path(), to, from));
    std::string key = state.path();
    arriving.emplace(std::move(key), std::move(state));
  }
  for (const std::string& old_path : leaving) {
    if (!arriving.contains(old_path)) {
      REPLIFS_RETURN_IF_ERROR(InsertDeletion(repo_id, old_path, time_ns, seq));
    }
  }
  for (const auto& [new_path, state] : arriving) {
    REPLIFS_RETURN_IF_ERROR(InsertVersion(repo_id, state, /*deleted=*/false, time_ns, seq));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> SqliteCatalog::Apply(
    int64_t repo_id, std::string_view journal_id,
    const google::protobuf::RepeatedPtrField<v1::Operation>& ops, int64_t now_ns) {
  absl::MutexLock lock(&mu_);
  SqliteTransaction txn(&db_, "before-server-fsync");
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  // Ordered ops at or below the seq applied before this batch are retries.
  REPLIFS_ASSIGN_OR_RETURN(const uint64_t applied_before, AppliedSeqLocked(repo_id, journal_id));
  uint64_t applied = applied_before;
  for (const v1::Operation& op : ops) {
    const int64_t time_ns = op.time_ns() != 0 ? op.time_ns() : now_ns;
    switch (op.op_case()) {
      case v1::Operation::kPut:
        if (op.has_put_chunks_delta()) {
          REPLIFS_RETURN_IF_ERROR(ApplyPutDelta(repo_id, op, time_ns));
          break;
        }
        REPLIFS_RETURN_IF_ERROR(ApplyPut(repo_id, op.put(), time_ns, op.seq()));
        break;
      case v1::Operation::kRemove:
        if (op.seq() <= applied_before) break;
        REPLIFS_RETURN_IF_ERROR(ApplyRemove(repo_id, op.remove(), time_ns, op.seq()));
        applied = std::max(applied, op.seq());
        break;
      case v1::Operation::kRename:
        if (op.seq() <= applied_before) break;
        REPLIFS_RETURN_IF_ERROR(ApplyRename(repo_id, op.rename(), time_ns, op.seq()));
        applied = std::max(applied, op.seq());
        break;
      case v1::Operation::OP_NOT_SET:
        return absl::InvalidArgumentError("empty operation");
    }
  }
  if (applied != applied_before) {
    REPLIFS_ASSIGN_OR_RETURN(
        SqliteStatement upsert,
        db_.Prepare("INSERT INTO journals(repo_id, journal_id, applied_seq) VALUES (?1, ?2, ?3) "
                    "ON CONFLICT(repo_id, journal_id) DO UPDATE SET applied_seq = ?3"));
    upsert.BindInt(1, repo_id);
    upsert.BindBlob(2, journal_id);
    upsert.BindInt(3, AsStored(applied));
    REPLIFS_RETURN_IF_ERROR(upsert.Run());
  }
  // synchronous=FULL in WAL mode: COMMIT returns after the WAL is fsync'd.
  REPLIFS_RETURN_IF_ERROR(txn.Commit());
  return applied;
}

absl::StatusOr<std::vector<v1::NodeState>> SqliteCatalog::List(
    int64_t repo_id, int64_t at_time_ns, const std::vector<std::string>& paths) {
  absl::MutexLock lock(&mu_);
  const int64_t as_of = at_time_ns == 0 ? kEndOfTime : at_time_ns;
  const bool everything = paths.empty() || std::find(paths.begin(), paths.end(), "") != paths.end();
  if (everything) return LiveSubtree(repo_id, "", as_of);

  // Requested subtrees may overlap ("a" and "a/b"): merge by path.
  std::map<std::string, v1::NodeState> merged;
  for (const std::string& path : paths) {
    REPLIFS_ASSIGN_OR_RETURN(std::vector<v1::NodeState> states, LiveSubtree(repo_id, path, as_of));
    for (v1::NodeState& state : states) {
      std::string key = state.path();
      merged.emplace(std::move(key), std::move(state));
    }
  }
  std::vector<v1::NodeState> result;
  result.reserve(merged.size());
  for (auto& [path, state] : merged) result.push_back(std::move(state));
  return result;
}

absl::Status SqliteCatalog::TouchChunks(int64_t repo_id, const std::vector<const std::string*>& ids) {
  SqliteTransaction txn(&db_, "before-server-fsync");
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement touch,
      db_.Prepare("UPDATE chunks SET touched_ns = ?3 WHERE repo_id = ?1 AND id = ?2"));
  const int64_t now = absl::GetCurrentTimeNanos();
  for (const std::string* id : ids) {
    touch.Reset();
    touch.BindInt(1, repo_id);
    touch.BindBlob(2, *id);
    touch.BindInt(3, now);
    REPLIFS_RETURN_IF_ERROR(touch.Run());
  }
  return txn.Commit();
}

absl::StatusOr<std::vector<SqliteCatalog::ChunkRecord>> SqliteCatalog::ListChunks(
    int64_t repo_id) {
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement stmt,
      db_.Prepare("SELECT id, length FROM chunks WHERE repo_id = ?1 ORDER BY id"));
  stmt.BindInt(1, repo_id);
  std::vector<ChunkRecord> chunks;
  while (true) {
    REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    chunks.push_back({stmt.ColumnBlob(0), static_cast<uint32_t>(stmt.ColumnInt(1))});
  }
  return chunks;
}

absl::StatusOr<std::vector<SqliteCatalog::VersionRow>> SqliteCatalog::ListVersionRows(
    int64_t repo_id) {
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement stmt,
                           db_.Prepare("SELECT id, path, time_ns, deleted, size FROM versions "
                                       "WHERE repo_id = ?1 ORDER BY path, time_ns, id"));
  stmt.BindInt(1, repo_id);
  std::vector<VersionRow> rows;
  while (true) {
    REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    rows.push_back({stmt.ColumnInt(0), stmt.ColumnBlob(1), stmt.ColumnInt(2),
                    stmt.ColumnInt(3) != 0, AsUnsigned(stmt.ColumnInt(4))});
  }
  return rows;
}

absl::Status SqliteCatalog::DeleteVersionRows(int64_t repo_id, const std::vector<int64_t>& ids) {
  absl::MutexLock lock(&mu_);
  SqliteTransaction txn(&db_, "before-server-fsync");
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement stmt,
                           db_.Prepare("DELETE FROM versions WHERE repo_id = ?1 AND id = ?2"));
  for (int64_t id : ids) {
    stmt.Reset();
    stmt.BindInt(1, repo_id);
    stmt.BindInt(2, id);
    REPLIFS_RETURN_IF_ERROR(stmt.Run());
  }
  return txn.Commit();
}

absl::StatusOr<std::vector<std::string>> SqliteCatalog::DeleteUnreferencedChunks(
    int64_t repo_id, int64_t touched_before_ns, bool dry_run,
    const std::function<absl::Status(const std::string& id)>& after_commit) {
  absl::MutexLock lock(&mu_);
  // One write transaction: an Apply either committed before it (and its
  // chunks are referenced) or runs after it (and finds them unrecorded).
  SqliteTransaction txn(&db_, "before-server-fsync");
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  absl::flat_hash_set<std::string> referenced;
  {
    REPLIFS_ASSIGN_OR_RETURN(
        SqliteStatement rows,
        db_.Prepare("SELECT chunks, chunk_tree FROM versions WHERE repo_id = ?1 AND "
                    "(length(chunks) > 0 OR length(chunk_tree) > 0)"));
    rows.BindInt(1, repo_id);
    absl::flat_hash_set<std::string> seen_pages;
    while (true) {
      REPLIFS_ASSIGN_OR_RETURN(bool has_row, rows.Step());
      if (!has_row) break;
      v1::NodeState state;
      REPLIFS_RETURN_IF_ERROR(DecodeChunkList(rows.ColumnBlob(0), &state));
      for (const v1::ChunkRef& chunk : state.chunks()) referenced.insert(chunk.id());
      // A page that cannot be read fails the collection: without it we
      // cannot know which chunks are still named.
      if (const std::string root = rows.ColumnBlob(1); !root.empty()) {
        if (pages_ == nullptr) return absl::FailedPreconditionError("catalog: no page store");
        REPLIFS_RETURN_IF_ERROR(WalkChunkTree(*pages_, repo_id, root, &seen_pages,
                                              [&](const std::string& id) { referenced.insert(id); }));
      }
    }
  }
  std::vector<std::string> garbage;
  {
    REPLIFS_ASSIGN_OR_RETURN(
        SqliteStatement chunks,
        db_.Prepare("SELECT id FROM chunks WHERE repo_id = ?1 AND touched_ns < ?2"));
    chunks.BindInt(1, repo_id);
    chunks.BindInt(2, touched_before_ns);
    while (true) {
      REPLIFS_ASSIGN_OR_RETURN(bool has_row, chunks.Step());
      if (!has_row) break;
      std::string id = chunks.ColumnBlob(0);
      if (!referenced.contains(id)) garbage.push_back(std::move(id));
    }
  }
  if (dry_run) return garbage;
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement remove,
                           db_.Prepare("DELETE FROM chunks WHERE repo_id = ?1 AND id = ?2"));
  for (const std::string& id : garbage) {
    remove.Reset();
    remove.BindInt(1, repo_id);
    remove.BindBlob(2, id);
    REPLIFS_RETURN_IF_ERROR(remove.Run());
  }
  REPLIFS_RETURN_IF_ERROR(txn.Commit());
  for (const std::string& id : garbage) REPLIFS_RETURN_IF_ERROR(after_commit(id));
  return garbage;
}

}  // namespace replifs::server

namespace replifs::server {

absl::StatusOr<absl::flat_hash_set<std::string>> SqliteCatalog::ReachablePages(int64_t repo_id) {
  absl::MutexLock lock(&mu_);
  absl::flat_hash_set<std::string> seen;
  if (pages_ == nullptr) return seen;
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement rows,
      db_.Prepare("SELECT chunk_tree FROM versions WHERE repo_id = ?1 AND length(chunk_tree) > 0"));
  rows.BindInt(1, repo_id);
  while (true) {
    REPLIFS_ASSIGN_OR_RETURN(bool has_row, rows.Step());
    if (!has_row) break;
    REPLIFS_RETURN_IF_ERROR(
        WalkChunkTree(*pages_, repo_id, rows.ColumnBlob(0), &seen, [](const std::string&) {}));
  }
  return seen;
}

absl::Status SqliteCatalog::RecordChunks(int64_t repo_id, const std::vector<ChunkRecord>& chunks) {
  absl::MutexLock lock(&mu_);
  SqliteTransaction txn(&db_, "before-server-fsync");
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement stmt,
      db_.Prepare("INSERT INTO chunks(repo_id, id, length, touched_ns) VALUES (?1, ?2, ?3, ?4) "
                  "ON CONFLICT(repo_id, id) DO UPDATE SET touched_ns = excluded.touched_ns"));
  const int64_t now = absl::GetCurrentTimeNanos();
  for (const ChunkRecord& chunk : chunks) {
    stmt.Reset();
    stmt.BindInt(1, repo_id);
    stmt.BindBlob(2, chunk.id);
    stmt.BindInt(3, chunk.length);
    stmt.BindInt(4, now);
    REPLIFS_RETURN_IF_ERROR(stmt.Run());
  }
  return txn.Commit();
}

}  // namespace replifs::server

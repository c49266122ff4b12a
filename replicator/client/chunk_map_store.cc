#include "replicator/client/chunk_map_store.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace replifs::client {
namespace {

constexpr size_t kRecordBytes = 16 + 4;  // chunk id + length

std::string EncodeChunks(const std::vector<chunker::ChunkRecord>& chunks) {
  std::string out;
  out.reserve(chunks.size() * kRecordBytes);
  for (const auto& chunk : chunks) {
    out.append(reinterpret_cast<const char*>(chunk.id.bytes.data()), chunk.id.bytes.size());
    uint32_t length = chunk.length;
    out.append(reinterpret_cast<const char*>(&length), sizeof(length));
  }
  return out;
}

std::optional<std::vector<chunker::ChunkRecord>> DecodeChunks(const void* data, size_t size) {
  if (size % kRecordBytes != 0) return std::nullopt;
  std::vector<chunker::ChunkRecord> chunks;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t offset = 0;
  for (size_t i = 0; i < size; i += kRecordBytes) {
    chunker::ChunkRecord record;
    std::memcpy(record.id.bytes.data(), p + i, 16);
    std::memcpy(&record.length, p + i + 16, 4);
    record.offset = offset;
    offset += record.length;
    chunks.push_back(record);
  }
  return chunks;
}

absl::Status SqliteError(sqlite3* db, const char* what) {
  return absl::InternalError(absl::StrCat("chunk map store: ", what, ": ", sqlite3_errmsg(db)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChunkMapStore>> ChunkMapStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    absl::Status status = SqliteError(db, "open");
    sqlite3_close(db);
    return status;
  }
  // A lost update only costs a full re-read later: no fsync per batch.
  const char* schema =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA user_version=1;"
      "CREATE TABLE IF NOT EXISTS chunk_maps(device INTEGER, inode INTEGER, size INTEGER,"
      " mtime_ns INTEGER, ctime_ns INTEGER, chunks BLOB, PRIMARY KEY(device, inode));";
  if (sqlite3_exec(db, schema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    absl::Status status = SqliteError(db, "schema");
    sqlite3_close(db);
    return status;
  }
  return std::unique_ptr<ChunkMapStore>(new ChunkMapStore(db));
}

ChunkMapStore::~ChunkMapStore() { sqlite3_close(db_); }

std::optional<ChunkMap> ChunkMapStore::Get(uint64_t device, uint64_t inode) {
  std::lock_guard lock(mutex_);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT size, mtime_ns, ctime_ns, chunks FROM chunk_maps"
                         " WHERE device = ?1 AND inode = ?2",
                         -1, &stmt, nullptr) != SQLITE_OK) {
    return std::nullopt;
  }
  sqlite3_bind_int64(stmt, 1, static_cast<int64_t>(device));
  sqlite3_bind_int64(stmt, 2, static_cast<int64_t>(inode));
  std::optional<ChunkMap> map;
  if (sqlite3_step(stmt) == SQLITE_ROW) {
    auto chunks = DecodeChunks(sqlite3_column_blob(stmt, 3), sqlite3_column_bytes(stmt, 3));
    if (chunks) {
      map.emplace();
      map->identity = {device, inode, static_cast<uint64_t>(sqlite3_column_int64(stmt, 0)),
                       sqlite3_column_int64(stmt, 1), sqlite3_column_int64(stmt, 2)};
      map->chunks = std::move(*chunks);
    }
  }
  sqlite3_finalize(stmt);
  return map;
}

absl::Status ChunkMapStore::PutAll(const std::vector<ChunkMap>& maps) {
  if (maps.empty()) return absl::OkStatus();
  std::lock_guard lock(mutex_);
  if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) return SqliteError(db_, "begin");
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "INSERT OR REPLACE INTO chunk_maps(device, inode, size, mtime_ns, ctime_ns, chunks)"
                         " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                         -1, &stmt, nullptr) != SQLITE_OK) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return SqliteError(db_, "prepare");
  }
  for (const ChunkMap& map : maps) {
    const std::string blob = EncodeChunks(map.chunks);
    sqlite3_bind_int64(stmt, 1, static_cast<int64_t>(map.identity.device));
    sqlite3_bind_int64(stmt, 2, static_cast<int64_t>(map.identity.inode));
    sqlite3_bind_int64(stmt, 3, static_cast<int64_t>(map.identity.size));
    sqlite3_bind_int64(stmt, 4, map.identity.mtime_ns);
    sqlite3_bind_int64(stmt, 5, map.identity.ctime_ns);
    sqlite3_bind_blob(stmt, 6, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
      sqlite3_finalize(stmt);
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return SqliteError(db_, "insert");
    }
    sqlite3_reset(stmt);
  }
  sqlite3_finalize(stmt);
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) return SqliteError(db_, "commit");
  return absl::OkStatus();
}

size_t ChunkMapStore::size() {
  std::lock_guard lock(mutex_);
  sqlite3_stmt* stmt = nullptr;
  size_t count = 0;
  if (sqlite3_prepare_v2(db_, "SELECT COUNT(*) FROM chunk_maps", -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    count = static_cast<size_t>(sqlite3_column_int64(stmt, 0));
  }
  sqlite3_finalize(stmt);
  return count;
}

absl::StatusOr<std::map<std::pair<uint64_t, uint64_t>, FileIdentity>> ChunkMapStore::Identities() {
  std::lock_guard lock(mutex_);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT device, inode, size, mtime_ns, ctime_ns FROM chunk_maps", -1, &stmt,
                         nullptr) != SQLITE_OK) {
    return SqliteError(db_, "prepare");
  }
  std::map<std::pair<uint64_t, uint64_t>, FileIdentity> identities;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    FileIdentity identity{static_cast<uint64_t>(sqlite3_column_int64(stmt, 0)),
                          static_cast<uint64_t>(sqlite3_column_int64(stmt, 1)),
                          static_cast<uint64_t>(sqlite3_column_int64(stmt, 2)),
                          sqlite3_column_int64(stmt, 3), sqlite3_column_int64(stmt, 4)};
    identities.emplace(std::make_pair(identity.device, identity.inode), identity);
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return SqliteError(db_, "select");
  return identities;
}

absl::Status ChunkMapStore::Invalidate(uint64_t device, uint64_t inode) {
  std::lock_guard lock(mutex_);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, "DELETE FROM chunk_maps WHERE device = ?1 AND inode = ?2", -1, &stmt,
                         nullptr) != SQLITE_OK) {
    return SqliteError(db_, "prepare");
  }
  sqlite3_bind_int64(stmt, 1, static_cast<int64_t>(device));
  sqlite3_bind_int64(stmt, 2, static_cast<int64_t>(inode));
  const int rc = sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return SqliteError(db_, "delete");
  return absl::OkStatus();
}

}  // namespace replifs::client

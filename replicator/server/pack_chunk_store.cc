#include "replicator/server/pack_chunk_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "replicator/server/absl_string_view.h"
#include "replicator/server/chunk_file_format.h"
#include "replicator/server/fault_injection.h"
#include "replicator/server/request_validation.h"
#include "replicator/server/status_macros.h"

namespace replifs::server {
namespace {

constexpr int64_t kIndexSchemaVersion = 1;
constexpr const char* kIndexSchema = R"sql(
CREATE TABLE packs(
  id INTEGER PRIMARY KEY,
  repo_id INTEGER NOT NULL,
  name TEXT NOT NULL UNIQUE,
  sealed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE entries(
  repo_id INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  id BLOB NOT NULL,
  pack_id INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  size INTEGER NOT NULL,
  PRIMARY KEY(repo_id, kind, id)) WITHOUT ROWID;
CREATE INDEX entries_by_pack ON entries(pack_id, offset);
PRAGMA user_version = 1;
)sql";
constexpr char kPackSuffix[] = ".pack";
constexpr int kReadAttempts = 4;

absl::Status ValidateRepoId(int64_t repo_id) {
  if (repo_id <= 0) return absl::InvalidArgumentError("repository id must be positive");
  return absl::OkStatus();
}

std::string KindName(EntryKind kind) { return kind == EntryKind::kPage ? "page" : "chunk"; }

absl::StatusOr<std::string> RandomPackName() {
  char bytes[8];
  if (::getrandom(bytes, sizeof(bytes), 0) != static_cast<ssize_t>(sizeof(bytes))) {
    return ErrnoError(errno, "getrandom");
  }
  return absl::BytesToHexString(absl::string_view(bytes, sizeof(bytes)));
}

absl::Status PreadFully(int fd, char* out, size_t size, uint64_t offset, std::string_view what) {
  while (size > 0) {
    const ssize_t n = ::pread(fd, out, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, what);
    }
    if (n == 0) return absl::DataLossError(absl::StrCat(ToAbsl(what), ": unexpected end of pack"));
    out += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

absl::Status PwriteFully(int fd, std::string_view data, uint64_t offset, std::string_view what) {
  while (!data.empty()) {
    const ssize_t n = ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, what);
    }
    data.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

// Names in a directory (without . and ..).
absl::StatusOr<std::vector<std::string>> ListDirectory(int dir_fd) {
  const int fd = ::dup(dir_fd);
  if (fd < 0) return ErrnoError(errno, "dup");
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    ::close(fd);
    return ErrnoError(errno, "fdopendir");
  }
  ::rewinddir(dir);
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status InitializeIndex(SqliteDb& db) {
  // Durable like the catalog: a catalog row may name a chunk as soon as its
  // index entry is committed.
  REPLIFS_RETURN_IF_ERROR(MakeDurable(db, "pack index"));
  SqliteTransaction txn(&db);
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement version, db.Prepare("PRAGMA user_version"));
  REPLIFS_ASSIGN_OR_RETURN(bool has_row, version.Step());
  const int64_t user_version = has_row ? version.ColumnInt(0) : 0;
  if (user_version == kIndexSchemaVersion) return txn.Commit();
  if (user_version != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "pack index: schema version ", user_version, " is not supported (this server reads ",
        kIndexSchemaVersion, "); run replifs-server rebuild-index"));
  }
  REPLIFS_RETURN_IF_ERROR(db.Exec(kIndexSchema));
  return txn.Commit();
}

// True if any <repo_id>/packs/ directory holds a *.pack file.
absl::StatusOr<bool> AnyPackFile(int repos_fd) {
  REPLIFS_ASSIGN_OR_RETURN(std::vector<std::string> repos, ListDirectory(repos_fd));
  for (const std::string& repo : repos) {
    absl::StatusOr<UniqueFd> repo_dir = OpenDirectoryAt(repos_fd, repo);
    if (!repo_dir.ok()) continue;  // a file, or gone
    absl::StatusOr<UniqueFd> packs = OpenDirectoryAt(repo_dir->get(), "packs");
    if (!packs.ok()) continue;
    REPLIFS_ASSIGN_OR_RETURN(std::vector<std::string> files, ListDirectory(packs->get()));
    for (const std::string& file : files) {
      if (absl::EndsWith(file, kPackSuffix)) return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PackChunkStore>> PackChunkStore::Open(const std::string& repos_dir,
                                                                     Options options) {
  REPLIFS_ASSIGN_OR_RETURN(std::unique_ptr<FileChunkStore> legacy, FileChunkStore::Open(repos_dir));
  const int fd = ::open(repos_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open ", repos_dir));
  UniqueFd repos_fd(fd);
  const std::string index_path = absl::StrCat(repos_dir, "/", kIndexName);
  REPLIFS_ASSIGN_OR_RETURN(SqliteDb index, SqliteDb::Open(index_path));
  REPLIFS_RETURN_IF_ERROR(InitializeIndex(index));
  // Every pack gets its row right after creation, so an index without rows
  // beside pack files was deleted or lost (by whichever process opened it
  // first): it stays in need of a rebuild until one is done.
  REPLIFS_ASSIGN_OR_RETURN(SqliteStatement count, index.Prepare("SELECT COUNT(*) FROM packs"));
  REPLIFS_ASSIGN_OR_RETURN(bool has_row, count.Step());
  bool needs_rebuild = false;
  if (has_row && count.ColumnInt(0) == 0) {
    REPLIFS_ASSIGN_OR_RETURN(needs_rebuild, AnyPackFile(fd));
  }
  return std::unique_ptr<PackChunkStore>(new PackChunkStore(
      std::move(repos_fd), repos_dir, std::move(index), std::move(legacy), options, needs_rebuild));
}

absl::StatusOr<UniqueFd> PackChunkStore::OpenPacksDir(int64_t repo_id, bool create) {
  const auto open = create ? OpenOrCreateDirectoryAt : OpenDirectoryAt;
  REPLIFS_ASSIGN_OR_RETURN(UniqueFd repo_fd, open(repos_fd_.get(), absl::StrCat(repo_id)));
  return open(repo_fd.get(), "packs");
}

absl::StatusOr<UniqueFd> PackChunkStore::OpenPack(int64_t repo_id, const std::string& name) {
  REPLIFS_ASSIGN_OR_RETURN(UniqueFd dir, OpenPacksDir(repo_id, /*create=*/false));
  const std::string file = absl::StrCat(name, kPackSuffix);
  UniqueFd fd(::openat(dir.get(), file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("pack ", file, " not found"));
    return ErrnoError(errno, absl::StrCat("open pack ", file));
  }
  return fd;
}

absl::StatusOr<PackChunkStore::Writer> PackChunkStore::CreatePack(int64_t repo_id, bool sealed) {
  REPLIFS_ASSIGN_OR_RETURN(UniqueFd dir, OpenPacksDir(repo_id, /*create=*/true));
  REPLIFS_ASSIGN_OR_RETURN(const std::string name, RandomPackName());
  const std::string file = absl::StrCat(name, kPackSuffix);
  Writer writer;
  writer.fd = UniqueFd(::openat(dir.get(), file.c_str(),
                                O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!writer.fd.valid()) return ErrnoError(errno, absl::StrCat("create pack ", file));
  const std::string header = EncodePackHeader(repo_id);
  REPLIFS_RETURN_IF_ERROR(PwriteFully(writer.fd.get(), header, 0, "write pack header"));
  if (::fdatasync(writer.fd.get()) != 0) return ErrnoError(errno, "fdatasync pack");
  if (::fsync(dir.get()) != 0) return ErrnoError(errno, "fsync packs directory");
  writer.size = header.size();
  REPLIFS_ASSIGN_OR_RETURN(writer.pack_id, IndexPack(repo_id, name, sealed));
  return writer;
}

absl::StatusOr<int64_t> PackChunkStore::IndexPack(int64_t repo_id, const std::string& name,
                                                  bool sealed) {
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement insert,
      index_.Prepare("INSERT INTO packs(repo_id, name, sealed) VALUES (?1, ?2, ?3) RETURNING id"));
  insert.BindInt(1, repo_id);
  insert.BindText(2, name);
  insert.BindInt(3, sealed ? 1 : 0);
  REPLIFS_ASSIGN_OR_RETURN(bool has_row, insert.Step());
  if (!has_row) return absl::InternalError("pack index: insert returned no id");
  return insert.ColumnInt(0);
}

absl::Status PackChunkStore::IndexEntries(int64_t repo_id, int64_t pack_id,
                                          const std::vector<IndexEntry>& entries,
                                          IndexUpdate update) {
  // kAdd ignores an id already indexed: another process may have stored it
  // meanwhile, or a rebuild meets a second copy; readers keep the first.
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement stmt,
      index_.Prepare(
          update == IndexUpdate::kAdd
              ? "INSERT OR IGNORE INTO entries(repo_id, kind, id, pack_id, offset, size) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
              : "UPDATE entries SET pack_id = ?4, offset = ?5, size = ?6 "
                "WHERE repo_id = ?1 AND kind = ?2 AND id = ?3"));
  for (const IndexEntry& entry : entries) {
    stmt.Reset();
    stmt.BindInt(1, repo_id);
    stmt.BindInt(2, static_cast<int>(entry.kind));
    stmt.BindBlob(3, entry.id);
    stmt.BindInt(4, pack_id);
    stmt.BindInt(5, static_cast<int64_t>(entry.offset));
    stmt.BindInt(6, static_cast<int64_t>(entry.size));
    REPLIFS_RETURN_IF_ERROR(stmt.Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<PackChunkStore::Writer*> PackChunkStore::WritablePack(int64_t repo_id) {
  auto it = writers_.find(repo_id);
  if (it != writers_.end()) {
    // A collector may have sealed it (under GC.LOCK, which excludes Put).
    REPLIFS_ASSIGN_OR_RETURN(SqliteStatement sealed,
                             index_.Prepare("SELECT sealed FROM packs WHERE id = ?1"));
    sealed.BindInt(1, it->second.pack_id);
    REPLIFS_ASSIGN_OR_RETURN(bool has_row, sealed.Step());
    if (has_row && sealed.ColumnInt(0) == 0) return &it->second;
    writers_.erase(it);
  }
  REPLIFS_ASSIGN_OR_RETURN(Writer writer, CreatePack(repo_id, /*sealed=*/false));
  return &(writers_[repo_id] = std::move(writer));
}

absl::StatusOr<std::optional<PackChunkStore::Location>> PackChunkStore::Lookup(
    int64_t repo_id, EntryKind kind, std::string_view id) {
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement stmt,
      index_.Prepare("SELECT p.name, e.pack_id, e.offset, e.size FROM entries AS e JOIN packs AS p "
                     "ON p.id = e.pack_id WHERE e.repo_id = ?1 AND e.kind = ?2 AND e.id = ?3"));
  stmt.BindInt(1, repo_id);
  stmt.BindInt(2, static_cast<int>(kind));
  stmt.BindBlob(3, id);
  REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
  if (!has_row) return std::nullopt;
  return Location{stmt.ColumnBlob(0), stmt.ColumnInt(1), static_cast<uint64_t>(stmt.ColumnInt(2)),
                  static_cast<uint64_t>(stmt.ColumnInt(3))};
}

absl::Status PackChunkStore::SyncAndIndex(int64_t repo_id, EntryKind kind, Writer* writer,
                                          std::vector<IndexEntry>* appended) {
  if (appended->empty()) return absl::OkStatus();
  // Pack bytes durable before the index entries that name them (FORMAT.md).
  REPLIFS_RETURN_IF_ERROR(fault::Check("mid-chunk-write"));
  if (::fdatasync(writer->fd.get()) != 0) return ErrnoError(errno, "fdatasync pack");
  SqliteTransaction txn(&index_);
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_RETURN_IF_ERROR(IndexEntries(repo_id, writer->pack_id, *appended, IndexUpdate::kAdd));
  REPLIFS_RETURN_IF_ERROR(txn.Commit());
  (kind == EntryKind::kPage ? pages_written_ : chunks_written_) += appended->size();
  appended->clear();
  return absl::OkStatus();
}

absl::Status PackChunkStore::Append(int64_t repo_id, EntryKind kind, const std::vector<Item>& items) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoId(repo_id));
  for (const Item& item : items) {
    REPLIFS_RETURN_IF_ERROR(ValidateChunkId(item.id));
    if (item.data.size() > kMaxStoredChunkLength) {
      return absl::InvalidArgumentError(
          absl::StrCat(KindName(kind), " of ", item.data.size(), " bytes is too large"));
    }
  }
  absl::MutexLock lock(&mu_);
  Writer* writer = nullptr;
  std::vector<IndexEntry> appended;
  absl::flat_hash_set<std::string_view> batch;
  absl::Status status;
  for (const Item& item : items) {
    if (!batch.insert(item.id).second) continue;
    REPLIFS_ASSIGN_OR_RETURN(std::optional<Location> existing, Lookup(repo_id, kind, item.id));
    if (existing.has_value()) continue;
    if (writer == nullptr) {
      absl::StatusOr<Writer*> open = WritablePack(repo_id);
      if (!open.ok()) {
        status = open.status();
        break;
      }
      writer = *open;
    }
    const std::string entry = EncodePackEntry(kind, item.id, item.data, item.zstd_frame);
    status = PwriteFully(writer->fd.get(), entry, writer->size, "append to pack");
    if (!status.ok()) break;
    appended.push_back({kind, std::string(item.id), writer->size, entry.size()});
    writer->size += entry.size();
    bytes_appended_ += entry.size();
    if (writer->size >= options_.target_pack_size) {
      status = SyncAndIndex(repo_id, kind, writer, &appended);
      if (!status.ok()) break;
      REPLIFS_ASSIGN_OR_RETURN(SqliteStatement seal,
                               index_.Prepare("UPDATE packs SET sealed = 1 WHERE id = ?1"));
      seal.BindInt(1, writer->pack_id);
      REPLIFS_RETURN_IF_ERROR(seal.Run());
      writers_.erase(repo_id);
      writer = nullptr;
    }
  }
  if (status.ok() && writer != nullptr) status = SyncAndIndex(repo_id, kind, writer, &appended);
  if (!status.ok()) {
    // The tail may be torn: never append after it (readers only follow the
    // index, and rebuild-index cuts torn tails off).
    writers_.erase(repo_id);
  }
  return status;
}

absl::StatusOr<std::string> PackChunkStore::Read(int64_t repo_id, EntryKind kind,
                                                 std::string_view id, bool* stored_compressed) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoId(repo_id));
  REPLIFS_RETURN_IF_ERROR(ValidateChunkId(id));
  const std::string hex = absl::BytesToHexString(ToAbsl(id));
  // A collector may move the entry between lookup and open: look again.
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    std::optional<Location> location;
    {
      absl::MutexLock lock(&mu_);
      REPLIFS_ASSIGN_OR_RETURN(location, Lookup(repo_id, kind, id));
    }
    if (!location.has_value()) {
      if (kind == EntryKind::kChunk) {
        if (stored_compressed != nullptr) *stored_compressed = false;
        return legacy_->Get(repo_id, id);
      }
      return absl::NotFoundError(absl::StrCat(KindName(kind), " ", hex, " not found"));
    }
    absl::StatusOr<UniqueFd> pack = OpenPack(repo_id, location->pack_name);
    if (absl::IsNotFound(pack.status())) continue;
    if (!pack.ok()) return pack.status();
    if (location->size < kPackEntryHeaderSize ||
        location->size > kPackEntryHeaderSize + kMaxStoredChunkLength + (1 << 20)) {
      return absl::DataLossError(absl::StrCat(KindName(kind), " ", hex, ": bad index entry"));
    }
    std::string entry(location->size, '\0');
    absl::Status status =
        PreadFully(pack->get(), entry.data(), entry.size(), location->offset, "read pack");
    absl::StatusOr<std::string> data =
        !status.ok()                   ? absl::StatusOr<std::string>(status)
        : stored_compressed != nullptr ? StoredPackPayload(entry, stored_compressed)
                                       : DecodePackEntry(entry);
    if (data.ok()) {
      const PackEntryHeader header = *ParsePackEntryHeader(entry);
      if (header.kind != kind || header.id != id) {
        data = absl::DataLossError("the pack holds another entry at its offset");
      }
    }
    if (!data.ok()) {
      return absl::DataLossError(absl::StrCat(KindName(kind), " ", hex, " in pack ",
                                              location->pack_name, ": ", data.status().message()));
    }
    return data;
  }
  return absl::UnavailableError(absl::StrCat(KindName(kind), " ", hex, " kept moving; retry"));
}

absl::Status PackChunkStore::DeleteEntry(int64_t repo_id, EntryKind kind, std::string_view id) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoId(repo_id));
  REPLIFS_RETURN_IF_ERROR(ValidateChunkId(id));
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement remove,
      index_.Prepare("DELETE FROM entries WHERE repo_id = ?1 AND kind = ?2 AND id = ?3"));
  remove.BindInt(1, repo_id);
  remove.BindInt(2, static_cast<int>(kind));
  remove.BindBlob(3, id);
  return remove.Run();
}

absl::Status PackChunkStore::Put(int64_t repo_id, std::string_view id, std::string_view data) {
  return Append(repo_id, EntryKind::kChunk, {Item{id, data}});
}
absl::Status PackChunkStore::PutMany(int64_t repo_id, const std::vector<PendingChunk>& chunks) {
  std::vector<Item> items;
  items.reserve(chunks.size());
  for (const PendingChunk& chunk : chunks) items.push_back({chunk.id, chunk.data, chunk.zstd_frame});
  return Append(repo_id, EntryKind::kChunk, items);
}
absl::StatusOr<std::string> PackChunkStore::Get(int64_t repo_id, std::string_view id) {
  return Read(repo_id, EntryKind::kChunk, id);
}
absl::StatusOr<ChunkStore::StoredChunk> PackChunkStore::GetStored(int64_t repo_id, std::string_view id) {
  StoredChunk stored;
  REPLIFS_ASSIGN_OR_RETURN(stored.data, Read(repo_id, EntryKind::kChunk, id, &stored.compressed));
  return stored;
}
absl::Status PackChunkStore::Delete(int64_t repo_id, std::string_view id) {
  REPLIFS_RETURN_IF_ERROR(DeleteEntry(repo_id, EntryKind::kChunk, id));
  return legacy_->Delete(repo_id, id);
}
absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> PackChunkStore::GuardWrite() {
  return legacy_->GuardWrite();
}
absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> PackChunkStore::GuardCollection() {
  return legacy_->GuardCollection();
}

absl::StatusOr<bool> PackChunkStore::HasPage(int64_t repo_id, std::string_view id) {
  REPLIFS_RETURN_IF_ERROR(ValidateChunkId(id));
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(std::optional<Location> location, Lookup(repo_id, EntryKind::kPage, id));
  return location.has_value();
}
absl::Status PackChunkStore::PutPage(int64_t repo_id, std::string_view id, std::string_view data) {
  return Append(repo_id, EntryKind::kPage, {Item{id, data}});
}
absl::StatusOr<std::string> PackChunkStore::GetPage(int64_t repo_id, std::string_view id) {
  return Read(repo_id, EntryKind::kPage, id);
}
absl::Status PackChunkStore::DeletePage(int64_t repo_id, std::string_view id) {
  return DeleteEntry(repo_id, EntryKind::kPage, id);
}

absl::StatusOr<std::vector<std::string>> PackChunkStore::ListIds(int64_t repo_id, EntryKind kind) {
  absl::MutexLock lock(&mu_);
  REPLIFS_ASSIGN_OR_RETURN(
      SqliteStatement stmt,
      index_.Prepare("SELECT id FROM entries WHERE repo_id = ?1 AND kind = ?2 ORDER BY id"));
  stmt.BindInt(1, repo_id);
  stmt.BindInt(2, static_cast<int>(kind));
  std::vector<std::string> ids;
  while (true) {
    REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
    if (!has_row) break;
    ids.push_back(stmt.ColumnBlob(0));
  }
  return ids;
}

absl::StatusOr<PackChunkStore::CompactStats> PackChunkStore::Compact(int64_t repo_id,
                                                                     double min_live_fraction) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoId(repo_id));
  absl::MutexLock lock(&mu_);
  CompactStats stats;
  // Sealed packs are never appended to again, by any process: their writers
  // check the flag under GC.LOCK (shared) before each append.
  {
    REPLIFS_ASSIGN_OR_RETURN(SqliteStatement seal,
                             index_.Prepare("UPDATE packs SET sealed = 1 WHERE repo_id = ?1"));
    seal.BindInt(1, repo_id);
    REPLIFS_RETURN_IF_ERROR(seal.Run());
    writers_.erase(repo_id);
  }
  struct PackUse {
    int64_t id;
    std::string name;
    uint64_t live;
  };
  std::vector<PackUse> packs;
  {
    REPLIFS_ASSIGN_OR_RETURN(
        SqliteStatement stmt,
        index_.Prepare("SELECT p.id, p.name, (SELECT COALESCE(SUM(e.size), 0) FROM entries AS e "
                       "WHERE e.pack_id = p.id) FROM packs AS p WHERE p.repo_id = ?1 ORDER BY p.id"));
    stmt.BindInt(1, repo_id);
    while (true) {
      REPLIFS_ASSIGN_OR_RETURN(bool has_row, stmt.Step());
      if (!has_row) break;
      packs.push_back({stmt.ColumnInt(0), stmt.ColumnBlob(1), static_cast<uint64_t>(stmt.ColumnInt(2))});
    }
  }
  absl::StatusOr<UniqueFd> dir = OpenPacksDir(repo_id, /*create=*/false);
  if (absl::IsNotFound(dir.status())) return stats;
  if (!dir.ok()) return dir.status();
  // Which packs to empty: mostly dead ones, and small ones when there are
  // several (each server start begins a pack of its own).
  std::vector<std::pair<PackUse, uint64_t>> doomed;  // with file size
  int small = 0;
  std::vector<std::pair<PackUse, uint64_t>> small_packs;
  for (const PackUse& pack : packs) {
    struct stat st;
    const std::string file = absl::StrCat(pack.name, kPackSuffix);
    if (::fstatat(dir->get(), file.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    const uint64_t payload = size > kPackHeaderSize ? size - kPackHeaderSize : 0;
    if (static_cast<double>(pack.live) < min_live_fraction * static_cast<double>(payload)) {
      doomed.push_back({pack, size});
    } else if (size < options_.target_pack_size / 8) {
      ++small;
      small_packs.push_back({pack, size});
    }
  }
  if (small >= 2) doomed.insert(doomed.end(), small_packs.begin(), small_packs.end());

  std::optional<Writer> output;
  for (const auto& [pack, file_size] : doomed) {
    std::vector<IndexEntry> moved;  // offsets within `copied` until it has a place
    std::string copied;
    bool damaged = false;
    if (pack.live > 0) {
      REPLIFS_ASSIGN_OR_RETURN(UniqueFd in, OpenPack(repo_id, pack.name));
      REPLIFS_ASSIGN_OR_RETURN(
          SqliteStatement live,
          index_.Prepare("SELECT kind, id, offset, size FROM entries WHERE pack_id = ?1 ORDER BY offset"));
      live.BindInt(1, pack.id);
      while (true) {
        REPLIFS_ASSIGN_OR_RETURN(bool has_row, live.Step());
        if (!has_row) break;
        const uint64_t size = static_cast<uint64_t>(live.ColumnInt(3));
        std::string entry(size, '\0');
        absl::Status status = PreadFully(in.get(), entry.data(), size,
                                         static_cast<uint64_t>(live.ColumnInt(2)), "read pack");
        if (status.ok()) status = CheckPackEntry(entry);
        if (!status.ok()) {
          damaged = true;  // keep the pack: scrub reports it, nothing is lost
          break;
        }
        moved.push_back(
            {static_cast<EntryKind>(live.ColumnInt(0)), live.ColumnBlob(1), copied.size(), size});
        copied += entry;
      }
    }
    if (damaged) {
      ++stats.packs_skipped_damaged;
      continue;
    }
    if (!copied.empty()) {
      if (!output.has_value() || output->size + copied.size() > options_.target_pack_size) {
        REPLIFS_ASSIGN_OR_RETURN(output, CreatePack(repo_id, /*sealed=*/true));
      }
      REPLIFS_RETURN_IF_ERROR(PwriteFully(output->fd.get(), copied, output->size, "repack"));
      if (::fdatasync(output->fd.get()) != 0) return ErrnoError(errno, "fdatasync pack");
    }
    // Durable copy first, then the index points at it, then the old file goes.
    SqliteTransaction txn(&index_);
    REPLIFS_RETURN_IF_ERROR(txn.Begin());
    if (!moved.empty()) {
      for (IndexEntry& m : moved) m.offset += output->size;
      REPLIFS_RETURN_IF_ERROR(IndexEntries(repo_id, output->pack_id, moved, IndexUpdate::kMove));
    }
    REPLIFS_ASSIGN_OR_RETURN(SqliteStatement drop, index_.Prepare("DELETE FROM packs WHERE id = ?1"));
    drop.BindInt(1, pack.id);
    REPLIFS_RETURN_IF_ERROR(drop.Run());
    REPLIFS_RETURN_IF_ERROR(txn.Commit());
    if (!copied.empty()) output->size += copied.size();
    const std::string file = absl::StrCat(pack.name, kPackSuffix);
    if (::unlinkat(dir->get(), file.c_str(), 0) != 0 && errno != ENOENT) {
      return ErrnoError(errno, absl::StrCat("delete pack ", file));
    }
    ++stats.packs_removed;
    stats.bytes_copied += copied.size();
    stats.bytes_freed += file_size > copied.size() ? file_size - copied.size() : 0;
  }
  if (::fsync(dir->get()) != 0) return ErrnoError(errno, "fsync packs directory");
  return stats;
}

absl::StatusOr<PackChunkStore::RebuildStats> PackChunkStore::RebuildIndex(
    const std::function<absl::Status(int64_t, const std::string&, uint32_t)>& on_chunk) {
  absl::MutexLock lock(&mu_);
  writers_.clear();
  RebuildStats stats;
  SqliteTransaction txn(&index_);
  REPLIFS_RETURN_IF_ERROR(txn.Begin());
  REPLIFS_RETURN_IF_ERROR(index_.Exec("DELETE FROM entries; DELETE FROM packs;"));
  REPLIFS_ASSIGN_OR_RETURN(std::vector<std::string> repos, ListDirectory(repos_fd_.get()));
  for (const std::string& repo_name : repos) {
    int64_t repo_id = 0;
    if (!absl::SimpleAtoi(repo_name, &repo_id) || repo_id <= 0 ||
        absl::StrCat(repo_id) != repo_name) {
      continue;
    }
    absl::StatusOr<UniqueFd> dir = OpenPacksDir(repo_id, /*create=*/false);
    if (absl::IsNotFound(dir.status())) continue;
    if (!dir.ok()) return dir.status();
    REPLIFS_ASSIGN_OR_RETURN(std::vector<std::string> files, ListDirectory(dir->get()));
    for (const std::string& file : files) {
      if (!absl::EndsWith(file, kPackSuffix)) continue;
      const std::string name = file.substr(0, file.size() - std::string(kPackSuffix).size());
      UniqueFd fd(::openat(dir->get(), file.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
      if (!fd.valid()) return ErrnoError(errno, absl::StrCat("open pack ", file));
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) return ErrnoError(errno, "stat pack");
      const uint64_t size = static_cast<uint64_t>(st.st_size);
      std::string header(kPackHeaderSize, '\0');
      if (size < kPackHeaderSize ||
          !PreadFully(fd.get(), header.data(), header.size(), 0, "read pack").ok() ||
          !DecodePackHeader(header).ok() || *DecodePackHeader(header) != repo_id) {
        // Not ours or torn before its header was durable: leave it alone.
        continue;
      }
      REPLIFS_ASSIGN_OR_RETURN(const int64_t pack_id, IndexPack(repo_id, name, /*sealed=*/true));
      ++stats.packs;
      std::vector<IndexEntry> found;
      uint64_t offset = kPackHeaderSize;
      while (offset < size) {
        // Stop at the first entry that is not whole and intact: a torn tail.
        std::string entry(kPackEntryHeaderSize, '\0');
        if (size - offset < kPackEntryHeaderSize ||
            !PreadFully(fd.get(), entry.data(), entry.size(), offset, "read pack").ok()) {
          break;
        }
        absl::StatusOr<PackEntryHeader> parsed = ParsePackEntryHeader(entry);
        if (!parsed.ok() || parsed->entry_size() > size - offset) break;
        entry.resize(parsed->entry_size());
        if (!PreadFully(fd.get(), entry.data() + kPackEntryHeaderSize, parsed->stored_length,
                        offset + kPackEntryHeaderSize, "read pack")
                 .ok() ||
            !CheckPackEntry(entry).ok()) {
          break;
        }
        found.push_back({parsed->kind, std::string(parsed->id), offset, entry.size()});
        ++stats.entries;
        if (parsed->kind == EntryKind::kChunk && on_chunk) {
          REPLIFS_RETURN_IF_ERROR(on_chunk(repo_id, parsed->id, parsed->length));
        }
        offset += entry.size();
      }
      REPLIFS_RETURN_IF_ERROR(IndexEntries(repo_id, pack_id, found, IndexUpdate::kAdd));
      if (offset < size) {
        stats.torn_bytes += size - offset;
        if (::ftruncate(fd.get(), static_cast<off_t>(offset)) != 0 || ::fsync(fd.get()) != 0) {
          return ErrnoError(errno, absl::StrCat("truncate torn tail of pack ", file));
        }
      }
    }
  }
  REPLIFS_RETURN_IF_ERROR(txn.Commit());
  needs_rebuild_ = false;
  return stats;
}

}  // namespace replifs::server

#include "replicator/server/file_chunk_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "replicator/server/absl_string_view.h"
#include "replicator/server/chunk_file_format.h"
#include "replicator/server/fault_injection.h"
#include "replicator/server/request_validation.h"
#include "replicator/server/status_macros.h"

namespace replifs::server {
namespace {

// A zstd frame may exceed its input by a little; this bounds a sane file.
constexpr size_t kMaxChunkFileSize = kChunkFileHeaderSize + kMaxStoredChunkLength + (1 << 20);

absl::Status ValidateRepoId(int64_t repo_id) {
  if (repo_id <= 0) return absl::InvalidArgumentError("repository id must be positive");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileChunkStore>> FileChunkStore::Open(const std::string& repos_dir) {
  if (::mkdir(repos_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError(errno, absl::StrCat("create ", repos_dir));
  }
  const int fd = ::open(repos_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, absl::StrCat("open ", repos_dir));
  return std::unique_ptr<FileChunkStore>(new FileChunkStore(UniqueFd(fd)));
}

absl::StatusOr<UniqueFd> FileChunkStore::OpenFanoutDirectory(int64_t repo_id,
                                                             const std::string& hex, bool create) {
  const auto open = create ? OpenOrCreateDirectoryAt : OpenDirectoryAt;
  REPLIFS_ASSIGN_OR_RETURN(UniqueFd repo_fd, open(repos_fd_.get(), absl::StrCat(repo_id)));
  REPLIFS_ASSIGN_OR_RETURN(UniqueFd chunks_fd, open(repo_fd.get(), "chunks"));
  return open(chunks_fd.get(), hex.substr(0, 2));
}

absl::Status FileChunkStore::Put(int64_t repo_id, std::string_view id, std::string_view data) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoId(repo_id));
  REPLIFS_RETURN_IF_ERROR(ValidateChunkId(id));
  if (data.size() > kMaxStoredChunkLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk of ", data.size(), " bytes is too large"));
  }
  const std::string hex = absl::BytesToHexString(ToAbsl(id));
  REPLIFS_ASSIGN_OR_RETURN(UniqueFd dir, OpenFanoutDirectory(repo_id, hex, /*create=*/true));

  // Unique per process and call; a crash leaves it behind, and readers only
  // ever open 32-hex names.
  const std::string tmp_name = absl::StrCat("tmp-", hex, "-", ::getpid(), "-", next_tmp_++);
  UniqueFd file(::openat(dir.get(), tmp_name.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!file.valid()) return ErrnoError(errno, absl::StrCat("create chunk ", hex));
  absl::Status status = WriteFully(file.get(), EncodeChunkFile(data), "write chunk");
  if (status.ok()) status = fault::Check("mid-chunk-write");
  if (status.ok() && ::fdatasync(file.get()) != 0) status = ErrnoError(errno, "fdatasync chunk");
  if (status.ok()) status = file.Close();
  if (status.ok() && ::renameat(dir.get(), tmp_name.c_str(), dir.get(), hex.c_str()) != 0) {
    status = ErrnoError(errno, absl::StrCat("rename chunk ", hex));
  }
  if (!status.ok()) {
    ::unlinkat(dir.get(), tmp_name.c_str(), 0);
    return status;
  }
  if (::fsync(dir.get()) != 0) return ErrnoError(errno, "fsync chunk directory");
  return absl::OkStatus();
}

absl::StatusOr<std::string> FileChunkStore::Get(int64_t repo_id, std::string_view id) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoId(repo_id));
  REPLIFS_RETURN_IF_ERROR(ValidateChunkId(id));
  const std::string hex = absl::BytesToHexString(ToAbsl(id));
  absl::StatusOr<UniqueFd> dir = OpenFanoutDirectory(repo_id, hex, /*create=*/false);
  if (absl::IsNotFound(dir.status())) {
    return absl::NotFoundError(absl::StrCat("chunk ", hex, " not found"));
  }
  if (!dir.ok()) return dir.status();
  UniqueFd file(::openat(dir->get(), hex.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!file.valid()) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("chunk ", hex, " not found"));
    return ErrnoError(errno, absl::StrCat("open chunk ", hex));
  }
  REPLIFS_ASSIGN_OR_RETURN(std::string contents,
                           ReadFully(file.get(), kMaxChunkFileSize, "read chunk"));
  absl::StatusOr<std::string> data = DecodeChunkFile(contents);
  if (!data.ok()) {
    return absl::DataLossError(absl::StrCat("chunk ", hex, ": ", data.status().message()));
  }
  return data;
}

namespace {

class FlockGuard : public ChunkStoreGuard {
 public:
  explicit FlockGuard(UniqueFd fd) : fd_(std::move(fd)) {}

 private:
  UniqueFd fd_;  // closing it releases the lock
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> FileChunkStore::Guard(int operation) {
  UniqueFd fd(::openat(repos_fd_.get(), "GC.LOCK", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoError(errno, "open GC.LOCK");
  while (::flock(fd.get(), operation) != 0) {
    if (errno != EINTR) return ErrnoError(errno, "flock GC.LOCK");
  }
  return std::unique_ptr<ChunkStoreGuard>(new FlockGuard(std::move(fd)));
}

absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> FileChunkStore::GuardWrite() {
  return Guard(LOCK_SH);
}

absl::StatusOr<std::unique_ptr<ChunkStoreGuard>> FileChunkStore::GuardCollection() {
  return Guard(LOCK_EX);
}

absl::Status FileChunkStore::Delete(int64_t repo_id, std::string_view id) {
  REPLIFS_RETURN_IF_ERROR(ValidateRepoId(repo_id));
  REPLIFS_RETURN_IF_ERROR(ValidateChunkId(id));
  const std::string hex = absl::BytesToHexString(ToAbsl(id));
  absl::StatusOr<UniqueFd> dir = OpenFanoutDirectory(repo_id, hex, /*create=*/false);
  if (absl::IsNotFound(dir.status())) return absl::OkStatus();
  if (!dir.ok()) return dir.status();
  if (::unlinkat(dir->get(), hex.c_str(), 0) != 0 && errno != ENOENT) {
    return ErrnoError(errno, absl::StrCat("delete chunk ", hex));
  }
  if (::fsync(dir->get()) != 0) return ErrnoError(errno, absl::StrCat("fsync chunk dir of ", hex));
  return absl::OkStatus();
}

}  // namespace replifs::server

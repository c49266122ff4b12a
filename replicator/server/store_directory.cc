#include "replicator/server/store_directory.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "replicator/server/status_macros.h"

namespace replifs::server {
namespace {

constexpr char kMarkerContents[] = "replifs-server store\nformat 1\n";

absl::Status WriteMarker(int dir_fd, const std::string& store) {
  UniqueFd marker(::openat(dir_fd, kStoreMarkerName,
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!marker.valid()) {
    if (errno == EEXIST) return absl::OkStatus();
    return ErrnoError(errno, absl::StrCat("create ", store, "/", kStoreMarkerName));
  }
  REPLIFS_RETURN_IF_ERROR(WriteFully(marker.get(), kMarkerContents, "write store marker"));
  if (::fsync(marker.get()) != 0) return ErrnoError(errno, "fsync store marker");
  REPLIFS_RETURN_IF_ERROR(marker.Close());
  if (::fsync(dir_fd) != 0) return ErrnoError(errno, absl::StrCat("fsync ", store));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<StoreDirectory>> StoreDirectory::Open(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("store directory must not be empty");
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError(errno, absl::StrCat("cannot create store directory ", path));
  }
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return ErrnoError(errno, absl::StrCat("cannot open store directory ", path));

  UniqueFd lock(::openat(dir.get(), "LOCK", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!lock.valid()) return ErrnoError(errno, absl::StrCat("cannot open ", path, "/LOCK"));
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(
          absl::StrCat("store ", path, " is in use by another replifs-server"));
    }
    return ErrnoError(errno, absl::StrCat("cannot lock ", path, "/LOCK"));
  }
  REPLIFS_RETURN_IF_ERROR(WriteMarker(dir.get(), path));
  return std::unique_ptr<StoreDirectory>(new StoreDirectory(path, std::move(lock)));
}

}  // namespace replifs::server

// Attributes: getattr, setattr, readlink, statfs and the xattr calls.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <mutex>

#include "fusefs/file_handle.h"
#include "fusefs/fs_state.h"

namespace replifs::fusefs {
namespace {

using replifs::v1::ChangeEvent;

timespec TimeArg(int valid, int set_bit, int now_bit, const timespec& value) {
  if (valid & now_bit) return timespec{0, UTIME_NOW};
  if (valid & set_bit) return value;
  return timespec{0, UTIME_OMIT};
}

// Applies the changes in `valid` in the order chmod, chown, truncate, times
// (the kernel's own order), stopping at the first failure. Sets *changed and
// *truncated for what succeeded. Returns 0 or an errno.
int ApplySetattr(const Inode& inode, FileHandle* handle, const struct stat& attr, int valid,
                 bool* changed, bool* truncated) {
  const int ifd = inode.Fd();
  const std::string proc = ProcPath(ifd);
  if (valid & FUSE_SET_ATTR_MODE) {
    int res = handle ? fchmod(handle->fd(), attr.st_mode) : chmod(proc.c_str(), attr.st_mode);
    if (res != 0) return errno;
    *changed = true;
  }
  if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr.st_uid : uid_t(-1);
    gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr.st_gid : gid_t(-1);
    if (fchownat(ifd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
      return errno;
    }
    *changed = true;
  }
  if (valid & FUSE_SET_ATTR_SIZE) {
    int res = handle ? ftruncate(handle->fd(), attr.st_size) : truncate(proc.c_str(), attr.st_size);
    if (res != 0) return errno;
    *truncated = true;
  }
  if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    const timespec times[2] = {
        TimeArg(valid, FUSE_SET_ATTR_ATIME, FUSE_SET_ATTR_ATIME_NOW, attr.st_atim),
        TimeArg(valid, FUSE_SET_ATTR_MTIME, FUSE_SET_ATTR_MTIME_NOW, attr.st_mtim)};
    int res = handle ? futimens(handle->fd(), times) : utimensat(ifd, "", times, AT_EMPTY_PATH);
    if (res != 0) return errno;
    *changed = true;
  }
  return 0;
}

}  // namespace

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  ApplyReadAheadIfPending(StateOf(req));
  struct stat st;
  int res = fstatat(InodeOf(req, ino).Fd(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  if (res != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_attr(req, &st, StateOf(req).attr_timeout);
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int valid, fuse_file_info* fi) {
  FsState& fs = StateOf(req);
  Inode& inode = fs.inodes.Get(ino);
  FileHandle* handle = fi != nullptr ? &FileHandle::Of(fi) : nullptr;
  bool changed = false;
  bool truncated = false;
  int err;
  if (fs.writeback_cache && S_ISREG(inode.type) &&
      (valid & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))) {
    // Remember the mtime the kernel set (see Inode::kernel_mtime).
    std::lock_guard<std::mutex> lock(inode.kernel_mtime_mu);
    err = ApplySetattr(inode, handle, *attr, valid, &changed, &truncated);
    struct stat st;
    if (err == 0 && fstatat(inode.Fd(), "", &st, AT_EMPTY_PATH) == 0) {
      inode.kernel_mtime = st.st_mtim;
      inode.kernel_mtime_known = true;
    }
  } else {
    err = ApplySetattr(inode, handle, *attr, valid, &changed, &truncated);
  }
  // Report what did change, even when a later step failed.
  const int ifd = inode.Fd();
  if (truncated) {
    ReportInode(fs, ChangeEvent::TRUNCATE, inode, ifd,
                [&](ChangeEvent& e) { e.set_new_size(attr->st_size); });
  }
  if (changed) ReportInode(fs, ChangeEvent::SETATTR, inode, ifd);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  OpGetattr(req, ino, fi);
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  char buf[PATH_MAX + 1];
  ssize_t n = readlinkat(InodeOf(req, ino).Fd(), "", buf, sizeof(buf));
  if (n < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  if (static_cast<size_t>(n) >= sizeof(buf)) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  buf[n] = '\0';
  fuse_reply_readlink(req, buf);
}

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  FsState& fs = StateOf(req);
  struct statvfs sv;
  if (fstatvfs(fs.inodes.Get(ino).Fd(), &sv) != 0) {
    fuse_reply_err(req, errno);
  } else {
    fuse_reply_statfs(req, &sv);
  }
  // See FsState::exit_requested: answered first, then the loop ends.
  if (fs.exit_requested.load()) fuse_session_exit(fs.session);
}

// xattrs go through /proc/self/fd/N (O_PATH fds refuse f*xattr). Every
// namespace is passed on as is: user., trusted., security., system.posix_acl_*.
void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  FsState& fs = StateOf(req);
  Inode& inode = fs.inodes.Get(ino);
  const int ifd = inode.Fd();
  if (setxattr(ProcPath(ifd).c_str(), name, value, size, flags) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  ReportInode(fs, ChangeEvent::SETXATTR, inode, ifd,
              [&](ChangeEvent& e) { e.set_xattr_name(name); });
  fuse_reply_err(req, 0);
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  const std::string proc = ProcPath(InodeOf(req, ino).Fd());
  if (size == 0) {
    ssize_t n = getxattr(proc.c_str(), name, nullptr, 0);
    if (n < 0)
      fuse_reply_err(req, errno);
    else
      fuse_reply_xattr(req, n);
    return;
  }
  auto buf = std::make_unique<char[]>(size);
  ssize_t n = getxattr(proc.c_str(), name, buf.get(), size);
  if (n < 0)
    fuse_reply_err(req, errno);
  else
    fuse_reply_buf(req, buf.get(), n);
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  const std::string proc = ProcPath(InodeOf(req, ino).Fd());
  if (size == 0) {
    ssize_t n = listxattr(proc.c_str(), nullptr, 0);
    if (n < 0)
      fuse_reply_err(req, errno);
    else
      fuse_reply_xattr(req, n);
    return;
  }
  auto buf = std::make_unique<char[]>(size);
  ssize_t n = listxattr(proc.c_str(), buf.get(), size);
  if (n < 0)
    fuse_reply_err(req, errno);
  else
    fuse_reply_buf(req, buf.get(), n);
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  FsState& fs = StateOf(req);
  Inode& inode = fs.inodes.Get(ino);
  const int ifd = inode.Fd();
  if (removexattr(ProcPath(ifd).c_str(), name) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  ReportInode(fs, ChangeEvent::REMOVEXATTR, inode, ifd,
              [&](ChangeEvent& e) { e.set_xattr_name(name); });
  fuse_reply_err(req, 0);
}

}  // namespace replifs::fusefs

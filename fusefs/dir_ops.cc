// Directories: opendir, readdir, readdirplus, releasedir, fsyncdir.
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "fusefs/fs_state.h"

namespace replifs::fusefs {
namespace {

// The kernel serialises readdir on one open directory (f_pos lock), so a
// DirHandle needs no lock of its own.
struct DirHandle {
  DIR* dp = nullptr;
  off_t offset = 0;                // telldir cookie of `entry`
  struct dirent* entry = nullptr;  // read but not yet sent (did not fit)
};

DirHandle& DirOf(const fuse_file_info* fi) {
  return *reinterpret_cast<DirHandle*>(static_cast<std::uintptr_t>(fi->fh));
}

bool IsDotOrDotDot(const char* name) { return strcmp(name, ".") == 0 || strcmp(name, "..") == 0; }

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
             bool plus) {
  FsState& fs = StateOf(req);
  DirHandle& dir = DirOf(fi);
  auto buf = std::make_unique<char[]>(size);
  char* p = buf.get();
  size_t remaining = size;
  if (off != dir.offset) {
    seekdir(dir.dp, off);
    dir.entry = nullptr;
    dir.offset = off;
  }
  while (true) {
    if (dir.entry == nullptr) {
      errno = 0;
      dir.entry = readdir(dir.dp);
      if (dir.entry == nullptr) {
        if (errno != 0 && remaining == size) {
          fuse_reply_err(req, errno);
          return;
        }
        break;
      }
    }
    const off_t next = dir.entry->d_off;
    const char* name = dir.entry->d_name;
    size_t used;
    if (plus) {
      fuse_entry_param e{};
      // ino 0 tells the kernel to make no dentry for "." and "..".
      const bool counted = !IsDotOrDotDot(name);
      if (counted) {
        int err = LookupEntry(req, fs.inodes.Get(ino), name, &e);
        if (err == ENOENT) {  // removed since readdir saw it
          dir.entry = nullptr;
          dir.offset = next;
          continue;
        }
        if (err != 0) {
          if (remaining == size) {
            fuse_reply_err(req, err);
            return;
          }
          break;
        }
      } else {
        e.attr.st_ino = dir.entry->d_ino;
        e.attr.st_mode = DTTOIF(dir.entry->d_type);
      }
      used = fuse_add_direntry_plus(req, p, remaining, name, &e, next);
      if (used > remaining) {
        if (counted) fs.inodes.Forget(fs.inodes.Get(e.ino), 1);
        break;
      }
    } else {
      struct stat st {};
      st.st_ino = dir.entry->d_ino;
      st.st_mode = DTTOIF(dir.entry->d_type);
      used = fuse_add_direntry(req, p, remaining, name, &st, next);
      if (used > remaining) break;
    }
    p += used;
    remaining -= used;
    dir.entry = nullptr;
    dir.offset = next;
  }
  fuse_reply_buf(req, buf.get(), size - remaining);
}

}  // namespace

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  int fd = openat(InodeOf(req, ino).Fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  auto dir = std::make_unique<DirHandle>();
  dir->dp = fdopendir(fd);
  if (dir->dp == nullptr) {
    int err = errno;
    close(fd);
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = reinterpret_cast<std::uintptr_t>(dir.get());
  if (fuse_reply_open(req, fi) == 0) {
    dir.release();  // owned by the kernel's open directory until releasedir
  } else {
    closedir(dir->dp);
  }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDir(req, ino, size, off, fi, /*plus=*/false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDir(req, ino, size, off, fi, /*plus=*/true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  DirHandle* dir = &DirOf(fi);
  closedir(dir->dp);
  delete dir;
  fuse_reply_err(req, 0);
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  int fd = dirfd(DirOf(fi).dp);
  int res = datasync ? fdatasync(fd) : fsync(fd);
  if (res != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  StateOf(req).events.Barrier();
  fuse_reply_err(req, 0);
}

}  // namespace replifs::fusefs

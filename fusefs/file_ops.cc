// Open files: open, read, write, flush, release, fsync, fallocate,
// copy_file_range, lseek, flock.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "fusefs/file_handle.h"
#include "fusefs/fs_state.h"

namespace replifs::fusefs {

using replifs::v1::ChangeEvent;

void OpenHandle(FsState& fs, int fd, int backing_flags, uint64_t ino, fuse_file_info* fi) {
  auto* handle = new FileHandle(fd, (backing_flags & O_APPEND) != 0);
  fi->fh = reinterpret_cast<std::uintptr_t>(handle);
  // The program's own access mode (the backing one may be widened).
  if ((fi->flags & O_ACCMODE) != O_RDONLY) handle->CountAsWriter(&fs.open_writers, ino);
  // Pages stay valid across opens: the daemon is the only writer, and
  // changes underneath come with InvalidatePath (fs_state.h).
  if (fs.keep_cache && !fi->direct_io) fi->keep_cache = 1;
}

// Flags for opening the backing file on behalf of the kernel's open flags.
// O_DIRECT becomes direct_io on the FUSE side (the kernel's page cache is
// bypassed); the backing fs may refuse O_DIRECT (tmpfs) and gains nothing.
int BackingOpenFlags(const FsState& fs, fuse_file_info* fi) {
  int flags = fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW);
  if (flags & O_DIRECT) {
    fi->direct_io = 1;
    flags &= ~O_DIRECT;
  }
  if (fs.writeback_cache) {
    // The kernel reads pages to fill partial writes even on a write-only
    // open (as in libfuse's passthrough_hp).
    if ((flags & O_ACCMODE) == O_WRONLY) flags = (flags & ~O_ACCMODE) | O_RDWR;
    // The kernel places appends itself at the size it owns and sends exact
    // offsets; a backing O_APPEND would move them.
    flags &= ~O_APPEND;
  }
  return flags | O_CLOEXEC;
}

// open() of the backing file; when write-only was widened to read-write
// (writeback cache) and that is refused (read-only fs, ETXTBSY...), the
// caller's own access mode decides.
int OpenBacking(const std::string& path, int dirfd, const char* name, int flags, int kernel_flags,
                mode_t mode) {
  int fd = dirfd >= 0 ? openat(dirfd, name, flags, mode) : open(path.c_str(), flags, mode);
  if (fd < 0 && (flags & O_ACCMODE) != (kernel_flags & O_ACCMODE) && errno != EEXIST &&
      errno != ENOENT) {
    flags = (flags & ~O_ACCMODE) | (kernel_flags & O_ACCMODE);
    fd = dirfd >= 0 ? openat(dirfd, name, flags, mode) : open(path.c_str(), flags, mode);
  }
  return fd;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  FsState& fs = StateOf(req);
  Inode& inode = fs.inodes.Get(ino);
  const int flags = BackingOpenFlags(fs, fi);
  int fd = OpenBacking(ProcPath(inode.Fd()), -1, nullptr, flags, fi->flags, 0);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  OpenHandle(fs, fd, flags, inode.ino, fi);
  if ((fi->flags & O_TRUNC) && S_ISREG(inode.type)) {
    ReportInode(fs, ChangeEvent::TRUNCATE, inode, fd, [](ChangeEvent& e) { e.set_new_size(0); });
  }
  if (fuse_reply_open(req, fi) != 0) {
    // The kernel gave up on the request (interrupted): nobody will release.
    delete &FileHandle::Of(fi);
  }
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  // The reply points at the fd, so libfuse can splice the data.
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = FileHandle::Of(fi).fd();
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

void OpWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in_buf, off_t off,
                fuse_file_info* fi) {
  FsState& fs = StateOf(req);
  FileHandle& handle = FileHandle::Of(fi);
  const bool appends = handle.append() && !fi->writepage;
  int fd = handle.append() && fi->writepage ? handle.PositionalFd() : handle.fd();
  if (fd < 0) {
    fuse_reply_err(req, EIO);
    return;
  }
  fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in_buf));
  out.buf[0].flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  out.buf[0].fd = fd;
  out.buf[0].pos = off;
  Inode& inode = fs.inodes.Get(ino);
  ssize_t written;
  if (fi->writepage && fs.writeback_cache) {
    // Page-cache writeback: the mtime is the kernel's (Inode::kernel_mtime),
    // never this write's. The lock is not held across the copy, so the
    // WRITEs of one file's writeback run in parallel: every copy is
    // followed by a futimens to the latest kernel mtime, and the first
    // capture happens before any copy (a later writer finds it known).
    {
      std::lock_guard<std::mutex> lock(inode.kernel_mtime_mu);
      struct stat st;
      if (!inode.kernel_mtime_known && fstat(fd, &st) == 0) {
        inode.kernel_mtime = st.st_mtim;
        inode.kernel_mtime_known = true;
      }
    }
    written = fuse_buf_copy(&out, in_buf, FUSE_BUF_NO_SPLICE);
    std::lock_guard<std::mutex> lock(inode.kernel_mtime_mu);
    if (written > 0 && inode.kernel_mtime_known) {
      const timespec times[2] = {{0, UTIME_OMIT}, inode.kernel_mtime};
      futimens(fd, times);
    }
  } else {
    written = fuse_buf_copy(&out, in_buf, FUSE_BUF_NO_SPLICE);
  }
  if (written < 0) {
    fuse_reply_err(req, static_cast<int>(-written));
    return;
  }
  if (written > 0) {
    ReportInode(fs, ChangeEvent::WRITE, inode, fd, [&](ChangeEvent& e) {
      // pwrite on an O_APPEND fd appends; the kernel holds the inode
      // lock across the request, so the end of file minus what we wrote
      // is where it landed (unless a writer underneath races us).
      std::uint64_t at = off;
      if (appends && e.attributes().size() >= std::uint64_t(written)) {
        at = e.attributes().size() - written;
      }
      e.set_offset(at);
      e.set_length(written);
    });
  }
  fuse_reply_write(req, written);
}

void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  // close() of a dup reports delayed write errors of some filesystems (NFS)
  // without closing the handle, as the application's close would have.
  int res = close(dup(FileHandle::Of(fi).fd()));
  fuse_reply_err(req, res == 0 ? 0 : errno);
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  delete &FileHandle::Of(fi);
  fuse_reply_err(req, 0);
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  int fd = FileHandle::Of(fi).fd();
  int res = datasync ? fdatasync(fd) : fsync(fd);
  if (res != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  FsState& fs = StateOf(req);
  // The kernel holds the inode lock and has written every dirty page back:
  // the backing file holds a state the program wrote. Copied now if the
  // replicator asked (fsync_copies.h).
  fs.fsync_copies.CopyIfWanted(fs.inodes.Get(ino).ino, fd, fs.root_fd);
  fs.events.Barrier();
  fuse_reply_err(req, 0);
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  FsState& fs = StateOf(req);
  int fd = FileHandle::Of(fi).fd();
  if (fallocate(fd, mode, offset, length) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  ReportInode(fs, ChangeEvent::FALLOCATE, fs.inodes.Get(ino), fd, [&](ChangeEvent& e) {
    e.set_offset(offset);
    e.set_length(length);
  });
  fuse_reply_err(req, 0);
}

void OpCopyFileRange(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                     fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                     int flags) {
  FsState& fs = StateOf(req);
  int out_fd = FileHandle::Of(fi_out).fd();
  loff_t in_pos = off_in;
  loff_t out_pos = off_out;
  ssize_t copied =
      copy_file_range(FileHandle::Of(fi_in).fd(), &in_pos, out_fd, &out_pos, len, flags);
  if (copied < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  if (copied > 0) {
    ReportInode(fs, ChangeEvent::COPY_RANGE, fs.inodes.Get(ino_out), out_fd, [&](ChangeEvent& e) {
      e.set_offset(off_out);
      e.set_length(copied);
    });
  }
  fuse_reply_write(req, copied);
}

void OpLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  // The kernel asks SEEK_DATA/SEEK_HOLE without writing dirty pages back
  // first: with a writeback cache the backing file may not have them yet.
  // Invalidating the inode launders (writes back) its dirty pages through
  // other workers, so the backing file's extents are the caller's.
  if (StateOf(req).writeback_cache && (whence == SEEK_DATA || whence == SEEK_HOLE)) {
    fuse_lowlevel_notify_inval_inode(StateOf(req).session, ino, 0, 0);
  }
  off_t res = lseek(FileHandle::Of(fi).fd(), off, whence);
  if (res < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_reply_lseek(req, res);
}

void OpFlock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op) {
  // One backing open file per FUSE open file, so flock's per-open-file
  // semantics carry over (a blocking lock parks one worker thread).
  int res = flock(FileHandle::Of(fi).fd(), op);
  fuse_reply_err(req, res == 0 ? 0 : errno);
}

}  // namespace replifs::fusefs

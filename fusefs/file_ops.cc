// Open files: open, read, write, flush, release, fsync, fallocate,
// copy_file_range, lseek, flock.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "fusefs/file_handle.h"
#include "fusefs/fs_state.h"

namespace replifs::fusefs {

using replifs::v1::ChangeEvent;

void OpenHandle(int fd, fuse_file_info* fi) {
  auto* handle = new FileHandle(fd, (fi->flags & O_APPEND) != 0);
  fi->fh = reinterpret_cast<std::uintptr_t>(handle);
}

// Flags for opening the backing file on behalf of the kernel's open flags.
// O_DIRECT becomes direct_io on the FUSE side (the kernel's page cache is
// bypassed); the backing fs may refuse O_DIRECT (tmpfs) and gains nothing.
int BackingOpenFlags(fuse_file_info* fi) {
  int flags = fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY | O_NOFOLLOW);
  if (flags & O_DIRECT) {
    fi->direct_io = 1;
    flags &= ~O_DIRECT;
  }
  return flags | O_CLOEXEC;
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  FsState& fs = StateOf(req);
  Inode& inode = fs.inodes.Get(ino);
  int fd = open(ProcPath(inode.fd.load()).c_str(), BackingOpenFlags(fi));
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  OpenHandle(fd, fi);
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
  ssize_t written = fuse_buf_copy(&out, in_buf, FUSE_BUF_NO_SPLICE);
  if (written < 0) {
    fuse_reply_err(req, static_cast<int>(-written));
    return;
  }
  if (written > 0) {
    ReportInode(fs, ChangeEvent::WRITE, fs.inodes.Get(ino), fd, [&](ChangeEvent& e) {
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
  StateOf(req).events.Barrier();
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

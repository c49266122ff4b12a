// The fuse_lowlevel_ops table and connection setup.
#include "fusefs/fs_state.h"

namespace replifs::fusefs {
namespace {

void OpInit(void* userdata, fuse_conn_info* conn) {
  // Correctness first: with a writeback cache the kernel would delay and
  // merge writes, and cached sizes would hide changes made underneath.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  // The daemon runs as root (CAP_FSETID): a write or chown done by it would
  // keep setuid/setgid bits. Let the kernel clear them, as for the caller.
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  // READ replies may be spliced from the backing fd.
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) {
    conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
  }
  if (conn->capable & FUSE_CAP_FLOCK_LOCKS) conn->want |= FUSE_CAP_FLOCK_LOCKS;
  // 1 MiB: libfuse 3.14's buffer holds that much; it clamps if not.
  conn->max_write = 1 << 20;
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.symlink = OpSymlink;
  ops.link = OpLink;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.rename = OpRename;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write_buf = OpWriteBuf;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.setxattr = OpSetxattr;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.removexattr = OpRemovexattr;
  ops.fallocate = OpFallocate;
  ops.copy_file_range = OpCopyFileRange;
  ops.lseek = OpLseek;
  ops.flock = OpFlock;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& PassthroughOps() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace replifs::fusefs

// The fuse_lowlevel_ops table and connection setup.
#include "fusefs/fs_state.h"

namespace replifs::fusefs {
namespace {

void OpInit(void* userdata, fuse_conn_info* conn) {
  FsState& fs = *static_cast<FsState*>(userdata);
  // Writeback cache: the kernel merges small writes into pages and sends
  // them as large WRITEs (fi->writepage) at writeback, flush (so before every
  // close() returns), fsync and msync. Every byte still reaches OpWriteBuf and
  // becomes a WRITE event; the kernel owns size and mtime meanwhile (it sends
  // them back through setattr). Changes underneath need InvalidatePath().
  if (fs.writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  } else {
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    fs.writeback_cache = false;
  }
  // Cached pages are dropped when a getattr shows a changed mtime or size
  // (a second line of defence after explicit invalidation).
  if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA) conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
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

// The fuse_lowlevel_ops table and connection setup.
#include "fusefs/fs_state.h"
#include "fusefs/request_fds.h"

namespace replifs::fusefs {
namespace {

// Every handler runs through this: fds a by-handle inode was opened with
// for the request are closed when the handler returns (request_fds.h).
template <auto Handler>
struct Scoped;
template <typename... Args, void (*Handler)(Args...)>
struct Scoped<Handler> {
  static void Call(Args... args) {
    Handler(args...);
    CloseRequestFds();
  }
};

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
  ops.lookup = Scoped<OpLookup>::Call;
  ops.forget = Scoped<OpForget>::Call;
  ops.forget_multi = Scoped<OpForgetMulti>::Call;
  ops.getattr = Scoped<OpGetattr>::Call;
  ops.setattr = Scoped<OpSetattr>::Call;
  ops.readlink = Scoped<OpReadlink>::Call;
  ops.mknod = Scoped<OpMknod>::Call;
  ops.mkdir = Scoped<OpMkdir>::Call;
  ops.symlink = Scoped<OpSymlink>::Call;
  ops.link = Scoped<OpLink>::Call;
  ops.unlink = Scoped<OpUnlink>::Call;
  ops.rmdir = Scoped<OpRmdir>::Call;
  ops.rename = Scoped<OpRename>::Call;
  ops.open = Scoped<OpOpen>::Call;
  ops.create = Scoped<OpCreate>::Call;
  ops.read = Scoped<OpRead>::Call;
  ops.write_buf = Scoped<OpWriteBuf>::Call;
  ops.flush = Scoped<OpFlush>::Call;
  ops.release = Scoped<OpRelease>::Call;
  ops.fsync = Scoped<OpFsync>::Call;
  ops.opendir = Scoped<OpOpendir>::Call;
  ops.readdir = Scoped<OpReaddir>::Call;
  ops.readdirplus = Scoped<OpReaddirplus>::Call;
  ops.releasedir = Scoped<OpReleasedir>::Call;
  ops.fsyncdir = Scoped<OpFsyncdir>::Call;
  ops.statfs = Scoped<OpStatfs>::Call;
  ops.setxattr = Scoped<OpSetxattr>::Call;
  ops.getxattr = Scoped<OpGetxattr>::Call;
  ops.listxattr = Scoped<OpListxattr>::Call;
  ops.removexattr = Scoped<OpRemovexattr>::Call;
  ops.fallocate = Scoped<OpFallocate>::Call;
  ops.copy_file_range = Scoped<OpCopyFileRange>::Call;
  ops.lseek = Scoped<OpLseek>::Call;
  ops.flock = Scoped<OpFlock>::Call;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& PassthroughOps() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace replifs::fusefs

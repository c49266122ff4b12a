// Names: lookup, forget, create, mknod, mkdir, symlink, link, unlink, rmdir,
// rename.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <string>

#include "fusefs/file_handle.h"
#include "fusefs/fs_state.h"

namespace replifs::fusefs {
namespace {

using replifs::v1::ChangeEvent;

int StatEmptyPath(int fd, struct stat* st) {
  return fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

// The daemon creates as root; the node must belong to the caller, as if the
// caller had made it. A setgid parent keeps the gid the backing fs chose.
int GiveToCaller(fuse_req_t req, const Inode& parent, int fd, struct stat* st) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  struct stat parent_st;
  if (fstat(parent.Fd(), &parent_st) != 0) return errno;
  gid_t gid = (parent_st.st_mode & S_ISGID) ? static_cast<gid_t>(-1) : ctx->gid;
  if (st->st_uid == ctx->uid && (gid == static_cast<gid_t>(-1) || st->st_gid == gid)) {
    return 0;
  }
  if (fchownat(fd, "", ctx->uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
    return errno;
  }
  return StatEmptyPath(fd, st);
}

void ReplyEntry(fuse_req_t req, const fuse_entry_param& e) {
  // If the kernel dropped the request, it never took the reference.
  if (fuse_reply_entry(req, &e) != 0) {
    StateOf(req).inodes.Forget(StateOf(req).inodes.Get(e.ino), 1);
  }
}

// After `name` was created in `parent` by the daemon: look it up, hand it to
// the caller, report `op` and reply. Undoes the creation if chown fails.
void FinishNewNode(fuse_req_t req, Inode& parent, const char* name, ChangeOp op,
                   const char* symlink_target) {
  FsState& fs = StateOf(req);
  fuse_entry_param e;
  int err = LookupEntry(req, parent, name, &e);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  Inode& inode = fs.inodes.Get(e.ino);
  err = GiveToCaller(req, parent, inode.Fd(), &e.attr);
  if (err != 0) {
    unlinkat(parent.Fd(), name, S_ISDIR(e.attr.st_mode) ? AT_REMOVEDIR : 0);
    fs.inodes.Forget(inode, 1);
    fuse_reply_err(req, err);
    return;
  }
  if (fs.events.enabled()) {
    if (auto path = fs.events.PathOfChild(parent.Fd(), name)) {
      ChangeEvent event = fs.events.NewEvent(op, std::move(*path), e.attr);
      if (symlink_target != nullptr) event.set_symlink_target(symlink_target);
      fs.events.Report(std::move(event));
    }
  }
  ReplyEntry(req, e);
}

}  // namespace

int LookupEntry(fuse_req_t req, Inode& parent, const char* name, fuse_entry_param* e) {
  FsState& fs = StateOf(req);
  const int parent_fd = parent.Fd();
  int fd = openat(parent_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno;
  struct stat st;
  if (int err = StatEmptyPath(fd, &st); err != 0) {
    close(fd);
    return err;
  }
  Inode& inode = fs.inodes.Insert(fd, st, parent_fd);
  *e = fuse_entry_param{};
  e->ino = fs.inodes.IdOf(inode);
  e->attr = st;
  e->attr_timeout = fs.attr_timeout;
  e->entry_timeout = fs.entry_timeout;
  return 0;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ApplyReadAheadIfPending(StateOf(req));
  fuse_entry_param e;
  // No negative entries: a name created underneath must show up at once.
  int err = LookupEntry(req, InodeOf(req, parent), name, &e);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  ReplyEntry(req, e);
}

void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  StateOf(req).inodes.Forget(InodeOf(req, ino), nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  InodeTable& inodes = StateOf(req).inodes;
  for (size_t i = 0; i < count; ++i) {
    inodes.Forget(inodes.Get(forgets[i].ino), forgets[i].nlookup);
  }
  fuse_reply_none(req);
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Inode& dir = InodeOf(req, parent);
  if (mknodat(dir.Fd(), name, mode, rdev) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  // mknod(2) can make a regular file too: to a listener that is a create.
  ChangeOp op = S_ISREG(mode) ? ChangeEvent::CREATE : ChangeEvent::MKNOD;
  FinishNewNode(req, dir, name, op, nullptr);
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Inode& dir = InodeOf(req, parent);
  if (mkdirat(dir.Fd(), name, mode) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  FinishNewNode(req, dir, name, ChangeEvent::MKDIR, nullptr);
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  Inode& dir = InodeOf(req, parent);
  if (symlinkat(link, dir.Fd(), name) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  FinishNewNode(req, dir, name, ChangeEvent::SYMLINK, link);
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  FsState& fs = StateOf(req);
  Inode& inode = fs.inodes.Get(ino);
  Inode& dir = fs.inodes.Get(newparent);
  // AT_EMPTY_PATH links the object itself (root has CAP_DAC_READ_SEARCH).
  if (linkat(inode.Fd(), "", dir.Fd(), newname, AT_EMPTY_PATH) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fuse_entry_param e;
  int err = LookupEntry(req, dir, newname, &e);
  if (err != 0) {
    fuse_reply_err(req, err);
    return;
  }
  if (fs.events.enabled()) {
    auto path = fs.events.PathOfAny(fs.inodes.NameFds(inode));
    auto new_path = fs.events.PathOfChild(dir.Fd(), newname);
    if (path && new_path) {
      ChangeEvent event = fs.events.NewEvent(ChangeEvent::LINK, std::move(*path), e.attr);
      event.set_new_path(std::move(*new_path));
      fs.events.Report(std::move(event));
    }
  }
  ReplyEntry(req, e);
}

namespace {

// unlink and rmdir: the event carries the object's identity and the links
// it has left (0 for a directory).
void RemoveEntry(fuse_req_t req, fuse_ino_t parent, const char* name, bool is_dir) {
  FsState& fs = StateOf(req);
  Inode& dir = fs.inodes.Get(parent);
  struct stat before;
  bool have_before = fstatat(dir.Fd(), name, &before, AT_SYMLINK_NOFOLLOW) == 0;
  std::optional<std::string> path;
  if (have_before && fs.events.enabled()) {
    path = fs.events.PathOfChild(dir.Fd(), name);
  }
  if (unlinkat(dir.Fd(), name, is_dir ? AT_REMOVEDIR : 0) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  if (path) {
    struct stat after = before;
    if (is_dir) {
      after.st_nlink = 0;
    } else if (auto known = fs.inodes.StatIfKnown(before.st_ino, before.st_dev)) {
      after = *known;  // exact even if another link changed meanwhile
    } else {
      after.st_nlink = before.st_nlink > 0 ? before.st_nlink - 1 : 0;
    }
    fs.events.Report(fs.events.NewEvent(is_dir ? ChangeEvent::RMDIR : ChangeEvent::UNLINK,
                                        std::move(*path), after));
  }
  fuse_reply_err(req, 0);
}

}  // namespace

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  RemoveEntry(req, parent, name, /*is_dir=*/false);
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  RemoveEntry(req, parent, name, /*is_dir=*/true);
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned int flags) {
  FsState& fs = StateOf(req);
  Inode& from = fs.inodes.Get(parent);
  Inode& to = fs.inodes.Get(newparent);
  // Paths first: the parents do not move, but reading them after would race
  // with nothing here and costs the same.
  std::optional<std::string> path, new_path;
  if (fs.events.enabled()) {
    path = fs.events.PathOfChild(from.Fd(), name);
    new_path = fs.events.PathOfChild(to.Fd(), newname);
  }
  if (renameat2(from.Fd(), name, to.Fd(), newname, flags) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  struct stat st;
  if (path && new_path && fstatat(to.Fd(), newname, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    ChangeEvent event = fs.events.NewEvent(ChangeEvent::RENAME, std::move(*path), st);
    event.set_new_path(std::move(*new_path));
    event.set_rename_flags(flags);
    fs.events.Report(std::move(event));
  }
  fuse_reply_err(req, 0);
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  FsState& fs = StateOf(req);
  Inode& dir = fs.inodes.Get(parent);
  const int flags = BackingOpenFlags(fs, fi);
  // O_EXCL first so we know whether we made the file: only a new file is
  // handed to the caller and reported as CREATE.
  bool created = true;
  int fd = OpenBacking("", dir.Fd(), name, flags | O_CREAT | O_EXCL, fi->flags, mode);
  if (fd < 0 && errno == EEXIST && !(fi->flags & O_EXCL)) {
    created = false;
    fd = OpenBacking("", dir.Fd(), name, flags | O_NOFOLLOW, fi->flags, 0);
  }
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  struct stat st;
  int err = fstat(fd, &st) == 0 ? 0 : errno;
  if (err == 0 && created) err = GiveToCaller(req, dir, fd, &st);
  fuse_entry_param e;
  if (err == 0) err = LookupEntry(req, dir, name, &e);
  if (err != 0) {
    close(fd);
    if (created) unlinkat(dir.Fd(), name, 0);
    fuse_reply_err(req, err);
    return;
  }
  OpenHandle(fs, fd, flags, st.st_ino, fi);
  if (fs.events.enabled()) {
    if (auto path = fs.events.PathOfChild(dir.Fd(), name)) {
      if (created) {
        fs.events.Report(fs.events.NewEvent(ChangeEvent::CREATE, std::move(*path), e.attr));
      } else if (fi->flags & O_TRUNC) {
        ChangeEvent event = fs.events.NewEvent(ChangeEvent::TRUNCATE, std::move(*path), e.attr);
        event.set_new_size(0);
        fs.events.Report(std::move(event));
      }
    }
  }
  if (fuse_reply_create(req, &e, fi) != 0) {
    delete &FileHandle::Of(fi);
    fs.inodes.Forget(fs.inodes.Get(e.ino), 1);
  }
}

}  // namespace replifs::fusefs

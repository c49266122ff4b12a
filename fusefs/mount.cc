// PassthroughFs: session lifetime (mount, loop, exit, unmount) and
// invalidation of paths changed underneath.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fusefs/fs_state.h"
#include "fusefs/passthrough_fs.h"

namespace replifs::fusefs {
namespace {

// fuse_opt splits -o values on ',' unless escaped.
std::string EscapeOption(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// The mount's "major:minor" from /proc/self/mountinfo (the last mount on
// the path). stat() cannot be used: it would wait for a loop not yet running.
std::optional<std::string> MountDeviceOf(const std::string& mountpoint) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::optional<std::string> device;
  std::string escaped;  // mountinfo escapes space, tab, newline, backslash as \ooo
  for (char c : mountpoint) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\\') {
      char oct[5];
      snprintf(oct, sizeof(oct), "\\%03o", static_cast<unsigned char>(c));
      escaped += oct;
    } else {
      escaped.push_back(c);
    }
  }
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, target;
    fields >> id >> parent >> dev >> root >> target;
    if (target == escaped) device = dev;
  }
  return device;
}


class FuseMount final : public PassthroughFs {
 public:
  FuseMount(const MountOptions& options, std::unique_ptr<FsState> state)
      : options_(options), state_(std::move(state)) {}
  ~FuseMount() override { Unmount(); }

  absl::Status Start();
  absl::Status Run() override;
  void Exit() override;
  void Unmount() override;
  void InvalidatePath(const std::string& relative_path) override;
  OpenWriters& open_writers() override { return state_->open_writers; }
  FsyncCopies& fsync_copies() override { return state_->fsync_copies; }

 private:
  // fuse_ino_t of a root-relative path the kernel knows, if any.
  std::optional<fuse_ino_t> KnownId(const std::string& relative_path);

  const MountOptions options_;
  const std::unique_ptr<FsState> state_;

  // Guards session_ (its existence, not its use by the loop) and running_.
  // Taken before InodeTable::mu_ (InvalidatePath). Held across a FUSE round
  // trip only by Exit() and InvalidatePath(), and only while the loop runs:
  // the workers that answer never take it.
  std::mutex mu_;
  std::condition_variable loop_done_;
  fuse_session* session_ = nullptr;
  bool running_ = false;
};

absl::Status FuseMount::Start() {
  std::vector<std::string> argv = {
      "replifs", "-o",
      absl::StrCat("allow_other,default_permissions,fsname=",
                   EscapeOption(options_.fsname.empty() ? options_.mountpoint : options_.fsname),
                   ",subtype=", EscapeOption(options_.subtype))};
  if (options_.debug) argv.push_back("-d");
  std::vector<char*> cargv;
  for (std::string& arg : argv) cargv.push_back(arg.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(cargv.size()), cargv.data());
  const fuse_lowlevel_ops& ops = PassthroughOps();
  session_ = fuse_session_new(&args, &ops, sizeof(ops), state_.get());
  fuse_opt_free_args(&args);
  if (session_ == nullptr) {
    return absl::InvalidArgumentError("fuse_session_new failed (bad mount options?)");
  }
  state_->session = session_;
  errno = 0;
  if (fuse_session_mount(session_, options_.mountpoint.c_str()) != 0) {
    int err = errno;
    fuse_session_destroy(session_);
    session_ = nullptr;
    return absl::InternalError(
        absl::StrCat("mount failed: ", options_.mountpoint,
                     err != 0 ? absl::StrCat(": ", strerror(err)) : std::string()));
  }
  return absl::OkStatus();
}

absl::Status FuseMount::Run() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (session_ == nullptr) return absl::FailedPreconditionError("not mounted");
    if (running_) return absl::FailedPreconditionError("already running");
    running_ = true;
    state_->exit_requested = false;
  }
  fuse_loop_config* config = fuse_loop_cfg_create();
  if (options_.worker_threads > 0) {
    fuse_loop_cfg_set_max_threads(config, options_.worker_threads);
  }
  fuse_loop_cfg_set_clone_fd(config, 0);
  int res = fuse_session_loop_mt(session_, config);
  fuse_loop_cfg_destroy(config);
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_ = false;
  }
  loop_done_.notify_all();
  if (res != 0) {
    return absl::InternalError(
        absl::StrCat("fuse session loop failed: ", strerror(res < 0 ? -res : res)));
  }
  return absl::OkStatus();
}

void FuseMount::Exit() {
  std::lock_guard<std::mutex> lock(mu_);
  if (session_ == nullptr) return;
  if (!running_) {
    fuse_session_exit(session_);
    return;
  }
  // Workers sleep in read(/dev/fuse): wake one with a request that always
  // reaches the daemon (statfs is never cached); its handler ends the loop.
  state_->exit_requested = true;
  struct statfs sfs;
  statfs(options_.mountpoint.c_str(), &sfs);
}

void FuseMount::Unmount() {
  std::unique_lock<std::mutex> lock(mu_);
  if (session_ == nullptr) return;
  if (running_) {
    // Unmounting kills the superblock, which aborts the connection: the
    // workers read ENODEV and Run() returns. With files still open we can
    // only detach; then the loop serves them until they are closed.
    if (umount2(options_.mountpoint.c_str(), 0) != 0 && errno == EBUSY) {
      umount2(options_.mountpoint.c_str(), MNT_DETACH);
    }
    loop_done_.wait(lock, [this] { return !running_; });
  }
  // Unmounts if still mounted (never ran, or Exit()); skips it if the
  // connection is already gone.
  fuse_session_unmount(session_);
  fuse_session_destroy(session_);
  session_ = nullptr;
}

std::optional<fuse_ino_t> FuseMount::KnownId(const std::string& relative_path) {
  if (relative_path.empty()) return FUSE_ROOT_ID;
  struct stat st;
  if (fstatat(state_->root_fd, relative_path.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return std::nullopt;
  }
  return state_->inodes.IdIfKnown(st.st_ino, st.st_dev);
}

void FuseMount::InvalidatePath(const std::string& relative_path) {
  std::lock_guard<std::mutex> lock(mu_);
  // Invalidation may write back dirty pages, which needs a serving loop.
  if (session_ == nullptr || !running_) return;
  if (auto id = KnownId(relative_path)) {
    fuse_lowlevel_notify_inval_inode(session_, *id, 0, 0);
  }
  if (relative_path.empty()) return;
  // The entry goes too: the name may now point elsewhere or nowhere.
  size_t slash = relative_path.rfind('/');
  std::string parent = slash == std::string::npos ? std::string() : relative_path.substr(0, slash);
  std::string name = slash == std::string::npos ? relative_path : relative_path.substr(slash + 1);
  if (auto parent_id = KnownId(parent)) {
    fuse_lowlevel_notify_inval_entry(session_, *parent_id, name.data(), name.size());
    // A name added or removed underneath moved the directory's mtime too:
    // drop its cached attributes (a negative offset keeps its pages).
    fuse_lowlevel_notify_inval_inode(session_, *parent_id, -1, 0);
  }
}

}  // namespace

// FUSE's bdi reads ahead 128 KiB, which libfuse's max_readahead cannot
// raise; sequential reads then arrive as 128 KiB READs. The INIT reply
// lowers the bdi's value to what the kernel offered at mount time, so this
// runs from the first lookup/getattr, which the kernel sends only after
// INIT is done. Best effort: a failure only costs speed.
void ApplyReadAheadOnce(FsState& fs) {
  if (!fs.read_ahead_pending.exchange(false)) return;
  std::optional<std::string> device = MountDeviceOf(fs.mountpoint);
  std::ofstream bdi;
  if (device) bdi.open("/sys/class/bdi/" + *device + "/read_ahead_kb");
  if (bdi) bdi << fs.read_ahead_kb << "\n" << std::flush;
  // Not there yet (mountinfo not updated, or the write failed): the next
  // request tries again.
  if (!device || !bdi) fs.read_ahead_pending = true;
}

absl::StatusOr<std::unique_ptr<PassthroughFs>> PassthroughFs::Mount(const MountOptions& options,
                                                                    EventSink* sink) {
  if (options.mountpoint.empty() || options.mountpoint[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("mountpoint must be an absolute path: '", options.mountpoint, "'"));
  }
  struct stat st;
  if (options.backing_root_fd < 0 || fstat(options.backing_root_fd, &st) != 0 ||
      !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        "backing_root_fd must be an open fd of the backing directory");
  }
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("/dev/fuse not available: ", strerror(errno)));
  }
  std::optional<std::string> prefix = EventReporter::ReadFdPath(options.backing_root_fd);
  if (!prefix) {
    return absl::InternalError(
        absl::StrCat("cannot read the backing directory's path: ", strerror(errno)));
  }
  // Modes arrive already masked by the caller's umask; the daemon's own umask
  // must not mask them again. Process-wide: the daemon is a dedicated process.
  umask(0);
  // One pinned fd per looked-up inode (up to a budget): take every fd the
  // hard limit allows. Best effort; the budget follows what was granted.
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  auto state =
      std::make_unique<FsState>(options.backing_root_fd, *prefix, sink, options.max_pinned_fds);
  state->entry_timeout = options.cache_timeout;
  state->attr_timeout = options.cache_timeout;
  state->keep_cache = options.cache_timeout > 0;
  state->writeback_cache = options.writeback_cache;
  state->mountpoint = options.mountpoint;
  state->read_ahead_kb = options.read_ahead_kb;
  state->read_ahead_pending = options.read_ahead_kb > 0;
  auto fs = std::make_unique<FuseMount>(options, std::move(state));
  if (absl::Status status = fs->Start(); !status.ok()) return status;
  return fs;
}

}  // namespace replifs::fusefs

#include "cli/shim_capture.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kmod-shim/reader/fanotify_backstop.h"
#include "kmod-shim/reader/fs_path.h"
#include "kmod-shim/reader/module_shim.h"
#include "kmod-shim/reader/shim_record.h"
#include "replicator/telemetry/log.h"
#ifdef REPLIFS_HAVE_BPF_SHIM
#include "kmod-shim/bpf/bpf_shim.h"
#endif

namespace replifs::cli {
namespace {

// A fanotify event for a file the shim reported for the same process this
// recently is the same change: not re-read twice.
constexpr auto kSeenWindow = std::chrono::milliseconds(200);

uint64_t SeenKey(uint64_t ino, uint32_t tgid) { return ino * 1000003u ^ tgid; }

}  // namespace

struct ShimCapture::Impl {
  shim::ShimKind kind = shim::ShimKind::kOff;
#ifdef REPLIFS_HAVE_BPF_SHIM
  std::unique_ptr<shim::BpfShim> bpf;
#endif
  std::unique_ptr<shim::ModuleShim> module;
  std::unique_ptr<shim::FanotifyBackstop> fanotify;
  shim::RootFsPaths roots;
  shim::OutsideResolver resolver;
  int root_dir_fd = -1;  // a real (not O_PATH) descriptor on the protected directory, for file handles
  uint64_t named_late = 0;  // records the kernel could not name, named here from the writer's descriptor
  uint64_t dropped_seen = 0, unresolved_seen = 0, fan_overflows_seen = 0, fan_unresolved_seen = 0;
  std::mutex seen_mutex;
  std::unordered_map<uint64_t, std::chrono::steady_clock::time_point> seen;  // (ino, tgid) -> last shim report
};

std::vector<std::string> ShimCapture::layers() const {
  std::vector<std::string> out = {shim::ShimKindName(impl_->kind)};
  if (impl_->fanotify) out.push_back("fanotify");
  return out;
}

uint64_t ShimCapture::vma_busy() const {
#ifdef REPLIFS_HAVE_BPF_SHIM
  if (impl_->bpf) return impl_->bpf->vma_busy();
#endif
  return 0;  // the module looks mappings up under the mmap lock: never busy
}

void ShimCapture::Emit(v1::ChangeEvent event) {
  const std::string path = event.path(), new_path = event.new_path();
  const bool is_rename_or_link = event.op() == v1::ChangeEvent::RENAME || event.op() == v1::ChangeEvent::LINK;
  {
    std::lock_guard<std::mutex> lock(sink_mutex_);
    sink_->OnChange(std::move(event));
  }
  ++events_;
  if (fusefs::PassthroughFs* fs = overlay_.load()) {
    fs->InvalidatePath(path);
    if (is_rename_or_link) fs->InvalidatePath(new_path);
  }
}

void ShimCapture::RescanTree(const char* why, uint64_t count) {
  telemetry::LogWarn("shim", "changes cannot be named; rescanning the tree", {{"why", why}, {"count", count}});
  v1::ChangeEvent rescan;
  rescan.set_op(v1::ChangeEvent::RESCAN);
  rescan.set_source(v1::ChangeEvent::SHIM);
  std::lock_guard<std::mutex> lock(sink_mutex_);
  sink_->OnChange(std::move(rescan));
}

bool ShimCapture::SeenRecently(uint64_t ino, uint32_t tgid) {
  std::lock_guard<std::mutex> lock(impl_->seen_mutex);
  auto it = impl_->seen.find(SeenKey(ino, tgid));
  return it != impl_->seen.end() && std::chrono::steady_clock::now() - it->second < kSeenWindow;
}

// A file deeper than the kernel's bounded walk: the writer's descriptor on
// it (the record carries device and inode) still names it, so one file is
// re-read instead of the whole tree and no chunk map is distrusted.
// By-name calls (no inode) and files no longer open stay a tree rescan.
void ShimCapture::NameFromDescriptor(shim::ShimRecord* record) {
  const replifs_shim_event& h = record->header;
  if (h.ino == 0) return;
  std::optional<std::string> path =
      shim::PathOfOpenFile(h.tgid, makedev(h.dev_major, h.dev_minor), h.ino, impl_->root_dir_fd);
  if (!path) return;
  record->path = *path;
  record->path_outside = false;
  record->unresolved = false;
  ++impl_->named_late;
}

void ShimCapture::OnRecords(const void* data, size_t size, bool one_record) {
  absl::StatusOr<std::vector<shim::ShimRecord>> records;
  if (one_record) {
    absl::StatusOr<shim::ShimRecord> record = shim::ParseRecord(data, size, impl_->roots, impl_->resolver);
    if (record.ok()) records = std::vector<shim::ShimRecord>{*std::move(record)};
    else records = record.status();
  } else {
    records = shim::ParseRecords(data, size, impl_->roots);
  }
  if (!records.ok()) {
    // A record we cannot read is a change we cannot name: rescan.
    telemetry::LogWarn("shim", "unreadable record", {{"error", records.status()}});
    ++untracked_;
    RescanTree("unreadable record", 1);
    return;
  }
  for (shim::ShimRecord& record : *records) {
    if (record.unresolved) NameFromDescriptor(&record);
    if (record.unresolved) ++untracked_;  // ToChangeEvents makes it a rescan of the tree
    if (record.header.ino != 0) {
      std::lock_guard<std::mutex> lock(impl_->seen_mutex);
      if (impl_->seen.size() > 65536) impl_->seen.clear();
      impl_->seen[SeenKey(record.header.ino, record.header.tgid)] = std::chrono::steady_clock::now();
    }
    const uint32_t sc = record.header.syscall;
    if (impl_->fanotify && (sc == REPLIFS_SYS_RENAME || sc == REPLIFS_SYS_RENAMEAT || sc == REPLIFS_SYS_RENAMEAT2 ||
                            sc == REPLIFS_SYS_LINK || sc == REPLIFS_SYS_LINKAT)) {
      impl_->fanotify->ForgetVerdicts();  // a file may have come into the tree (even across its edge)
    }
    for (v1::ChangeEvent& event : shim::ToChangeEvents(record)) Emit(std::move(event));
  }
}

absl::StatusOr<std::unique_ptr<ShimCapture>> ShimCapture::Start(int root_fd, const std::string& mountpoint,
                                                                 fusefs::EventSink* sink) {
  const shim::ShimKind kind = shim::ChooseShim(getenv("REPLIFS_SHIM"));
  if (kind == shim::ShimKind::kOff) return absl::UnavailableError("switched off (REPLIFS_SHIM=off)");
  struct stat st;
  if (fstat(root_fd, &st) != 0) return absl::InternalError(absl::StrCat("fstat ", mountpoint, ": ", strerror(errno)));
  absl::StatusOr<std::string> fs_path = shim::PathInFilesystem(mountpoint);
  if (!fs_path.ok()) return fs_path.status();
  replifs_shim_config config{};
  config.daemon_tgid = getpid();  // the overlay's own I/O is journaled already
  config.nroots = 1;
  config.roots[0] = {major(st.st_dev), minor(st.st_dev), st.st_ino};

  std::unique_ptr<ShimCapture> capture(new ShimCapture());
  capture->impl_ = std::make_unique<Impl>();
  Impl& impl = *capture->impl_;
  impl.kind = kind;
  impl.roots = {*fs_path};
  const uint64_t root_dev = st.st_dev, root_ino = st.st_ino;
  impl.root_dir_fd = open(absl::StrCat("/proc/self/fd/", root_fd).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  impl.resolver = [root_dev, root_ino](uint32_t tgid, const std::string& name, bool absolute) {
    return shim::ResolveInProcess(tgid, name, absolute, root_dev, root_ino);
  };
  capture->sink_ = sink;
  ShimCapture* self = capture.get();
  if (kind == shim::ShimKind::kModule) {
    auto module = shim::ModuleShim::Start(
        config, [self](const void* data, size_t size) { self->OnRecords(data, size, /*one_record=*/false); });
    if (!module.ok()) return module.status();
    impl.module = *std::move(module);
  } else {
#ifdef REPLIFS_HAVE_BPF_SHIM
    auto bpf = shim::BpfShim::Start(
        config, [self](const void* data, size_t size) { self->OnRecords(data, size, /*one_record=*/true); });
    if (!bpf.ok()) return bpf.status();
    impl.bpf = *std::move(bpf);
#else
    return absl::UnimplementedError("this replifs was built without the eBPF shim (clang, bpftool, libbpf-dev)");
#endif
  }
  // The backstop is best effort on top of the hooks: without it, what they
  // cannot see (io_uring, aio, reflink) waits for the next rescan.
  auto fanotify = shim::FanotifyBackstop::Start(
      root_fd, getpid(),
      [self](const std::string& path, uint64_t ino, uint32_t) {
        v1::ChangeEvent e;
        e.set_op(v1::ChangeEvent::RESCAN);  // what changed is unknown: re-read the file
        e.set_source(v1::ChangeEvent::SHIM);
        e.set_path(path);
        e.set_inode(ino);
        self->Emit(std::move(e));
      },
      [self](uint64_t ino, uint32_t tgid) { return self->SeenRecently(ino, tgid); });
  if (fanotify.ok()) {
    impl.fanotify = *std::move(fanotify);
  } else {
    telemetry::LogWarn("shim", "fanotify backstop not active", {{"error", fanotify.status()}});
  }
  capture->shim_thread_ = std::thread([self] { self->RunShim(); });
  if (impl.fanotify) capture->fanotify_thread_ = std::thread([self] { self->RunFanotify(); });
  return capture;
}

void ShimCapture::RunShim() {
  while (!stopping_) {
    absl::Status s;
    uint64_t dropped = 0, unresolved = 0;
#ifdef REPLIFS_HAVE_BPF_SHIM
    if (impl_->bpf) {
      s = impl_->bpf->Poll(100);
      dropped = impl_->bpf->dropped();
      unresolved = impl_->bpf->unresolved();
    }
#endif
    if (impl_->module) {
      s = impl_->module->Poll(100);
      dropped = impl_->module->dropped();
    }
    if (!s.ok()) telemetry::LogWarn("shim", "poll failed", {{"error", s}});
    if (dropped != impl_->dropped_seen) {
      // The queue was full: some change is unknown (the next record is flagged too).
      dropped_ += dropped - impl_->dropped_seen;
      RescanTree("records lost", dropped - impl_->dropped_seen);
      impl_->dropped_seen = dropped;
    }
    if (unresolved != impl_->unresolved_seen) {
      // Calls the programs saw but could not track (no per-thread slot, spill table full).
      untracked_ += unresolved - impl_->unresolved_seen;
      RescanTree("calls could not be named", unresolved - impl_->unresolved_seen);
      impl_->unresolved_seen = unresolved;
    }
  }
}

void ShimCapture::RunFanotify() {
  shim::FanotifyBackstop& fan = *impl_->fanotify;
  while (!stopping_) {
    if (absl::Status s = fan.Poll(100); !s.ok()) telemetry::LogWarn("shim", "fanotify poll failed", {{"error", s}});
    if (fan.overflows() != impl_->fan_overflows_seen) {
      dropped_ += fan.overflows() - impl_->fan_overflows_seen;
      RescanTree("fanotify overflows", fan.overflows() - impl_->fan_overflows_seen);
      impl_->fan_overflows_seen = fan.overflows();
    }
    if (fan.unresolved() != impl_->fan_unresolved_seen) {
      untracked_ += fan.unresolved() - impl_->fan_unresolved_seen;
      RescanTree("fanotify events could not be named", fan.unresolved() - impl_->fan_unresolved_seen);
      impl_->fan_unresolved_seen = fan.unresolved();
    }
  }
}

ShimCapture::~ShimCapture() {
  stopping_ = true;
  if (shim_thread_.joinable()) shim_thread_.join();
  if (fanotify_thread_.joinable()) fanotify_thread_.join();
  if (!impl_) return;
  if (impl_->root_dir_fd >= 0) close(impl_->root_dir_fd);
#ifdef REPLIFS_HAVE_BPF_SHIM
  if (impl_->bpf) (void)impl_->bpf->Poll(0);  // what arrived before the detach
#endif
  impl_->module.reset();  // protection off, then what was queued
}

}  // namespace replifs::cli

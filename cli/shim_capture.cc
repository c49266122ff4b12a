#include "cli/shim_capture.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "kmod-shim/reader/fs_path.h"
#include "kmod-shim/reader/shim_record.h"
#ifdef REPLIFS_HAVE_BPF_SHIM
#include "kmod-shim/bpf/bpf_shim.h"
#endif

namespace replifs::cli {

#ifdef REPLIFS_HAVE_BPF_SHIM

struct ShimCapture::Impl {
  std::unique_ptr<shim::BpfShim> bpf;
  shim::RootFsPaths roots;
  shim::OutsideResolver resolver;
  uint64_t dropped_seen = 0;
};

absl::StatusOr<std::unique_ptr<ShimCapture>> ShimCapture::Start(int root_fd, const std::string& mountpoint,
                                                                 fusefs::EventSink* sink) {
  if (const char* env = getenv("REPLIFS_SHIM"); env != nullptr && strcmp(env, "off") == 0) {
    return absl::UnavailableError("switched off (REPLIFS_SHIM=off)");
  }
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
  capture->impl_->roots = {*fs_path};
  const uint64_t root_dev = st.st_dev, root_ino = st.st_ino;
  capture->impl_->resolver = [root_dev, root_ino](uint32_t tgid, const std::string& name, bool absolute) {
    return shim::ResolveInProcess(tgid, name, absolute, root_dev, root_ino);
  };
  capture->sink_ = sink;
  ShimCapture* self = capture.get();
  auto bpf = shim::BpfShim::Start(config, [self](const void* data, size_t size) {
    absl::StatusOr<shim::ShimRecord> record = shim::ParseRecord(data, size, self->impl_->roots, self->impl_->resolver);
    if (!record.ok()) {
      // A record we cannot read is a change we cannot name: rescan.
      std::cerr << "replifs: shim: " << record.status() << std::endl;
      v1::ChangeEvent rescan;
      rescan.set_op(v1::ChangeEvent::RESCAN);
      rescan.set_source(v1::ChangeEvent::SHIM);
      self->sink_->OnChange(std::move(rescan));
      return;
    }
    for (v1::ChangeEvent& event : shim::ToChangeEvents(*record)) {
      const std::string path = event.path(), new_path = event.new_path();
      const bool is_rename_or_link = event.op() == v1::ChangeEvent::RENAME || event.op() == v1::ChangeEvent::LINK;
      self->sink_->OnChange(std::move(event));
      ++self->events_;
      if (fusefs::PassthroughFs* fs = self->overlay_.load()) {
        fs->InvalidatePath(path);
        if (is_rename_or_link) fs->InvalidatePath(new_path);
      }
    }
  });
  if (!bpf.ok()) return bpf.status();
  capture->impl_->bpf = *std::move(bpf);
  capture->thread_ = std::thread([self] { self->Run(); });
  return capture;
}

void ShimCapture::Run() {
  while (!stopping_) {
    if (absl::Status s = impl_->bpf->Poll(100); !s.ok()) std::cerr << "replifs: shim: " << s << std::endl;
    const uint64_t dropped = impl_->bpf->dropped();
    if (dropped != impl_->dropped_seen) {
      // The ring buffer was full: some change is unknown. The whole tree is
      // compared with the server (the next delivered record is flagged too).
      std::cerr << "replifs: shim: " << dropped - impl_->dropped_seen << " records lost; rescanning the tree"
                << std::endl;
      impl_->dropped_seen = dropped;
      dropped_ = dropped;
      v1::ChangeEvent rescan;
      rescan.set_op(v1::ChangeEvent::RESCAN);
      rescan.set_source(v1::ChangeEvent::SHIM);
      sink_->OnChange(std::move(rescan));
    }
  }
}

ShimCapture::~ShimCapture() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  if (impl_ && impl_->bpf) (void)impl_->bpf->Poll(0);  // what arrived before the detach
}

#else

struct ShimCapture::Impl {};

absl::StatusOr<std::unique_ptr<ShimCapture>> ShimCapture::Start(int, const std::string&, fusefs::EventSink*) {
  return absl::UnimplementedError("this replifs was built without the eBPF shim (clang, bpftool, libbpf-dev)");
}
void ShimCapture::Run() {}
ShimCapture::~ShimCapture() = default;

#endif

}  // namespace replifs::cli

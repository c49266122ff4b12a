#include "kmod-shim/bpf/bpf_shim.h"

#include <bpf/libbpf.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "replifs_shim.skel.h"

namespace replifs::shim {

struct BpfShim::State {
  replifs_shim_bpf* skel = nullptr;
  ring_buffer* ring = nullptr;
  std::vector<bpf_link*> links;
};

const std::vector<const char*>& ShimTracepoints() {
  static const std::vector<const char*> kNames = {
      "write", "pwrite64", "writev", "pwritev", "pwritev2", "ftruncate", "fallocate",
      "copy_file_range", "sendfile64", "splice", "truncate", "rename", "renameat", "renameat2",
      "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "link", "linkat", "symlink", "symlinkat",
      "chmod", "fchmodat", "chown", "lchown", "fchownat", "utimensat", "setxattr", "lsetxattr",
      "removexattr", "lremovexattr", "fchmod", "fchown", "fsetxattr", "fremovexattr", "open",
      "openat", "openat2", "creat", "close", "msync", "munmap"};
  return kNames;
}

namespace {

// Syscall tracepoints need tracefs (libbpf reads the event ids there).
absl::Status EnsureTracefs() {
  struct stat st;
  if (stat("/sys/kernel/tracing/events/syscalls", &st) == 0) return absl::OkStatus();
  if (mount("nodev", "/sys/kernel/tracing", "tracefs", 0, nullptr) != 0 && errno != EBUSY) {
    return absl::UnavailableError(absl::StrCat("cannot mount tracefs on /sys/kernel/tracing: ", strerror(errno)));
  }
  if (stat("/sys/kernel/tracing/events/syscalls", &st) != 0) {
    return absl::UnavailableError("no syscall tracepoints in tracefs (CONFIG_FTRACE_SYSCALLS off?)");
  }
  return absl::OkStatus();
}

int Silent(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_WARN && getenv("REPLIFS_SHIM_DEBUG") != nullptr) return vfprintf(stderr, format, args);
  return 0;
}

// Opens and loads the programs of one hook kind (the other kind's are not loaded).
replifs_shim_bpf* OpenAndLoad(bool raw) {
  replifs_shim_bpf* skel = replifs_shim_bpf__open();
  if (skel == nullptr) return nullptr;
  bpf_program__set_autoload(skel->progs.shim_raw_enter, raw);
  bpf_program__set_autoload(skel->progs.shim_raw_exit, raw);
  bpf_program__set_autoload(skel->progs.shim_enter, !raw);
  bpf_program__set_autoload(skel->progs.shim_exit, !raw);
  if (replifs_shim_bpf__load(skel) != 0) {
    const int err = errno;
    replifs_shim_bpf__destroy(skel);
    errno = err;
    return nullptr;
  }
  return skel;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpfShim>> BpfShim::Start(const replifs_shim_config& config, RecordFn on_record) {
  libbpf_set_print(Silent);
  std::unique_ptr<BpfShim> shim(new BpfShim());
  shim->state_ = std::make_unique<State>();
  shim->on_record_ = std::move(on_record);
  State& st = *shim->state_;
  // Raw sys_enter/sys_exit (tp_btf) are the cheaper hooks; the per-syscall
  // tracepoints are the fallback (and REPLIFS_SHIM_HOOKS=tracepoints).
  const char* want = getenv("REPLIFS_SHIM_HOOKS");
  shim->raw_ = want == nullptr || std::strcmp(want, "tracepoints") != 0;
  if (shim->raw_) {
    st.skel = OpenAndLoad(/*raw=*/true);
    if (st.skel == nullptr) shim->raw_ = false;
  }
  if (!shim->raw_) {
    if (absl::Status s = EnsureTracefs(); !s.ok()) return s;
    st.skel = OpenAndLoad(/*raw=*/false);
  }
  if (st.skel == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot load the eBPF shim: ", strerror(errno)));
  }
  uint32_t zero = 0;
  if (bpf_map__update_elem(st.skel->maps.shim_config, &zero, sizeof(zero), &config, sizeof(config), BPF_ANY) != 0) {
    return absl::InternalError(absl::StrCat("cannot configure the eBPF shim: ", strerror(errno)));
  }
  for (uint32_t i = 0; i < config.nroots && i < REPLIFS_SHIM_MAX_ROOTS; ++i) {
    struct {
      uint32_t dev_major, dev_minor;
      uint64_t ino;
    } key = {config.roots[i].dev_major, config.roots[i].dev_minor, config.roots[i].ino};
    if (bpf_map__update_elem(st.skel->maps.shim_roots, &key, sizeof(key), &i, sizeof(i), BPF_ANY) != 0) {
      return absl::InternalError(absl::StrCat("cannot configure the eBPF shim's roots: ", strerror(errno)));
    }
    key.ino = 0;
    (void)bpf_map__update_elem(st.skel->maps.shim_devs, &key, sizeof(key), &i, sizeof(i), BPF_NOEXIST);
  }
  if (shim->raw_) {
    for (bpf_program* prog : {st.skel->progs.shim_raw_enter, st.skel->progs.shim_raw_exit}) {
      bpf_link* link = bpf_program__attach(prog);
      if (link == nullptr) {
        return absl::UnavailableError(
            absl::StrCat("cannot attach ", bpf_program__name(prog), " (raw sys_enter/sys_exit): ", strerror(errno)));
      }
      st.links.push_back(link);
    }
  }
  for (const char* name : shim->raw_ ? std::vector<const char*>{} : ShimTracepoints()) {
    const std::string enter = absl::StrCat("sys_enter_", name), exit = absl::StrCat("sys_exit_", name);
    bpf_link* link = bpf_program__attach_tracepoint(st.skel->progs.shim_enter, "syscalls", enter.c_str());
    if (link == nullptr) return absl::UnavailableError(absl::StrCat("cannot attach to ", enter, ": ", strerror(errno)));
    st.links.push_back(link);
    if (std::strcmp(name, "close") == 0 || std::strcmp(name, "msync") == 0 || std::strcmp(name, "munmap") == 0) {
      continue;  // decided at entry
    }
    link = bpf_program__attach_tracepoint(st.skel->progs.shim_exit, "syscalls", exit.c_str());
    if (link == nullptr) return absl::UnavailableError(absl::StrCat("cannot attach to ", exit, ": ", strerror(errno)));
    st.links.push_back(link);
  }
  shim->attached_ = static_cast<int>(st.links.size());
  st.ring = ring_buffer__new(
      bpf_map__fd(st.skel->maps.events),
      [](void* ctx, void* data, size_t size) {
        static_cast<BpfShim*>(ctx)->on_record_(data, size);
        return 0;
      },
      shim.get(), nullptr);
  if (st.ring == nullptr) return absl::InternalError(absl::StrCat("cannot open the shim ring buffer: ", strerror(errno)));
  return shim;
}

BpfShim::~BpfShim() {
  if (!state_) return;
  for (bpf_link* link : state_->links) bpf_link__destroy(link);
  if (state_->ring) ring_buffer__free(state_->ring);
  if (state_->skel) replifs_shim_bpf__destroy(state_->skel);
}

absl::Status BpfShim::Poll(int timeout_ms) {
  // The programs wake the reader at most every 2 ms (replifs_shim.bpf.c,
  // wakeup_flag): records sent in between are read after at most 20 ms.
  constexpr int kMaxWaitMs = 20;
  int n = ring_buffer__poll(state_->ring, std::min(timeout_ms, kMaxWaitMs));
  if (n >= 0) n = ring_buffer__consume(state_->ring);
  if (n < 0 && n != -EINTR) return absl::InternalError(absl::StrCat("shim ring buffer: ", strerror(-n)));
  return absl::OkStatus();
}

uint64_t BpfShim::dropped() const { return __atomic_load_n(&state_->skel->bss->dropped, __ATOMIC_RELAXED); }
uint64_t BpfShim::sent() const { return __atomic_load_n(&state_->skel->bss->sent, __ATOMIC_RELAXED); }
uint64_t BpfShim::untracked() const { return __atomic_load_n(&state_->skel->bss->saved_full, __ATOMIC_RELAXED); }
uint64_t BpfShim::vma_busy() const { return __atomic_load_n(&state_->skel->bss->vma_busy, __ATOMIC_RELAXED); }
uint64_t BpfShim::unresolved() const { return __atomic_load_n(&state_->skel->bss->unresolved, __ATOMIC_RELAXED); }

}  // namespace replifs::shim

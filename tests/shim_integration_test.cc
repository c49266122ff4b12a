// The kernel shim (eBPF) with a real server and a real mount: writes that
// bypass the overlay (an fd opened before the mount, a bind mount of the
// backing directory made before protection, another mount namespace) reach
// the server, and writes through the mount are not sent twice.
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <algorithm>
#include <cstring>
#include <regex>
#include <string>
#include <thread>

#include "kmod-shim/include/replifs_shim.h"
#include "tests/binaries_from_build.h"
#include "tests/harness.h"

namespace replifs::test {
namespace {

struct CaptureStatus {
  bool ebpf = false;
  bool fanotify = false;
  long long shim_changes = -1;
  long long shim_lost = -1;
  long long shim_untracked = -1;
  long long shim_vma_busy = -1;
  bool rescanned = false;
};

// Parses "capture layers: overlay, ebpf (shim: N changes, M lost...)".
CaptureStatus ParseCapture(const std::string& status_out) {
  CaptureStatus out;
  std::smatch m;
  if (std::regex_search(status_out, m, std::regex("capture layers: ([^\\n(]*)"))) {
    out.ebpf = m[1].str().find("ebpf") != std::string::npos;
    out.fanotify = m[1].str().find("fanotify") != std::string::npos;
  }
  if (std::regex_search(status_out, m, std::regex("shim: ([0-9]+) changes, ([0-9]+) lost, ([0-9]+) untracked"))) {
    out.shim_changes = std::stoll(m[1].str());
    out.shim_lost = std::stoll(m[2].str());
    out.shim_untracked = std::stoll(m[3].str());
  }
  if (std::regex_search(status_out, m, std::regex("([0-9]+) mapping flushes left to fanotify"))) {
    out.shim_vma_busy = std::stoll(m[1].str());
  }
  out.rescanned = status_out.find("tree rescanned") != std::string::npos;
  return out;
}

class ShimTest : public ReplifsTest {
 protected:
  CaptureStatus Capture() {
    RunResult status = Status();
    EXPECT_TRUE(Succeeded(status));
    return ParseCapture(status.out);
  }
  // Waits until the shim has reported at least `n` changes (they arrive
  // asynchronously through the ring buffer).
  CaptureStatus WaitShimChanges(long long n) {
    CaptureStatus c;
    for (int i = 0; i < 100; ++i) {
      c = Capture();
      if (c.shim_changes >= n) break;
      usleep(100 * 1000);
    }
    return c;
  }
};

int Shell(const std::string& command) {
  RunResult r = RunProcess({"/bin/sh", "-c", command}, 60);
  if (r.exit_code != 0) ADD_FAILURE() << r.Describe();
  return r.exit_code;
}

TEST_F(ShimTest, WritesBypassingTheOverlayReachTheServer) {
  // Before protection: a descriptor kept open, and a bind mount of the tree.
  const std::string bind = FreshPath("bind");
  ASSERT_EQ(mkdir(bind.c_str(), 0755), 0);
  ASSERT_EQ(mount(prot_.c_str(), bind.c_str(), nullptr, MS_BIND, nullptr), 0) << strerror(errno);
  int early_fd = open(P("kept_open.bin").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(early_fd, 0) << strerror(errno);
  ASSERT_EQ(pwrite(early_fd, "0123456789", 10, 0), 10);

  ASSERT_TRUE(MountOk());
  CaptureStatus before = Capture();
  ASSERT_TRUE(before.ebpf) << "the eBPF shim is not active: see the daemon's log (`capture layers` in status)";
  ASSERT_TRUE(Succeeded(Sync()));
  // The overlay caches this file's pages from here on.
  EXPECT_TRUE(FileContentIs(P("kept_open.bin"), "0123456789"));

  // 1. The fd opened before the mount writes to the backing file directly.
  ASSERT_EQ(pwrite(early_fd, "ABC", 3, 4), 3);
  ASSERT_EQ(write(early_fd, "tail", 4), 4);  // at this fd's f_pos: 0 (pwrite does not move it)
  close(early_fd);
  // 2. The bind mount made before protection.
  WriteFile(bind + "/via_bind.txt", "written through a bind mount\n");
  ASSERT_EQ(mkdir((bind + "/bind_dir").c_str(), 0755), 0);
  ASSERT_EQ(rename((bind + "/via_bind.txt").c_str(), (bind + "/bind_dir/moved.txt").c_str()), 0);
  ASSERT_EQ(truncate((bind + "/bind_dir/moved.txt").c_str(), 7), 0);
  // 3. Another mount namespace, where the overlay is not mounted at all.
  ASSERT_EQ(Shell("unshare -m sh -c 'umount -l " + prot_ + " && echo from another namespace > " + prot_ +
                  "/from_ns.txt && cd " + prot_ + " && mkdir ns_dir && mv from_ns.txt ns_dir/ && ln -s ns_dir ns_link'"),
            0);

  CaptureStatus after = WaitShimChanges(before.shim_changes + 10);
  EXPECT_GE(after.shim_changes, before.shim_changes + 10) << "the shim did not report the bypassing writes";
  EXPECT_EQ(after.shim_lost, 0);

  // The overlay shows the new bytes (the shim invalidated its cache).
  EXPECT_TRUE(FileContentIs(P("kept_open.bin"), "tailABC789"));
  EXPECT_TRUE(FileContentIs(P("bind_dir/moved.txt"), "written"));
  EXPECT_TRUE(FileContentIs(P("ns_dir/from_ns.txt"), "from another namespace\n"));

  ASSERT_TRUE(Succeeded(Sync()));
  RunResult verify = Verify();
  EXPECT_TRUE(Succeeded(verify))
      << "server and tree differ after writes that bypassed the overlay: " << verify.Describe();
  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest)));
  EXPECT_TRUE(FileContentIs(dest + "/kept_open.bin", "tailABC789"));
  EXPECT_TRUE(FileContentIs(dest + "/bind_dir/moved.txt", "written"));
  EXPECT_TRUE(FileContentIs(dest + "/ns_dir/from_ns.txt", "from another namespace\n"));
  struct stat st;
  EXPECT_EQ(lstat((dest + "/ns_link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_NE(access((dest + "/via_bind.txt").c_str(), F_OK), 0) << "the renamed file's old name was restored";
  umount2(bind.c_str(), MNT_DETACH);
}

TEST_F(ShimTest, NamesRelativeToADirectoryOutsideTheTreeReachTheServer) {
  // Before protection: a private bind mount of the tree's parent (the
  // overlay's mount does not appear in it), so "<leaf>/..." under it is the
  // backing tree, named relative to a descriptor of a directory outside the
  // tree. This process's cwd is elsewhere: resolving from it loses the call.
  const std::string parent = prot_.substr(0, prot_.rfind('/'));
  const std::string leaf = prot_.substr(prot_.rfind('/') + 1);
  const std::string bind = FreshPath("parent_bind");
  ASSERT_EQ(mkdir(bind.c_str(), 0755), 0);
  ASSERT_EQ(mount(parent.c_str(), bind.c_str(), nullptr, MS_BIND, nullptr), 0) << strerror(errno);
  ASSERT_EQ(mount(nullptr, bind.c_str(), nullptr, MS_PRIVATE, nullptr), 0) << strerror(errno);
  WriteFile(prot_ + "/victim", "to be removed by name\n");
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  CaptureStatus before = Capture();
  ASSERT_TRUE(before.ebpf);

  const int dirfd = open(bind.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dirfd, 0) << strerror(errno);
  EXPECT_EQ(unlinkat(dirfd, (leaf + "/victim").c_str(), 0), 0) << strerror(errno);
  EXPECT_EQ(mkdirat(dirfd, (leaf + "/made_by_dirfd").c_str(), 0755), 0) << strerror(errno);
  close(dirfd);
  WaitShimChanges(before.shim_changes + 2);
  ASSERT_TRUE(Succeeded(Sync()));

  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest)));
  EXPECT_NE(access((dest + "/victim").c_str(), F_OK), 0) << "the unlink by a dirfd-relative name was lost";
  struct stat st;
  EXPECT_EQ(stat((dest + "/made_by_dirfd").c_str(), &st), 0) << "the mkdir by a dirfd-relative name was lost";
  umount2(bind.c_str(), MNT_DETACH);
}

TEST_F(ShimTest, WritesThroughTheMountAreNotSentTwice) {
  const std::string bind = FreshPath("bind");
  ASSERT_EQ(mkdir(bind.c_str(), 0755), 0);
  ASSERT_EQ(mount(prot_.c_str(), bind.c_str(), nullptr, MS_BIND, nullptr), 0) << strerror(errno);
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  CaptureStatus before = Capture();
  ASSERT_TRUE(before.ebpf);

  // Through the overlay: the daemon's own writes to the backing tree are
  // filtered in the kernel, so the shim reports none of them.
  for (int i = 0; i < 20; ++i) WriteFile(P("through_mount_" + std::to_string(i)), std::string(1000, 'a' + i));
  ASSERT_EQ(mkdir(P("mount_dir").c_str(), 0755), 0);
  ASSERT_EQ(rename(P("through_mount_0").c_str(), P("mount_dir/renamed").c_str()), 0);
  ASSERT_TRUE(Succeeded(Sync()));
  usleep(500 * 1000);  // the ring buffer is read every 100 ms
  CaptureStatus after_overlay = Capture();
  EXPECT_EQ(after_overlay.shim_changes, before.shim_changes) << "writes through the mount were reported by the shim too";
  // A marker written around the overlay proves the shim was listening.
  WriteFile(bind + "/marker", "m");
  CaptureStatus after = WaitShimChanges(before.shim_changes + 1);
  EXPECT_GT(after.shim_changes, after_overlay.shim_changes) << "the marker was not reported";
  ASSERT_TRUE(Succeeded(Sync()));
  // Sent once, and whole. (Not `verify`: it reports mtime differences for
  // files written through the overlay even with the shim off, REPLIFS_SHIM=off;
  // that is the overlay's, see the issue note.)
  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest)));
  EXPECT_TRUE(FileContentIs(dest + "/through_mount_5", std::string(1000, 'a' + 5)));
  EXPECT_TRUE(FileContentIs(dest + "/mount_dir/renamed", std::string(1000, 'a')));
  EXPECT_TRUE(FileContentIs(dest + "/marker", "m"));
  umount2(bind.c_str(), MNT_DETACH);
}

// One Linux native aio write (io_submit): no syscall hook sees it.
bool AioWrite(int fd, const std::string& data, off_t offset) {
  aio_context_t ctx = 0;
  if (syscall(SYS_io_setup, 1, &ctx) != 0) return false;
  iocb cb{};
  cb.aio_fildes = fd;
  cb.aio_lio_opcode = IOCB_CMD_PWRITE;
  cb.aio_buf = reinterpret_cast<uint64_t>(data.data());
  cb.aio_nbytes = data.size();
  cb.aio_offset = offset;
  iocb* cbs[1] = {&cb};
  io_event ev{};
  bool ok = syscall(SYS_io_submit, ctx, 1, cbs) == 1 && syscall(SYS_io_getevents, ctx, 1, 1, &ev, nullptr) == 1 &&
            ev.res == static_cast<int64_t>(data.size());
  syscall(SYS_io_destroy, ctx);
  return ok;
}

// One io_uring write (raw syscalls, no liburing): no syscall hook sees it,
// and unlike aio its completion raises FAN_MODIFY.
bool IoUringWrite(int fd, const std::string& data, off_t offset) {
  io_uring_params p{};
  int ring = static_cast<int>(syscall(__NR_io_uring_setup, 4, &p));
  if (ring < 0) return false;
  const size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
  const size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
  const size_t ring_size = std::max(sq_size, cq_size);  // IORING_FEAT_SINGLE_MMAP (5.4+)
  auto* sq = static_cast<char*>(mmap(nullptr, ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ring,
                                     IORING_OFF_SQ_RING));
  auto* sqes = static_cast<io_uring_sqe*>(mmap(nullptr, p.sq_entries * sizeof(io_uring_sqe), PROT_READ | PROT_WRITE,
                                               MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES));
  bool ok = false;
  if (sq != MAP_FAILED && sqes != MAP_FAILED && (p.features & IORING_FEAT_SINGLE_MMAP)) {
    io_uring_sqe* sqe = &sqes[0];
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = IORING_OP_WRITE;
    sqe->fd = fd;
    sqe->addr = reinterpret_cast<uint64_t>(data.data());
    sqe->len = data.size();
    sqe->off = offset;
    auto* tail = reinterpret_cast<unsigned*>(sq + p.sq_off.tail);
    const unsigned mask = *reinterpret_cast<unsigned*>(sq + p.sq_off.ring_mask);
    reinterpret_cast<unsigned*>(sq + p.sq_off.array)[*tail & mask] = 0;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, nullptr, 0) == 1) {
      const unsigned head = __atomic_load_n(reinterpret_cast<unsigned*>(sq + p.cq_off.head), __ATOMIC_ACQUIRE);
      const unsigned cq_mask = *reinterpret_cast<unsigned*>(sq + p.cq_off.ring_mask);
      const auto* cqes = reinterpret_cast<const io_uring_cqe*>(sq + p.cq_off.cqes);
      ok = cqes[head & cq_mask].res == static_cast<int32_t>(data.size());
    }
  }
  if (sqes != MAP_FAILED) munmap(sqes, p.sq_entries * sizeof(io_uring_sqe));
  if (sq != MAP_FAILED) munmap(sq, ring_size);
  close(ring);
  return ok;
}

TEST_F(ShimTest, FanotifyCatchesAnIoUringWriteThroughAnOpenDescriptor) {
  int early_fd = open(P("uring.bin").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(early_fd, 0) << strerror(errno);
  ASSERT_EQ(pwrite(early_fd, std::string(8192, 'x').data(), 8192, 0), 8192);
  ASSERT_TRUE(MountOk());
  CaptureStatus before = Capture();
  ASSERT_TRUE(before.fanotify) << "the fanotify backstop is not active: see the daemon's log";
  ASSERT_TRUE(Succeeded(Sync()));

  // The descriptor stays open: only FAN_MODIFY from the completion names the file.
  ASSERT_TRUE(IoUringWrite(early_fd, std::string(4096, 'U'), 0)) << strerror(errno);
  CaptureStatus after = WaitShimChanges(before.shim_changes + 1);
  EXPECT_GT(after.shim_changes, before.shim_changes) << "nothing reported the io_uring write";
  ASSERT_TRUE(Succeeded(Sync()));
  RunResult verify = Verify();
  EXPECT_TRUE(Succeeded(verify)) << "server and tree differ after an io_uring write: " << verify.Describe();
  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest)));
  EXPECT_TRUE(FileContentIs(dest + "/uring.bin", std::string(4096, 'U') + std::string(4096, 'x')));
  close(early_fd);
}

TEST_F(ShimTest, FanotifyCatchesAnAioWriteThroughAnEarlyDescriptor) {
  int early_fd = open(P("aio.bin").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(early_fd, 0) << strerror(errno);
  ASSERT_EQ(pwrite(early_fd, std::string(8192, 'x').data(), 8192, 0), 8192);
  ASSERT_TRUE(MountOk());
  CaptureStatus before = Capture();
  ASSERT_TRUE(before.ebpf);
  ASSERT_TRUE(before.fanotify) << "the fanotify backstop is not active: see the daemon's log";
  ASSERT_TRUE(Succeeded(Sync()));

  // aio through the descriptor opened before the mount: the overlay does not
  // see it and io_submit is no hooked syscall; only fanotify names the file
  // (at the close: aio completions raise no FAN_MODIFY, FAN_CLOSE_WRITE follows).
  ASSERT_TRUE(AioWrite(early_fd, std::string(4096, 'A'), 4096)) << strerror(errno);
  close(early_fd);
  CaptureStatus after = WaitShimChanges(before.shim_changes + 1);
  EXPECT_GT(after.shim_changes, before.shim_changes) << "nothing reported the aio write";
  EXPECT_TRUE(FileContentIs(P("aio.bin"), std::string(4096, 'x') + std::string(4096, 'A')));
  ASSERT_TRUE(Succeeded(Sync()));
  RunResult verify = Verify();
  EXPECT_TRUE(Succeeded(verify)) << "server and tree differ after an aio write: " << verify.Describe();
  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest)));
  EXPECT_TRUE(FileContentIs(dest + "/aio.bin", std::string(4096, 'x') + std::string(4096, 'A')));
}

TEST_F(ShimTest, ChangesTheShimCannotNameRescanTheTree) {
  const std::string bind = FreshPath("bind");
  ASSERT_EQ(mkdir(bind.c_str(), 0755), 0);
  ASSERT_EQ(mount(prot_.c_str(), bind.c_str(), nullptr, MS_BIND, nullptr), 0) << strerror(errno);
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  CaptureStatus before = Capture();
  ASSERT_TRUE(before.ebpf);
  EXPECT_EQ(before.shim_untracked, 0);

  // Deeper than the kernel's bounded d_parent walk (REPLIFS_SHIM_MAX_DEPTH):
  // the records cannot name the file, so the daemon rescans the tree.
  std::string deep = bind;
  for (int i = 0; i < REPLIFS_SHIM_MAX_DEPTH + 4; ++i) {
    deep += "/d" + std::to_string(i);
    ASSERT_EQ(mkdir(deep.c_str(), 0755), 0) << deep;
  }
  WriteFile(deep + "/deep.txt", "too deep to name\n");
  CaptureStatus after;
  for (int i = 0; i < 100; ++i) {
    after = Capture();
    if (after.shim_untracked > 0) break;
    usleep(100 * 1000);
  }
  EXPECT_GT(after.shim_untracked, 0) << "unnameable records were not counted";
  EXPECT_TRUE(after.rescanned) << "status does not say the tree was rescanned";
  // The rescan runs in the background: wait until none is due or running.
  usleep(500 * 1000);  // the last records (the file's) arrive
  bool settled = false;
  for (int i = 0; i < 200 && !settled; ++i) {
    RunResult status = Status();
    settled = status.out.find("RESCAN NEEDED") == std::string::npos &&
              status.out.find("initial sync: done") != std::string::npos;
    if (!settled) usleep(100 * 1000);
  }
  EXPECT_TRUE(settled) << "the tree rescan did not finish";
  ASSERT_TRUE(Succeeded(Sync()));
  RunResult verify = Verify();
  EXPECT_TRUE(Succeeded(verify)) << "the rescan did not bring the deep file to the server: " << verify.Describe();
  std::string rel;
  for (int i = 0; i < REPLIFS_SHIM_MAX_DEPTH + 4; ++i) rel += "d" + std::to_string(i) + "/";
  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest)));
  EXPECT_TRUE(FileContentIs(dest + "/" + rel + "deep.txt", "too deep to name\n"));
  umount2(bind.c_str(), MNT_DETACH);
}

TEST_F(ShimTest, DeepFileWrittenThroughAnOpenDescriptorIsNamedWithoutARescan) {
  // Deeper than the kernel's walk, made and opened before the mount: the
  // records carry device and inode but no complete name; the daemon names
  // the file from the writer's descriptor instead of rescanning the tree.
  std::string rel;
  for (int i = 0; i < REPLIFS_SHIM_MAX_DEPTH + 4; ++i) {
    rel += "e" + std::to_string(i) + "/";
    ASSERT_EQ(mkdir(P(rel).c_str(), 0755), 0) << rel;
  }
  rel += "deep.bin";
  int early_fd = open(P(rel).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(early_fd, 0) << strerror(errno);
  ASSERT_EQ(pwrite(early_fd, "before", 6, 0), 6);
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  CaptureStatus before = Capture();
  ASSERT_TRUE(before.ebpf);
  ASSERT_EQ(before.shim_untracked, 0);

  ASSERT_EQ(pwrite(early_fd, "AFTER!", 6, 0), 6);
  CaptureStatus after = WaitShimChanges(before.shim_changes + 1);
  EXPECT_GT(after.shim_changes, before.shim_changes) << "the deep write was not reported";
  EXPECT_EQ(after.shim_untracked, 0) << "the deep write was not named from the open descriptor";
  EXPECT_FALSE(after.rescanned);
  ASSERT_TRUE(Succeeded(Sync()));
  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest)));
  EXPECT_TRUE(FileContentIs(dest + "/" + rel, "AFTER!"));
  close(early_fd);
}

TEST_F(ShimTest, BusyMappingLookupsAreShownAndTheFileIsStillNamed) {
  const std::string bind = FreshPath("bind");
  ASSERT_EQ(mkdir(bind.c_str(), 0755), 0);
  ASSERT_EQ(mount(prot_.c_str(), bind.c_str(), nullptr, MS_BIND, nullptr), 0) << strerror(errno);
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  CaptureStatus before = Capture();
  ASSERT_TRUE(before.ebpf);
  ASSERT_TRUE(before.fanotify);
  ASSERT_GE(before.shim_vma_busy, 0) << "status does not show the busy mapping lookups";

  // Stores through a shared mapping of a file reached around the overlay,
  // msync'd while another thread keeps holding the mmap lock for writing:
  // some lookups of the mapping find the lock busy (counted), and the file
  // is still named, at the latest by fanotify at its close.
  const size_t size = 4096;
  int fd = open((bind + "/mapped.bin").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(ftruncate(fd, size), 0);
  char* map = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(map, MAP_FAILED) << strerror(errno);
  // mprotect of a large populated region holds the mmap lock for writing
  // while it walks every page table entry: long enough to be met.
  const size_t big = 64 << 20;
  void* region = mmap(nullptr, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  ASSERT_NE(region, MAP_FAILED) << strerror(errno);
  std::atomic<bool> stop{false};
  std::thread contender([&stop, region, big] {
    for (int i = 0; !stop; ++i) mprotect(region, big, i % 2 ? PROT_READ | PROT_WRITE : PROT_READ);
  });
  for (int i = 0; i < 20000; ++i) {
    map[i % size] = 'm';
    msync(map, size, MS_ASYNC);
  }
  stop = true;
  contender.join();
  munmap(region, big);
  memcpy(map, "last", 4);
  close(fd);
  munmap(map, size);

  CaptureStatus after;
  for (int i = 0; i < 100; ++i) {
    after = Capture();
    if (after.shim_vma_busy > before.shim_vma_busy) break;
    usleep(100 * 1000);
  }
  EXPECT_GT(after.shim_vma_busy, before.shim_vma_busy) << "no busy mapping lookup was counted";
  // The overlay shows the last stores: the file was named (its cache dropped).
  const std::string expected = "last" + std::string(size - 4, 'm');
  EXPECT_TRUE(FileContentIs(P("mapped.bin"), expected)) << "the mapped file was not named";
  // And the server has them: a rescan that names no mode is read whole (it
  // once counted as an attribute change, and the backup kept the zeros).
  ASSERT_TRUE(Succeeded(Sync()));
  const std::string dest = FreshPath("restored");
  ASSERT_TRUE(Succeeded(Restore(dest)));
  EXPECT_TRUE(FileContentIs(dest + "/mapped.bin", expected)) << "the backup missed the mapped stores";
  umount2(bind.c_str(), MNT_DETACH);
}

}  // namespace
}  // namespace replifs::test

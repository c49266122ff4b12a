// The kernel shim (eBPF) with a real server and a real mount: writes that
// bypass the overlay (an fd opened before the mount, a bind mount of the
// backing directory made before protection, another mount namespace) reach
// the server, and writes through the mount are not sent twice.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <regex>
#include <string>

#include "tests/binaries_from_build.h"
#include "tests/harness.h"

namespace replifs::test {
namespace {

struct CaptureStatus {
  bool ebpf = false;
  long long shim_changes = -1;
  long long shim_lost = -1;
};

// Parses "capture layers: overlay, ebpf (shim: N changes, M lost...)".
CaptureStatus ParseCapture(const std::string& status_out) {
  CaptureStatus out;
  std::smatch m;
  if (std::regex_search(status_out, m, std::regex("capture layers: ([^\\n(]*)"))) {
    out.ebpf = m[1].str().find("ebpf") != std::string::npos;
  }
  if (std::regex_search(status_out, m, std::regex("shim: ([0-9]+) changes, ([0-9]+) lost"))) {
    out.shim_changes = std::stoll(m[1].str());
    out.shim_lost = std::stoll(m[2].str());
  }
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
  EXPECT_TRUE(Succeeded(verify)) << "server and tree differ after writes that bypassed the overlay";
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

}  // namespace
}  // namespace replifs::test

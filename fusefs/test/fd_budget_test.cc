// More looked-up inodes than the daemon may hold fds for (a `du` over a tree
// larger than RLIMIT_NOFILE): past the budget, inodes are kept by file handle
// and every operation on them still works and is reported by path.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fusefs/test/mount_fixture.h"

namespace replifs::fusefs {
namespace {

int OpenFds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (d != nullptr && readdir(d) != nullptr) ++n;
  if (d != nullptr) closedir(d);
  return n;
}

class FewPinnedFdsTest : public MountTest {
 protected:
  static constexpr int kBudget = 16;
  FewPinnedFdsTest() { max_pinned_fds_ = kBudget; }
};

TEST_F(FewPinnedFdsTest, InodesPastTheBudgetAreKeptByHandleAndStillWork) {
  constexpr int kFiles = 300, kDirs = 30;
  ASSERT_EQ(mkdir(B("many").c_str(), 0755), 0);
  for (int i = 0; i < kFiles; ++i) WriteAll(B("many/f" + std::to_string(i)), std::to_string(i));
  for (int i = 0; i < kDirs; ++i) ASSERT_EQ(mkdir(B("many/d" + std::to_string(i)).c_str(), 0755), 0);
  const int fds_before = OpenFds();
  // Looked up through the mount; the kernel keeps every inode.
  for (int i = 0; i < kFiles; ++i) {
    EXPECT_EQ(Lstat(M("many/f" + std::to_string(i))).st_size,
              static_cast<off_t>(std::to_string(i).size()));
  }
  for (int i = 0; i < kDirs; ++i) EXPECT_TRUE(S_ISDIR(Lstat(M("many/d" + std::to_string(i))).st_mode));
  // One fd per inode would be kFiles + kDirs more.
  EXPECT_LT(OpenFds() - fds_before, kBudget + 8);

  // Data, attributes and names of inodes past the budget.
  for (int i = kFiles - 20; i < kFiles; ++i) {
    ASSERT_EQ(ReadAll(M("many/f" + std::to_string(i))), std::to_string(i));
  }
  sink_.Clear();
  WriteAll(M("many/f299"), "rewritten");
  EXPECT_EQ(ReadAll(B("many/f299")), "rewritten");
  auto writes = sink_.Find(ChangeEvent::WRITE);
  ASSERT_FALSE(writes.empty());
  EXPECT_EQ(writes.back().path(), "many/f299");
  ASSERT_EQ(chmod(M("many/f298").c_str(), 0600), 0);
  EXPECT_EQ(Lstat(B("many/f298")).st_mode & 07777, 0600u);
  EXPECT_EQ(sink_.Find(ChangeEvent::SETATTR, "many/f298").size(), 1u);
  ASSERT_EQ(setxattr(M("many/f297").c_str(), "user.k", "v", 1, 0), 0);
  char value[8] = {};
  EXPECT_EQ(getxattr(M("many/f297").c_str(), "user.k", value, sizeof(value)), 1);
  ASSERT_EQ(link(M("many/f296").c_str(), M("many/link296").c_str()), 0);
  EXPECT_EQ(Lstat(B("many/f296")).st_nlink, 2u);
  ASSERT_EQ(rename(M("many/f295").c_str(), M("many/g295").c_str()), 0);
  EXPECT_EQ(ReadAll(M("many/g295")), "295");
  ASSERT_EQ(unlink(M("many/f294").c_str()), 0);
  EXPECT_NE(access(B("many/f294").c_str(), F_OK), 0);
  // A directory past the budget: names created in it are reported by path.
  WriteAll(M("many/d29/new"), "n");
  ASSERT_EQ(sink_.Find(ChangeEvent::CREATE, "many/d29/new").size(), 1u);
  ASSERT_EQ(mkdir(M("many/d28/sub").c_str(), 0755), 0);
  EXPECT_EQ(sink_.Find(ChangeEvent::MKDIR, "many/d28/sub").size(), 1u);
  std::string listed;
  DIR* d = opendir(M("many/d29").c_str());
  ASSERT_NE(d, nullptr);
  while (struct dirent* e = readdir(d)) listed += std::string(e->d_name) + " ";
  closedir(d);
  EXPECT_NE(listed.find("new "), std::string::npos) << listed;
  // Renames of by-handle inodes carry both paths.
  auto renames = sink_.Find(ChangeEvent::RENAME, "many/f295");
  ASSERT_EQ(renames.size(), 1u);
  EXPECT_EQ(renames[0].new_path(), "many/g295");
  ASSERT_EQ(sink_.Find(ChangeEvent::UNLINK, "many/f294").size(), 1u);
}

// A deleted by-handle file whose inode number a new file reuses: the new
// file must not be served through the old inode's stale handle.
// A file kept by handle whose backing dentry the kernel evicted (memory
// pressure; here drop_caches) reopens disconnected: its fd has no path. Its
// write must still be captured, never silently dropped.
TEST_F(FewPinnedFdsTest, WriteToAFileWhoseBackingNameWasEvictedIsNotLost) {
  constexpr int kFiles = 100;
  ASSERT_EQ(mkdir(B("evict").c_str(), 0755), 0);
  for (int i = 0; i < kFiles; ++i) WriteAll(B("evict/f" + std::to_string(i)), "old");
  // O_PATH fds through the mount pin the kernel's FUSE dentries (no OPEN is
  // sent), so the daemon keeps its inodes, most of them by handle only.
  std::vector<int> pins;
  for (int i = 0; i < kFiles; ++i) {
    pins.push_back(open(M("evict/f" + std::to_string(i)).c_str(), O_PATH | O_CLOEXEC));
    ASSERT_GE(pins.back(), 0);
  }
  sync();
  std::FILE* drop = std::fopen("/proc/sys/vm/drop_caches", "w");
  ASSERT_NE(drop, nullptr) << "needs root";
  std::fputs("2", drop);
  std::fclose(drop);
  sink_.Clear();
  const int last = kFiles - 1;
  const std::string via_pin = "/proc/self/fd/" + std::to_string(pins[last]);
  int fd = open(via_pin.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(write(fd, "new", 3), 3);
  ASSERT_EQ(close(fd), 0);
  for (int pin : pins) close(pin);
  EXPECT_EQ(ReadAll(B("evict/f" + std::to_string(last))), "new");
  // Named, or at least a rescan of the tree: never nothing.
  const std::string path = "evict/f" + std::to_string(last);
  const bool named = !sink_.Find(ChangeEvent::WRITE, path).empty() || !sink_.Find(ChangeEvent::TRUNCATE, path).empty();
  bool rescanned = false;
  for (const ChangeEvent& e : sink_.Find(ChangeEvent::RESCAN)) rescanned |= e.path().empty() && e.inode() == 0;
  EXPECT_TRUE(named || rescanned) << "the write was not reported at all (" << sink_.Events().size() << " events)";
}

TEST_F(FewPinnedFdsTest, ReusedInodeNumberIsANewInode) {
  for (int i = 0; i < 2 * kBudget; ++i) WriteAll(B("p" + std::to_string(i)), "pad");
  for (int i = 0; i < 2 * kBudget; ++i) Lstat(M("p" + std::to_string(i)));
  int reused = 0;
  for (int round = 0; round < 50; ++round) {
    WriteAll(B("reuse"), "old");
    // Held by an O_PATH fd (no OPEN reaches the daemon): the kernel keeps
    // the old inode, the daemon only its handle, so the backing inode number
    // is free once unlinked.
    const ino_t old_ino = Lstat(M("reuse")).st_ino;
    int held = open(M("reuse").c_str(), O_PATH | O_CLOEXEC);
    ASSERT_GE(held, 0) << strerror(errno);
    // Closed on every exit: a held fd would keep the mount busy at TearDown.
    std::unique_ptr<int, void (*)(int*)> closer(&held, [](int* fd) { close(*fd); });
    ASSERT_EQ(unlink(B("reuse").c_str()), 0);
    WriteAll(B("reuse"), "new" + std::to_string(round));
    fs_->InvalidatePath("reuse");  // as the shim does for changes underneath
    reused += Lstat(B("reuse")).st_ino == old_ino;
    ASSERT_EQ(ReadAll(M("reuse")), "new" + std::to_string(round)) << "round " << round;
  }
  // ext4 hands a freed inode number out again at once; tmpfs does not.
  RecordProperty("reused_inode_numbers", reused);
}

// The real limit: a daemon process whose RLIMIT_NOFILE (soft and hard) is
// far below the number of inodes looked up through its mount.
TEST(FdLimitTest, LookupsBeyondRlimitNofileDoNotFail) {
  constexpr int kLimit = 128, kFiles = 1000;
  char tmpl[] = "/tmp/replifs-fdlimit-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
  const std::string dir = tmpl;
  for (int i = 0; i < kFiles; ++i) {
    FILE* f = fopen((dir + "/f" + std::to_string(i)).c_str(), "w");
    ASSERT_NE(f, nullptr);
    fputs("x", f);
    fclose(f);
  }
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // The child mounts, looks everything up through the mount, unmounts.
    struct rlimit rl = {kLimit, kLimit};
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(10);
    int root_fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    MountOptions options;
    options.mountpoint = dir;
    options.backing_root_fd = root_fd;
    options.subtype = "replifs-test";
    auto fs = PassthroughFs::Mount(options, nullptr);
    if (!fs.ok()) _exit(11);
    std::thread loop([&] { (void)(*fs)->Run(); });
    int failed = 0;
    for (int i = 0; i < kFiles; ++i) {
      struct stat st;
      if (lstat((dir + "/f" + std::to_string(i)).c_str(), &st) != 0 || st.st_size != 1) {
        if (failed++ == 0) fprintf(stderr, "f%d: %s\n", i, strerror(errno));
      }
    }
    int fd = open((dir + "/f999").c_str(), O_RDWR);
    if (fd < 0 || write(fd, "y", 1) != 1 || close(fd) != 0) ++failed;
    if (umount2(dir.c_str(), 0) != 0) umount2(dir.c_str(), MNT_DETACH);
    loop.join();
    (*fs)->Unmount();
    _exit(failed == 0 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  for (int i = 0; i < kFiles; ++i) unlink((dir + "/f" + std::to_string(i)).c_str());
  rmdir(dir.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "lookups failed past RLIMIT_NOFILE=" << kLimit;
}

}  // namespace
}  // namespace replifs::fusefs

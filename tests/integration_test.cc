// End-to-end tests of the real binaries: `replifs-server` on 127.0.0.1 with a
// temporary store, and `replifs mount` (a real FUSE over-mount of a protected
// directory that already has content), sync, status, verify, restore, umount.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include "tests/binaries_from_build.h"
#include "tests/harness.h"
#include "tests/tree_compare.h"

namespace replifs::test {
namespace {

void PwriteAt(const std::string& path, const std::string& data, off_t off) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), off), static_cast<ssize_t>(data.size()))
      << path << ": " << strerror(errno);
  ASSERT_EQ(close(fd), 0);
}

void AppendTo(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(close(fd), 0);
}

struct timespec Now() {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t;
}

double Diff(const struct timespec& a, const struct timespec& b) {
  return static_cast<double>(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
}

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Compares and prints; returns the number of differences.
size_t CompareAndReport(const std::string& left, const std::string& right) {
  auto t0 = std::chrono::steady_clock::now();
  auto diffs = CompareTrees(left, right);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "[ compare  ] " << CountEntries(left) << " entries in protected tree, "
            << CountEntries(right) << " in restored tree, " << diffs.size() << " difference(s) ("
            << s << " s)" << std::endl;
  for (const auto& d : diffs) std::cout << "[ compare  ]   " << d << std::endl;
  return diffs.size();
}

// What a child that creates files as an unprivileged user reports.
const char* ChildStep(int code) {
  switch (code) {
    case 0: return "ok";
    case 10: return "setgroups failed";
    case 11: return "setresgid failed";
    case 12: return "setresuid failed";
    case 20: return "creating the file in the mount failed";
    case 21: return "writing the file failed";
    case 22: return "closing the file failed";
    case 23: return "mkdir in the mount failed";
    case 24: return "symlink in the mount failed";
  }
  return "unexpected";
}

// Forks; the child drops to uid/gid 1000 and creates dir/user_file.txt (with
// `content`), dir/user_dir and dir/user_link. Returns the child's exit code.
int CreateFilesAsUser1000(const std::string& dir, const std::string& content) {
  const std::string file = dir + "/user_file.txt";
  const std::string sub = dir + "/user_dir";
  const std::string link = dir + "/user_link";
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0) _exit(10);
    if (setresgid(1000, 1000, 1000) != 0) _exit(11);
    if (setresuid(1000, 1000, 1000) != 0) _exit(12);
    umask(022);
    int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0640);
    if (fd < 0) _exit(20);
    if (write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size())) _exit(21);
    if (close(fd) != 0) _exit(22);
    if (mkdir(sub.c_str(), 0750) != 0) _exit(23);
    if (symlink("user_file.txt", link.c_str()) != 0) _exit(24);
    _exit(0);
  }
  if (pid < 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs a helper tool (setfacl, setcap) if installed. Missing: skip that part
// with a note, but fail in CI where setup must have installed it.
bool ToolAvailable(const std::string& path, const std::string& package) {
  if (access(path.c_str(), X_OK) == 0) return true;
  if (InCI())
    ADD_FAILURE() << path << " is missing (package " << package << "); CI must install it";
  else
    std::cout << "[ note     ] " << path << " missing (package " << package
              << "): skipping that part" << std::endl;
  return false;
}

// ---------------------------------------------------------------------------

TEST_F(ReplifsTest, MixedWorkloadRoundTrip) {
  ASSERT_TRUE(MountOk());

  // Edit in the middle of a 3 MiB pre-existing file.
  const std::string patch = RandomBytes(4096, 100);
  ASSERT_NO_FATAL_FAILURE(PwriteAt(P("big.bin"), patch, 1 << 20));
  std::string big = RandomBytes(3 << 20, 1);
  big.replace(1 << 20, patch.size(), patch);
  // Append.
  ASSERT_NO_FATAL_FAILURE(AppendTo(P("append.txt"), "second line\n"));
  // Truncate shorter, and longer (a sparse hole).
  ASSERT_EQ(truncate(P("shrink.bin").c_str(), 50000), 0) << strerror(errno);
  ASSERT_EQ(truncate(P("grow.bin").c_str(), 5 << 20), 0) << strerror(errno);
  // Rename a file over another existing file.
  ASSERT_EQ(rename(P("over_src.txt").c_str(), P("over_dst.txt").c_str()), 0) << strerror(errno);
  // Rename a whole tree, then reuse the old name (mv d e; mkdir d; echo x > d/f).
  ASSERT_EQ(rename(P("tree").c_str(), P("renamed_tree").c_str()), 0) << strerror(errno);
  WriteFile(P("renamed_tree/sub/new.txt"), "created after the rename\n");
  ASSERT_EQ(mkdir(P("tree").c_str(), 0755), 0) << strerror(errno);
  WriteFile(P("tree/f"), "x\n");
  // Deletes.
  ASSERT_EQ(unlink(P("del1.txt").c_str()), 0) << strerror(errno);
  ASSERT_EQ(unlink(P("del2.txt").c_str()), 0) << strerror(errno);
  ASSERT_EQ(rmdir(P("emptydir").c_str()), 0) << strerror(errno);
  // Hard links: two names, then write through one; and a link to a pre-existing file.
  WriteFile(P("hl_a.txt"), "hard link content v1\n");
  ASSERT_EQ(link(P("hl_a.txt").c_str(), P("hl_b.txt").c_str()), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(PwriteAt(P("hl_b.txt"), "HARD", 0));
  ASSERT_TRUE(FileContentIs(P("hl_a.txt"), "HARD link content v1\n"));
  ASSERT_EQ(link(P("link_src.txt").c_str(), P("docs/link_src_2.txt").c_str()), 0) << strerror(errno);
  // Symlinks: relative, dangling, pointing up.
  ASSERT_EQ(symlink("renamed_tree/sub/b.txt", P("sym_rel").c_str()), 0) << strerror(errno);
  ASSERT_EQ(symlink("does/not/exist", P("dangling").c_str()), 0) << strerror(errno);
  ASSERT_EQ(symlink("../big.bin", P("docs/up_link").c_str()), 0) << strerror(errno);
  // chmod, incl. setgid dir, setuid file, sticky dir.
  ASSERT_EQ(chmod(P("script.sh").c_str(), 0700), 0) << strerror(errno);
  ASSERT_EQ(mkdir(P("sgid_dir").c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(chmod(P("sgid_dir").c_str(), 02775), 0) << strerror(errno);
  WriteFile(P("sgid_dir/inside.txt"), "in a setgid dir\n");
  WriteFile(P("suid_file"), "#!/bin/sh\n", 0755);
  ASSERT_EQ(chmod(P("suid_file").c_str(), 04755), 0) << strerror(errno);
  ASSERT_EQ(mkdir(P("sticky").c_str(), 0755), 0) << strerror(errno);
  ASSERT_EQ(chmod(P("sticky").c_str(), 01777), 0) << strerror(errno);
  // chown 1234:5678 (file, dir, symlink itself).
  WriteFile(P("owned.txt"), "owned by 1234:5678\n");
  ASSERT_EQ(chown(P("owned.txt").c_str(), 1234, 5678), 0) << strerror(errno);
  ASSERT_EQ(mkdir(P("owned_dir").c_str(), 0750), 0) << strerror(errno);
  ASSERT_EQ(chown(P("owned_dir").c_str(), 1234, 5678), 0) << strerror(errno);
  ASSERT_EQ(lchown(P("sym_rel").c_str(), 1234, 5678), 0) << strerror(errno);
  // xattrs: set, set and remove, on a dir.
  WriteFile(P("xattr.txt"), "has xattrs\n");
  ASSERT_EQ(setxattr(P("xattr.txt").c_str(), "user.k", "v", 1, 0), 0) << strerror(errno);
  ASSERT_EQ(setxattr(P("xattr.txt").c_str(), "user.gone", "soon", 4, 0), 0) << strerror(errno);
  ASSERT_EQ(removexattr(P("xattr.txt").c_str(), "user.gone"), 0) << strerror(errno);
  ASSERT_EQ(setxattr(P("renamed_tree").c_str(), "user.dir", "\x01\x00\xff", 3, 0), 0) << strerror(errno);
  ASSERT_EQ(removexattr(P("docs/readme.md").c_str(), "user.pre"), 0) << strerror(errno);
  // POSIX ACLs (access and default).
  if (ToolAvailable("/usr/bin/setfacl", "acl")) {
    WriteFile(P("acl.txt"), "has an ACL\n");
    EXPECT_TRUE(Succeeded(RunProcess({"/usr/bin/setfacl", "-m", "u:1234:rw,g:5678:r", P("acl.txt")}, 30)));
    ASSERT_EQ(mkdir(P("acl_dir").c_str(), 0755), 0);
    EXPECT_TRUE(Succeeded(RunProcess({"/usr/bin/setfacl", "-d", "-m", "u:1234:rwx", P("acl_dir")}, 30)));
    WriteFile(P("acl_dir/inherits.txt"), "inherits the default ACL\n");
  }
  // File capabilities.
  if (ToolAvailable("/usr/sbin/setcap", "libcap2-bin")) {
    WriteFile(P("cap.bin"), "pretend binary\n", 0755);
    EXPECT_TRUE(Succeeded(RunProcess({"/usr/sbin/setcap", "cap_net_raw+ep", P("cap.bin")}, 30)));
  }
  // fallocate: allocate (size-changing and KEEP_SIZE) and punch a hole.
  {
    int fd = open(P("falloc.bin").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    EXPECT_EQ(fallocate(fd, 0, 0, 1 << 20), 0) << "fallocate: " << strerror(errno);
    EXPECT_EQ(pwrite(fd, "start", 5, 0), 5);
    EXPECT_EQ(fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20), 0)
        << "fallocate KEEP_SIZE: " << strerror(errno);
    close(fd);
    fd = open(P("punch.bin").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno);
    EXPECT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 * 1024, 128 * 1024), 0)
        << "punch hole: " << strerror(errno);
    close(fd);
    std::string punched = RandomBytes(512 * 1024, 5);
    std::fill(punched.begin() + 64 * 1024, punched.begin() + 192 * 1024, '\0');
    EXPECT_TRUE(FileContentIs(P("punch.bin"), punched));
  }
  // Shared mapping, msync'd.
  {
    int fd = open(P("mmap.bin").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno);
    void* m = mmap(nullptr, 64 * 1024, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT_NE(m, MAP_FAILED) << "mmap MAP_SHARED through the mount: " << strerror(errno);
    std::memset(static_cast<char*>(m) + 1000, 'M', 100);
    std::memset(static_cast<char*>(m) + 40000, 'S', 3000);
    EXPECT_EQ(msync(m, 64 * 1024, MS_SYNC), 0) << strerror(errno);
    munmap(m, 64 * 1024);
    close(fd);
  }
  // FIFO.
  ASSERT_EQ(mkfifo(P("fifo").c_str(), 0640), 0) << strerror(errno);
  // Files created by an unprivileged user in a 0777 dir of the mount.
  ASSERT_EQ(mkdir(P("shared").c_str(), 0777), 0) << strerror(errno);
  ASSERT_EQ(chmod(P("shared").c_str(), 0777), 0) << strerror(errno);
  {
    int code = CreateFilesAsUser1000(P("shared"), "written by uid 1000\n");
    ASSERT_EQ(code, 0) << "child running as 1000:1000: " << ChildStep(code);
    struct stat st;
    ASSERT_EQ(lstat(P("shared/user_file.txt").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 1000u) << "owner of a file created by uid 1000 through the mount";
    EXPECT_EQ(st.st_gid, 1000u);
  }
  // utimensat with nanoseconds, last (so nothing else touches these mtimes):
  // a file, a symlink itself, a directory.
  WriteFile(P("times.txt"), "old times\n");
  {
    struct timespec ts[2] = {{1600000000, 5}, {1700000000, 123456789}};
    ASSERT_EQ(utimensat(AT_FDCWD, P("times.txt").c_str(), ts, 0), 0) << strerror(errno);
    struct timespec ls[2] = {{1600000000, 5}, {1700000001, 987654321}};
    ASSERT_EQ(utimensat(AT_FDCWD, P("dangling").c_str(), ls, AT_SYMLINK_NOFOLLOW), 0) << strerror(errno);
    struct timespec ds[2] = {{1600000000, 5}, {1500000000, 999999999}};
    ASSERT_EQ(utimensat(AT_FDCWD, P("docs").c_str(), ds, 0), 0) << strerror(errno);
    struct stat st;
    ASSERT_EQ(lstat(P("times.txt").c_str(), &st), 0);
    EXPECT_EQ(st.st_mtim.tv_nsec, 123456789) << "the mount itself must keep nanoseconds";
  }
  ASSERT_TRUE(FileContentIs(P("big.bin"), big)) << "the edit is not visible through the mount";

  RunResult sync = Sync();
  ASSERT_TRUE(Succeeded(sync));
  RunResult status = Status();
  std::cout << "[ status   ]\n" << status.out << std::flush;
  RunResult verify = Verify();
  std::cout << "[ verify   ] exit " << verify.exit_code << " in " << verify.seconds << " s\n"
            << verify.out << std::flush;
  EXPECT_TRUE(Succeeded(verify)) << "replifs verify right after a successful sync";

  const std::string dest = FreshPath("restore");
  RunResult restore = Restore(dest);
  std::cout << "[ restore  ] " << restore.seconds << " s" << std::endl;
  ASSERT_TRUE(Succeeded(restore));
  EXPECT_EQ(CompareAndReport(prot_, dest), 0u);
  struct stat st;
  ASSERT_EQ(lstat((dest + "/shared/user_file.txt").c_str(), &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
  EXPECT_TRUE(FileContentIs(dest + "/big.bin", big));
  // Holes stay holes: grow.bin was extended from a few KiB to 5 MiB by truncate.
  ASSERT_EQ(lstat((dest + "/grow.bin").c_str(), &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_size, 5 << 20);
  EXPECT_LT(st.st_blocks * 512, 1 << 20) << "the restored sparse file is not sparse";
  std::cout << "[ sparse   ] grow.bin: " << st.st_size << " bytes, " << st.st_blocks * 512
            << " allocated" << std::endl;
}

TEST_F(ReplifsTest, SyncCoversOpenDescriptorAndSharedMapping) {
  ASSERT_TRUE(MountOk());
  const std::string written = RandomBytes(300 * 1024, 200);
  int fd = open(P("open_fd.bin").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(write(fd, written.data(), written.size()), static_cast<ssize_t>(written.size()));

  std::string mapped = RandomBytes(64 * 1024, 7);  // mmap2.bin's pre-existing content
  int mfd = open(P("mmap2.bin").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(mfd, 0) << strerror(errno);
  char* m = static_cast<char*>(mmap(nullptr, mapped.size(), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0));
  ASSERT_NE(m, MAP_FAILED) << "mmap MAP_SHARED through the mount: " << strerror(errno);
  std::memset(m + 100, 'M', 100);
  std::memset(m + 50000, 'N', 5000);
  std::memset(mapped.data() + 100, 'M', 100);
  std::memset(mapped.data() + 50000, 'N', 5000);
  // Neither close(fd), nor msync, nor munmap before the sync.

  RunResult sync = Sync();
  EXPECT_TRUE(Succeeded(sync));
  const std::string dest = FreshPath("restore");
  RunResult restore = Restore(dest, {"open_fd.bin", "mmap2.bin"});
  EXPECT_TRUE(Succeeded(restore));
  EXPECT_TRUE(FileContentIs(dest + "/open_fd.bin", written)) << "data written to a still-open fd";
  EXPECT_TRUE(FileContentIs(dest + "/mmap2.bin", mapped)) << "stores to a shared mapping, never msync'd";

  munmap(m, mapped.size());
  close(mfd);
  close(fd);
}

TEST_F(ReplifsTest, RestoreAtTimeBetweenTwoEdits) {
  ASSERT_TRUE(MountOk({"--quiet-ms", "50", "--max-delay-ms", "200"}));
  const std::string v1 = "version one\n";
  const std::string v2 = "version two, a little longer\n";
  // Let the initial upload of the pre-existing tree finish first.
  ASSERT_TRUE(Succeeded(Sync()));

  const struct timespec edit1 = Now();
  WriteFile(P("versioned.txt"), v1);
  ASSERT_TRUE(Succeeded(Sync()));
  SleepMs(150);
  const struct timespec t = Now();
  SleepMs(150);
  const struct timespec edit2 = Now();
  WriteFile(P("versioned.txt"), v2);
  ASSERT_TRUE(Succeeded(Sync()));

  const std::string rfc = FormatRfc3339Millis(t);
  const std::string at = FormatAtSeconds(t);
  std::cout << "[ times    ] edit1->T " << Diff(edit1, t) << " s, T->edit2 " << Diff(t, edit2)
            << " s, edits " << Diff(edit1, edit2) << " s apart; T = " << rfc << " = " << at << std::endl;
  EXPECT_LT(Diff(edit1, edit2), 1.0) << "the two edits must be less than a second apart "
                                        "(sync with --quiet-ms 50 took too long)";

  const std::string d1 = FreshPath("at-rfc3339");
  RunResult r1 = Restore(d1, {"--at", rfc, "versioned.txt"});
  EXPECT_TRUE(Succeeded(r1));
  EXPECT_TRUE(FileContentIs(d1 + "/versioned.txt", v1)) << "restore --at " << rfc;

  const std::string d2 = FreshPath("at-seconds");
  RunResult r2 = Restore(d2, {"--at", at, "versioned.txt"});
  EXPECT_TRUE(Succeeded(r2));
  EXPECT_TRUE(FileContentIs(d2 + "/versioned.txt", v1)) << "restore --at " << at;

  const std::string d3 = FreshPath("latest");
  RunResult r3 = Restore(d3, {"versioned.txt"});
  EXPECT_TRUE(Succeeded(r3));
  EXPECT_TRUE(FileContentIs(d3 + "/versioned.txt", v2)) << "restore without --at";

  // A whole-tree restore as of T has v1 too.
  const std::string d4 = FreshPath("at-whole-tree");
  RunResult r4 = Restore(d4, {"--at", rfc});
  EXPECT_TRUE(Succeeded(r4));
  EXPECT_TRUE(FileContentIs(d4 + "/versioned.txt", v1)) << "whole-tree restore --at " << rfc;
}

TEST_F(ReplifsTest, ChangesWhileUnmountedGoOutAtNextMount) {
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  const pid_t daemon = DaemonPid();
  RunResult um = Umount();
  ASSERT_TRUE(Succeeded(um));
  std::cout << "[ umount   ] " << um.seconds << " s" << std::endl;
  ASSERT_FALSE(IsMounted(prot_)) << "still mounted after `replifs umount` exited 0";
  EXPECT_TRUE(WaitDaemonGone(daemon, 15)) << "daemon " << daemon << " still running after umount";

  // Change the plain directory while nothing watches it.
  ASSERT_NO_FATAL_FAILURE(AppendTo(P("append.txt"), "appended while unmounted\n"));
  WriteFile(P("new_offline.txt"), "added while unmounted\n");
  ASSERT_EQ(unlink(P("del1.txt").c_str()), 0);
  ASSERT_EQ(rename(P("over_src.txt").c_str(), P("offline_renamed.txt").c_str()), 0);
  ASSERT_EQ(rename(P("tree").c_str(), P("docs/tree_moved").c_str()), 0);
  ASSERT_EQ(mkdir(P("offline_dir").c_str(), 0700), 0);
  WriteFile(P("offline_dir/f.bin"), RandomBytes(200 * 1024, 300));
  ASSERT_NO_FATAL_FAILURE(PwriteAt(P("big.bin"), RandomBytes(8192, 301), 2 << 20));
  ASSERT_EQ(chmod(P("script.sh").c_str(), 0750), 0);
  ASSERT_EQ(setxattr(P("docs/readme.md").c_str(), "user.pre", "changed offline", 15, 0), 0);

  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  RunResult verify = Verify();
  std::cout << "[ verify   ] exit " << verify.exit_code << "\n" << verify.out << std::flush;
  EXPECT_TRUE(Succeeded(verify));
  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest)));
  EXPECT_EQ(CompareAndReport(prot_, dest), 0u);
}

TEST_F(ReplifsTest, UmountKeepsPendingChangesInJournal) {
  ASSERT_TRUE(MountOk({"--quiet-ms", "60000", "--max-delay-ms", "120000"}));
  const std::string content = "pending while the server is down\n" + RandomBytes(70000, 400);
  WriteFile(P("journaled.bin"), content);

  std::optional<long long> pending;
  for (int i = 0; i < 50; ++i) {
    pending = PendingChanges();
    if (pending && *pending >= 1) break;
    SleepMs(100);
  }
  std::cout << "[ status   ] pending changes before stopping the server: "
            << (pending ? std::to_string(*pending) : "(no 'pending changes: N' line)") << std::endl;
  EXPECT_TRUE(pending.has_value() && *pending >= 1)
      << "with --quiet-ms 60000 the new file must be pending\n" << Status().Describe();

  std::string how = StopServer();
  std::cout << "[ server   ] stopped: " << how << std::endl;
  const pid_t daemon = DaemonPid();
  RunResult um = Umount();
  std::cout << "[ umount   ] with the server down: exit " << um.exit_code << " in " << um.seconds
            << " s" << std::endl;
  EXPECT_TRUE(Succeeded(um));
  EXPECT_FALSE(IsMounted(prot_));
  EXPECT_TRUE(WaitDaemonGone(daemon, 15)) << "daemon " << daemon << " still running after umount";
  if (IsMounted(prot_)) {
    Umount(true);
    DetachMountsUnder(prot_);
  }

  ASSERT_EQ(RestartServerSamePort(), "");
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest, {"journaled.bin"})));
  EXPECT_TRUE(FileContentIs(dest + "/journaled.bin", content));
}

TEST_F(ReplifsTest, DisasterRecoveryRestoreWithServerAndRepo) {
  ASSERT_TRUE(MountOk());
  WriteFile(P("docs/late.txt"), "written after the mount\n");
  ASSERT_EQ(link(P("big.bin").c_str(), P("docs/big_link.bin").c_str()), 0);
  ASSERT_TRUE(Succeeded(Sync()));
  const pid_t daemon = DaemonPid();
  ASSERT_TRUE(Succeeded(Umount()));
  EXPECT_TRUE(WaitDaemonGone(daemon, 15));
  // The client machine's state is lost: only the server and the repo name remain.
  ASSERT_EQ(rename(state_.c_str(), (state_ + ".lost").c_str()), 0);

  const std::string dest = FreshPath("recovered");
  RunResult r = RestoreFromServer(dest);
  std::cout << "[ restore  ] --server/--repo: " << r.seconds << " s" << std::endl;
  ASSERT_TRUE(Succeeded(r));
  EXPECT_EQ(CompareAndReport(prot_, dest), 0u);
}

TEST_F(ReplifsTest, ErrorsAreOneClearLine) {
  {
    RunResult r = Run({"mount", "/nonexistent/replifs-it", "--server", server_.address(), "--repo",
                       repo_, "--state", FreshPath("state")},
                      60);
    EXPECT_TRUE(FailedWithOneLine(r)) << "mount of a nonexistent dir";
    std::cout << "[ errors   ] mount /nonexistent: " << r.err << std::flush;
  }
  {
    RunResult r = Run({"sync", prot_, "--timeout", "10"}, 40);
    EXPECT_TRUE(FailedWithOneLine(r)) << "sync of a dir that is not mounted";
    std::cout << "[ errors   ] sync (not mounted): " << r.err << std::flush;
  }
  {
    const std::string dest = FreshPath("unreachable");
    RunResult r = Run({"restore", "--server", "127.0.0.1:1", "--repo", "x", "--to", dest}, 90);
    EXPECT_TRUE(FailedWithOneLine(r)) << "restore from an unreachable server";
    EXPECT_TRUE(r.err.find("127.0.0.1:1") != std::string::npos ||
                r.err.find("server") != std::string::npos)
        << "the message should name the server: " << r.err;
    EXPECT_LT(r.seconds, 60.0);
    std::cout << "[ errors   ] restore (unreachable, " << r.seconds << " s): " << r.err << std::flush;
  }
  {
    ASSERT_TRUE(MountOk());
    RunResult r = Mount();
    EXPECT_TRUE(FailedWithOneLine(r)) << "second mount of the same dir";
    std::string lower = r.err;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_NE(lower.find("already"), std::string::npos) << r.err;
    std::cout << "[ errors   ] second mount: " << r.err << std::flush;
    EXPECT_EQ(MountCount(prot_), 1) << "the failed second mount left a mount behind";
    // The first mount still works.
    WriteFile(P("after_double_mount.txt"), "still protected\n");
    ASSERT_TRUE(Succeeded(Sync()));
    const std::string dest = FreshPath("restore");
    ASSERT_TRUE(Succeeded(Restore(dest, {"after_double_mount.txt"})));
    EXPECT_TRUE(FileContentIs(dest + "/after_double_mount.txt", "still protected\n"));
  }
}

TEST_F(ReplifsTest, MountRefusesOverlappingPlacements) {
  auto mount_with = [&](const std::string& dir, const std::string& state) {
    return Run({"mount", dir, "--server", server_.address(), "--repo", "other", "--state", state});
  };
  {  // the state directory inside the protected directory
    RunResult r = mount_with(prot_, P("docs/state"));
    EXPECT_TRUE(FailedWithOneLine(r)) << "state dir inside DIR";
    EXPECT_NE(r.err.find("state"), std::string::npos) << r.err;
    EXPECT_FALSE(IsMounted(prot_));
  }
  {  // a server store inside the protected directory (found by its marker)
    const std::string dir = FreshPath("holds_store");
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    ASSERT_EQ(symlink(store_.c_str(), (dir + "/store_link").c_str()), 0);  // not a store itself
    WriteFile(dir + "/REPLIFS-SERVER-STORE", "");
    RunResult r = mount_with(dir, FreshPath("state_store"));
    EXPECT_TRUE(FailedWithOneLine(r)) << "DIR is a server store";
    EXPECT_NE(r.err.find("store"), std::string::npos) << r.err;
    r = mount_with(store_, FreshPath("state_store2"));  // the running server's own store
    EXPECT_TRUE(FailedWithOneLine(r)) << "DIR is the running server's store";
    EXPECT_FALSE(IsMounted(store_));
  }
  ASSERT_TRUE(MountOk());
  {  // inside, or around, a protected directory
    RunResult inside = mount_with(P("docs"), FreshPath("state_inside"));
    EXPECT_TRUE(FailedWithOneLine(inside)) << "DIR inside a protected dir";
    RunResult around = mount_with(root_, FreshPath("state_around"));
    EXPECT_TRUE(FailedWithOneLine(around)) << "DIR containing a protected dir";
    EXPECT_EQ(MountCount(prot_), 1);
    EXPECT_FALSE(IsMounted(root_));
    std::cout << "[ refuse   ] " << inside.err << "[ refuse   ] " << around.err << std::flush;
  }
}

TEST_F(ReplifsTest, BusyUmountNamesHoldersAndLazyDetaches) {
  ASSERT_TRUE(MountOk());
  const pid_t holder = fork();
  if (holder == 0) {
    if (chdir(P("docs").c_str()) != 0) _exit(1);
    pause();
    _exit(0);
  }
  ASSERT_GT(holder, 0);
  // Let the child settle into the directory.
  for (int i = 0; i < 100; ++i) {
    char buf[4096];
    ssize_t n = readlink(("/proc/" + std::to_string(holder) + "/cwd").c_str(), buf, sizeof(buf));
    if (n > 0 && std::string(buf, n) == P("docs")) break;
    usleep(10000);
  }
  RunResult busy = Umount();
  EXPECT_TRUE(FailedWithOneLine(busy)) << "umount of a busy dir";
  EXPECT_NE(busy.err.find(std::to_string(holder)), std::string::npos) << "names the holder: " << busy.err;
  EXPECT_EQ(busy.err.find(std::to_string(DaemonPid())), std::string::npos) << "not the daemon: " << busy.err;
  EXPECT_TRUE(IsMounted(prot_));
  std::cout << "[ busy     ] " << busy.err << std::flush;
  RunResult lazy = Umount(/*lazy=*/true);
  EXPECT_TRUE(Succeeded(lazy));
  EXPECT_FALSE(IsMounted(prot_));
  kill(holder, SIGKILL);
  waitpid(holder, nullptr, 0);
}

TEST_F(ReplifsTest, SyncFailsClearlyWhileTheServerIsDown) {
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  StopServer();
  ASSERT_FALSE(server_.running());
  WriteFile(P("while_down.txt"), "queued\n");
  RunResult r = Run({"sync", prot_, "--timeout", "2"}, 60);
  EXPECT_TRUE(FailedWithOneLine(r)) << "sync with the server down";
  EXPECT_NE(r.err.find("unreachable"), std::string::npos) << r.err;
  EXPECT_LT(r.seconds, 20.0);
  RunResult status = Status();
  EXPECT_NE(status.out.find("UNREACHABLE"), std::string::npos) << status.out;
  EXPECT_GE(PendingChanges().value_or(0), 1);
  std::cout << "[ down     ] sync: " << r.err << std::flush;
  ASSERT_EQ(RestartServerSamePort(), "");
  ASSERT_TRUE(Succeeded(Sync()));
  const std::string dest = FreshPath("restore");
  ASSERT_TRUE(Succeeded(Restore(dest, {"while_down.txt"})));
  EXPECT_TRUE(FileContentIs(dest + "/while_down.txt", "queued\n"));
}

}  // namespace
}  // namespace replifs::test

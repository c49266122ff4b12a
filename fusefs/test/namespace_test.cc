// Names through the mount: create, mkdir, symlink, link, unlink, rmdir,
// rename (and its flags), ownership, odd names, errno parity.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <thread>

#include "fusefs/test/mount_fixture.h"

namespace replifs::fusefs {
namespace {

TEST_F(MountTest, CreateMkdirSymlinkAreReported) {
  WriteAll(M("new.txt"), "abc");
  ASSERT_EQ(mkdir(M("sub").c_str(), 0750), 0);
  ASSERT_EQ(symlink("../hello.txt", M("sub/link").c_str()), 0);
  ASSERT_EQ(mknod(M("fifo").c_str(), S_IFIFO | 0600, 0), 0);

  EXPECT_EQ(ReadAll(B("new.txt")), "abc");
  auto c = sink_.Find(ChangeEvent::CREATE, "new.txt");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].inode(), Lstat(B("new.txt")).st_ino);
  EXPECT_TRUE(S_ISREG(c[0].attributes().mode()));
  ASSERT_EQ(sink_.Find(ChangeEvent::WRITE, "new.txt").size(), 1u);

  auto m = sink_.Find(ChangeEvent::MKDIR, "sub");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].attributes().mode(), S_IFDIR | 0750u);
  EXPECT_TRUE(S_ISDIR(Lstat(B("sub")).st_mode));

  auto s = sink_.Find(ChangeEvent::SYMLINK, "sub/link");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].symlink_target(), "../hello.txt");
  char target[64] = {};
  ASSERT_GT(readlink(B("sub/link").c_str(), target, sizeof(target)), 0);
  EXPECT_STREQ(target, "../hello.txt");

  auto n = sink_.Find(ChangeEvent::MKNOD, "fifo");
  ASSERT_EQ(n.size(), 1u);
  EXPECT_TRUE(S_ISFIFO(n[0].attributes().mode()));
}

TEST_F(MountTest, LinkAndUnlinkReportLinkCounts) {
  ASSERT_EQ(link(M("hello.txt").c_str(), M("dir/hard").c_str()), 0);
  auto l = sink_.Find(ChangeEvent::LINK);
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].path(), "hello.txt");
  EXPECT_EQ(l[0].new_path(), "dir/hard");
  EXPECT_EQ(l[0].attributes().nlink(), 2u);
  EXPECT_EQ(Lstat(B("dir/hard")).st_ino, Lstat(B("hello.txt")).st_ino);

  ASSERT_EQ(unlink(M("hello.txt").c_str()), 0);
  auto u = sink_.Find(ChangeEvent::UNLINK, "hello.txt");
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].attributes().nlink(), 1u);
  EXPECT_EQ(u[0].inode(), Lstat(B("dir/hard")).st_ino);

  // The remaining name still gets events with a path that exists.
  sink_.Clear();
  WriteAll(M("dir/hard"), "via the other name");
  auto w = sink_.Find(ChangeEvent::WRITE);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].path(), "dir/hard");

  ASSERT_EQ(unlink(M("dir/hard").c_str()), 0);
  u = sink_.Find(ChangeEvent::UNLINK, "dir/hard");
  ASSERT_EQ(u.size(), 1u);
  EXPECT_EQ(u[0].attributes().nlink(), 0u);
  EXPECT_NE(access(B("dir/hard").c_str(), F_OK), 0);
}

TEST_F(MountTest, RmdirIsReported) {
  ASSERT_EQ(mkdir(M("gone").c_str(), 0755), 0);
  ASSERT_EQ(rmdir(M("gone").c_str()), 0);
  auto r = sink_.Find(ChangeEvent::RMDIR, "gone");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].attributes().nlink(), 0u);
  EXPECT_NE(access(B("gone").c_str(), F_OK), 0);
}

TEST_F(MountTest, RenamedDirectoryMovesItsChildrensPaths) {
  // Opened (and looked up) under the old name, written under the new one.
  int fd = open(M("dir/inner.txt").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(rename(M("dir").c_str(), M("moved").c_str()), 0);
  auto r = sink_.Find(ChangeEvent::RENAME, "dir");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].new_path(), "moved");
  EXPECT_EQ(r[0].rename_flags(), 0u);
  EXPECT_TRUE(S_ISDIR(r[0].attributes().mode()));

  ASSERT_EQ(pwrite(fd, "I", 1, 0), 1);
  close(fd);
  WriteAll(M("moved/inner.txt"), "again");
  auto w = sink_.Find(ChangeEvent::WRITE);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].path(), "moved/inner.txt");
  EXPECT_EQ(w[1].path(), "moved/inner.txt");
  EXPECT_EQ(ReadAll(B("moved/inner.txt")), "again");
}

TEST_F(MountTest, RenameExchangeAndNoreplace) {
  WriteAll(M("a"), "A");
  WriteAll(M("b"), "B");
  sink_.Clear();
  ASSERT_EQ(renameat2(AT_FDCWD, M("a").c_str(), AT_FDCWD, M("b").c_str(), RENAME_EXCHANGE), 0)
      << strerror(errno);
  EXPECT_EQ(ReadAll(B("a")), "B");
  EXPECT_EQ(ReadAll(B("b")), "A");
  auto r = sink_.Find(ChangeEvent::RENAME, "a");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].new_path(), "b");
  EXPECT_EQ(r[0].rename_flags(), unsigned{RENAME_EXCHANGE});
  EXPECT_EQ(r[0].inode(), Lstat(B("b")).st_ino);

  sink_.Clear();
  EXPECT_EQ(renameat2(AT_FDCWD, M("a").c_str(), AT_FDCWD, M("b").c_str(), RENAME_NOREPLACE), -1);
  EXPECT_EQ(errno, EEXIST);
  EXPECT_TRUE(sink_.Events().empty());
  ASSERT_EQ(renameat2(AT_FDCWD, M("a").c_str(), AT_FDCWD, M("c").c_str(), RENAME_NOREPLACE), 0);
  r = sink_.Find(ChangeEvent::RENAME, "a");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].rename_flags(), unsigned{RENAME_NOREPLACE});
}

TEST_F(MountTest, NonUtf8NamesRoundTrip) {
  const std::string name = "bad\xff\xfe-name\x80";
  WriteAll(M(name), "x");
  ASSERT_EQ(mkdir(M("d\xc3\x28").c_str(), 0755), 0);
  WriteAll(M("d\xc3\x28/" + name), "y");
  EXPECT_EQ(ReadAll(B(name)), "x");
  EXPECT_EQ(ReadAll(B("d\xc3\x28/" + name)), "y");
  EXPECT_EQ(sink_.Find(ChangeEvent::CREATE, name).size(), 1u);
  EXPECT_EQ(sink_.Find(ChangeEvent::WRITE, "d\xc3\x28/" + name).size(), 1u);
  bool listed = false;
  DIR* d = opendir(M("").c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) listed |= name == e->d_name;
  closedir(d);
  EXPECT_TRUE(listed);
}

// A name that really ends in " (deleted)" must not be taken for an unlinked
// file (the kernel appends that suffix to the fd path of unlinked files).
TEST_F(MountTest, NameEndingInDeletedIsStillReported) {
  WriteAll(M("x (deleted)"), "data");
  auto w = sink_.Find(ChangeEvent::WRITE);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].path(), "x (deleted)");
}

TEST_F(MountTest, WritesToAnUnlinkedFileAreNotReported) {
  int fd = open(M("hello.txt").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(unlink(M("hello.txt").c_str()), 0);
  WriteAll(M("hello.txt"), "a new file");
  sink_.Clear();
  ASSERT_EQ(pwrite(fd, "z", 1, 0), 1);
  close(fd);
  // Reporting "hello.txt" would name the new file, which did not change.
  EXPECT_TRUE(sink_.Find(ChangeEvent::WRITE).empty());
  EXPECT_EQ(ReadAll(B("hello.txt")), "a new file");
}

TEST_F(MountTest, NodesBelongToTheCallingUser) {
  ASSERT_EQ(mkdir(M("pub").c_str(), 0777), 0);
  ASSERT_EQ(chmod(M("pub").c_str(), 0777), 0);
  std::string file = M("pub/mine"), dir = M("pub/mydir"), link = M("pub/mylink"),
              fifo = M("pub/myfifo");
  int rc = RunAsNobody([&] {
    int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0640);
    if (fd < 0 || write(fd, "n", 1) != 1 || close(fd) != 0) return 1;
    if (mkdir(dir.c_str(), 0700) != 0) return 2;
    if (symlink("mine", link.c_str()) != 0) return 3;
    if (mknod(fifo.c_str(), S_IFIFO | 0600, 0) != 0) return 4;
    // Ordinary permission checks apply to the caller, not to root.
    if (open(M("hello.txt").c_str(), O_WRONLY) >= 0 || errno != EACCES) {
      return 5;
    }
    return 0;
  });
  ASSERT_EQ(rc, 0);
  for (const char* name : {"pub/mine", "pub/mydir", "pub/mylink", "pub/myfifo"}) {
    struct stat st = Lstat(B(name));
    EXPECT_EQ(st.st_uid, 65534u) << name;
    EXPECT_EQ(st.st_gid, 65534u) << name;
  }
  EXPECT_EQ(Lstat(B("pub/mine")).st_mode & 07777, 0640u);
  auto c = sink_.Find(ChangeEvent::CREATE, "pub/mine");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].attributes().uid(), 65534u);
}

TEST_F(MountTest, SetgidDirectoryPassesItsGroupOn) {
  ASSERT_EQ(mkdir(M("sg").c_str(), 0777), 0);
  ASSERT_EQ(chown(M("sg").c_str(), 0, 4321), 0);
  ASSERT_EQ(chmod(M("sg").c_str(), 02777), 0);
  std::string file = M("sg/f"), sub = M("sg/sub");
  ASSERT_EQ(RunAsNobody([&] {
              int fd = open(file.c_str(), O_WRONLY | O_CREAT, 0644);
              if (fd < 0) return 1;
              close(fd);
              return mkdir(sub.c_str(), 0755) == 0 ? 0 : 2;
            }),
            0);
  struct stat f = Lstat(B("sg/f"));
  EXPECT_EQ(f.st_uid, 65534u);
  EXPECT_EQ(f.st_gid, 4321u);
  struct stat d = Lstat(B("sg/sub"));
  EXPECT_EQ(d.st_uid, 65534u);
  EXPECT_EQ(d.st_gid, 4321u);
  EXPECT_TRUE(d.st_mode & S_ISGID);
}

// Each case runs against a root directory with the fixture's content and
// returns the errno it got (0 for success).
struct ErrnoCase {
  const char* what;
  std::function<int(const std::string& root)> run;
};

int ErrnoOf(int res) { return res < 0 ? errno : 0; }

TEST_F(MountTest, ErrnoMatchesAPlainDirectory) {
  const std::vector<ErrnoCase> cases = {
      {"open missing",
       [](const std::string& r) {
         int fd = open((r + "/missing").c_str(), O_RDONLY);
         if (fd >= 0) close(fd);
         return ErrnoOf(fd);
       }},
      {"mkdir existing",
       [](const std::string& r) { return ErrnoOf(mkdir((r + "/dir").c_str(), 0755)); }},
      {"create O_EXCL existing",
       [](const std::string& r) {
         int fd = open((r + "/hello.txt").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
         if (fd >= 0) close(fd);
         return ErrnoOf(fd);
       }},
      {"rmdir non-empty",
       [](const std::string& r) { return ErrnoOf(rmdir((r + "/dir").c_str())); }},
      {"open dir for writing",
       [](const std::string& r) {
         int fd = open((r + "/dir").c_str(), O_WRONLY);
         if (fd >= 0) close(fd);
         return ErrnoOf(fd);
       }},
      {"unlink dir", [](const std::string& r) { return ErrnoOf(unlink((r + "/dir").c_str())); }},
      {"rmdir file",
       [](const std::string& r) { return ErrnoOf(rmdir((r + "/hello.txt").c_str())); }},
      {"rename dir over file",
       [](const std::string& r) {
         return ErrnoOf(rename((r + "/dir").c_str(), (r + "/hello.txt").c_str()));
       }},
      {"missing xattr",
       [](const std::string& r) {
         char buf[8];
         return ErrnoOf(int(getxattr((r + "/hello.txt").c_str(), "user.none", buf, sizeof(buf))));
       }},
  };
  // The plain directory: same content, not mounted.
  char tmpl[] = "/tmp/replifs-plain-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string plain = tmpl;
  WriteAll(plain + "/hello.txt", "hello world\n");
  ASSERT_EQ(mkdir((plain + "/dir").c_str(), 0755), 0);
  WriteAll(plain + "/dir/inner.txt", "inner\n");
  for (const ErrnoCase& c : cases) {
    int expected = c.run(plain);
    EXPECT_NE(expected, 0) << c.what << " should fail";
    EXPECT_EQ(c.run(M("")), expected) << c.what << ": mount says " << strerrorname_np(c.run(M("")))
                                      << ", plain dir says " << strerrorname_np(expected);
  }
  for (const char* p : {"/dir/inner.txt", "/dir", "/hello.txt", ""}) {
    remove((plain + p).c_str());
  }
}

// Many lookups from several threads, then the kernel forgets them all
// (drop_caches sends FORGET / BATCH_FORGET); everything must still resolve.
TEST_F(MountTest, ManyFilesSurviveForgets) {
  constexpr int kThreads = 4, kPerThread = 150;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      std::string d = M("t" + std::to_string(t));
      mkdir(d.c_str(), 0755);
      for (int i = 0; i < kPerThread; ++i) {
        WriteAll(d + "/f" + std::to_string(i), std::to_string(t * 1000 + i));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(sink_.Find(ChangeEvent::CREATE).size(), size_t{kThreads * kPerThread});
  // One O_PATH fd per inode the kernel holds: forgets must close them.
  auto open_fds = [] {
    int n = 0;
    DIR* d = opendir("/proc/self/fd");
    while (d != nullptr && readdir(d) != nullptr) ++n;
    if (d != nullptr) closedir(d);
    return n;
  };
  const int fds_before = open_fds();
  sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "2";
  // FORGETs are queued to the daemon's workers: wait (bounded) for them.
  for (int i = 0; i < 100 && open_fds() >= fds_before - kThreads * kPerThread / 2; ++i) {
    usleep(50000);
  }
  EXPECT_LT(open_fds(), fds_before - kThreads * kPerThread / 2);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      std::string rel = "t" + std::to_string(t) + "/f" + std::to_string(i);
      ASSERT_EQ(ReadAll(M(rel)), std::to_string(t * 1000 + i)) << rel;
    }
  }
  ASSERT_EQ(rename(M("t0").c_str(), M("t0-renamed").c_str()), 0);
  sink_.Clear();
  WriteAll(M("t0-renamed/f7"), "x");
  auto w = sink_.Find(ChangeEvent::WRITE);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].path(), "t0-renamed/f7");
}

}  // namespace
}  // namespace replifs::fusefs

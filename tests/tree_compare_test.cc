// Unit test of the tree comparer on two plain directories: an exact copy
// (cp -a) compares equal, and each kind of difference it must see is seen.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "tests/harness.h"
#include "tests/tree_compare.h"

namespace replifs::test {
namespace {

class TreeCompareTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("replifs-tc-");
    ASSERT_FALSE(root_.empty());
    a_ = root_ + "/a";
    b_ = root_ + "/b";
    ASSERT_EQ(mkdir(a_.c_str(), 0755), 0);
    ASSERT_NO_FATAL_FAILURE(Build(a_));
    RunResult cp = RunProcess({"/bin/cp", "-a", a_, b_}, 60);
    ASSERT_TRUE(Succeeded(cp));
  }
  void TearDown() override { RemoveTree(root_); }

  void Build(const std::string& d) {
    WriteFile(d + "/file.txt", "hello world\n");
    WriteFile(d + "/big.bin", RandomBytes(3 << 20, 42));
    ASSERT_EQ(mkdir((d + "/dir").c_str(), 0755), 0);
    ASSERT_EQ(mkdir((d + "/dir/sub").c_str(), 0755), 0);
    WriteFile(d + "/dir/sub/nested.txt", "nested\n");
    ASSERT_EQ(symlink("file.txt", (d + "/link").c_str()), 0);
    ASSERT_EQ(symlink("nowhere/at/all", (d + "/dangling").c_str()), 0);
    WriteFile(d + "/hl1", "hard linked\n");
    ASSERT_EQ(link((d + "/hl1").c_str(), (d + "/dir/hl2").c_str()), 0);
    WriteFile(d + "/solo", "hard linked\n");
    ASSERT_EQ(mkfifo((d + "/fifo").c_str(), 0644), 0);
    ASSERT_EQ(setxattr((d + "/file.txt").c_str(), "user.k", "v", 1, 0), 0) << strerror(errno);
    struct timespec ts[2] = {{1700000000, 1}, {1700000000, 123456789}};
    ASSERT_EQ(utimensat(AT_FDCWD, (d + "/file.txt").c_str(), ts, 0), 0);
    ASSERT_EQ(utimensat(AT_FDCWD, (d + "/dir/sub").c_str(), ts, 0), 0);
  }

  std::vector<std::string> Diff(const CompareOptions& o = {}) {
    auto d = CompareTrees(a_, b_, o);
    for (const auto& s : d) std::cout << "  difference: " << s << "\n";
    return d;
  }

  // Exactly one difference, mentioning `path` and `what`.
  ::testing::AssertionResult OneDiff(const std::string& path, const std::string& what) {
    auto d = Diff();
    if (d.empty()) return ::testing::AssertionFailure() << "no difference found";
    for (const auto& s : d)
      if (s.find(path) != std::string::npos && s.find(what) != std::string::npos)
        return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "no difference mentions " << path << " and " << what;
  }

  std::string root_, a_, b_;
};

TEST_F(TreeCompareTest, ExactCopyIsEqual) {
  EXPECT_TRUE(Diff().empty());
  EXPECT_EQ(CountEntries(a_), 11u);
}

TEST_F(TreeCompareTest, RootMtimeIsIgnored) {
  struct timespec ts[2] = {{1, 0}, {1, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, b_.c_str(), ts, 0), 0);
  EXPECT_TRUE(Diff().empty());
}

TEST_F(TreeCompareTest, ContentSameSize) {
  int fd = open((b_ + "/big.bin").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  std::string cur = ReadFile(a_ + "/big.bin");
  char c = static_cast<char>(cur[2 * 1024 * 1024 + 5] ^ 1);
  ASSERT_EQ(pwrite(fd, &c, 1, 2 * 1024 * 1024 + 5), 1);
  close(fd);
  struct stat st;
  ASSERT_EQ(stat((a_ + "/big.bin").c_str(), &st), 0);
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, (b_ + "/big.bin").c_str(), ts, 0), 0);
  EXPECT_TRUE(OneDiff("big.bin", "content differs first at byte 2097157"));
}

TEST_F(TreeCompareTest, Size) {
  ASSERT_EQ(truncate((b_ + "/dir/sub/nested.txt").c_str(), 3), 0);
  EXPECT_TRUE(OneDiff("dir/sub/nested.txt", "size"));
}

TEST_F(TreeCompareTest, ModeBits) {
  ASSERT_EQ(chmod((b_ + "/dir").c_str(), 02755), 0);
  EXPECT_TRUE(OneDiff("dir", "mode"));
}

TEST_F(TreeCompareTest, Owner) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  ASSERT_EQ(lchown((b_ + "/link").c_str(), 1234, 5678), 0);
  EXPECT_TRUE(OneDiff("link", "owner"));
}

TEST_F(TreeCompareTest, SymlinkTarget) {
  ASSERT_EQ(unlink((b_ + "/dangling").c_str()), 0);
  ASSERT_EQ(symlink("nowhere/at/al1", (b_ + "/dangling").c_str()), 0);
  EXPECT_TRUE(OneDiff("dangling", "symlink target"));
}

TEST_F(TreeCompareTest, XattrValueAndPresence) {
  ASSERT_EQ(setxattr((b_ + "/file.txt").c_str(), "user.k", "w", 1, 0), 0);
  EXPECT_TRUE(OneDiff("file.txt", "xattr user.k differs"));
  ASSERT_EQ(removexattr((b_ + "/file.txt").c_str(), "user.k"), 0);
  EXPECT_TRUE(OneDiff("file.txt", "only in left"));
  ASSERT_EQ(setxattr((b_ + "/dir").c_str(), "user.extra", "x", 1, 0), 0);
  EXPECT_TRUE(OneDiff("dir", "xattr user.extra only in right"));
}

TEST_F(TreeCompareTest, AclIsAnXattr) {
  if (access("/usr/bin/setfacl", X_OK) != 0) GTEST_SKIP() << "setfacl not installed";
  RunResult r = RunProcess({"/usr/bin/setfacl", "-m", "u:1234:rw", b_ + "/solo"}, 30);
  ASSERT_TRUE(Succeeded(r));
  EXPECT_TRUE(OneDiff("solo", "system.posix_acl_access"));
}

TEST_F(TreeCompareTest, MtimeNanoseconds) {
  struct timespec ts[2] = {{1700000000, 1}, {1700000000, 123456788}};
  ASSERT_EQ(utimensat(AT_FDCWD, (b_ + "/file.txt").c_str(), ts, 0), 0);
  EXPECT_TRUE(OneDiff("file.txt", "mtime"));
}

TEST_F(TreeCompareTest, DirectoryMtime) {
  struct timespec ts[2] = {{1700000000, 1}, {1700000001, 123456789}};
  ASSERT_EQ(utimensat(AT_FDCWD, (b_ + "/dir/sub").c_str(), ts, 0), 0);
  EXPECT_TRUE(OneDiff("dir/sub", "mtime"));
}

TEST_F(TreeCompareTest, SymlinkMtime) {
  struct timespec ts[2] = {{1700000000, 1}, {1700000001, 5}};
  ASSERT_EQ(utimensat(AT_FDCWD, (b_ + "/link").c_str(), ts, AT_SYMLINK_NOFOLLOW), 0);
  EXPECT_TRUE(OneDiff("link", "mtime"));
}

TEST_F(TreeCompareTest, HardLinkBroken) {
  // Replace dir/hl2 by an independent copy with the same bytes, mode and times.
  struct stat st;
  ASSERT_EQ(stat((b_ + "/dir/hl2").c_str(), &st), 0);
  ASSERT_EQ(unlink((b_ + "/dir/hl2").c_str()), 0);
  WriteFile(b_ + "/dir/hl2", "hard linked\n", st.st_mode & 07777);
  struct timespec ts[2] = {st.st_atim, st.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, (b_ + "/dir/hl2").c_str(), ts, 0), 0);
  // The parent dir's mtime changed too: restore it so only the link differs.
  struct stat dst;
  ASSERT_EQ(stat((a_ + "/dir").c_str(), &dst), 0);
  struct timespec dts[2] = {dst.st_atim, dst.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, (b_ + "/dir").c_str(), dts, 0), 0);
  auto d = Diff();
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].find("hard-link group"), std::string::npos);
}

TEST_F(TreeCompareTest, HardLinkAdded) {
  // Make "solo" a hard link of hl1 on the right (same bytes as before).
  struct stat st, rootst;
  ASSERT_EQ(lstat((a_ + "/solo").c_str(), &st), 0);
  ASSERT_EQ(stat(a_.c_str(), &rootst), 0);
  ASSERT_EQ(unlink((b_ + "/solo").c_str()), 0);
  ASSERT_EQ(link((b_ + "/hl1").c_str(), (b_ + "/solo").c_str()), 0);
  auto d = Diff();
  bool found = false;
  for (const auto& s : d) found |= s.find("hard-link group") != std::string::npos;
  EXPECT_TRUE(found);
}

TEST_F(TreeCompareTest, MissingExtraAndType) {
  ASSERT_EQ(unlink((b_ + "/dir/sub/nested.txt").c_str()), 0);
  WriteFile(b_ + "/dir/sub/other.txt", "x");
  ASSERT_EQ(unlink((b_ + "/fifo").c_str()), 0);
  WriteFile(b_ + "/fifo", "");
  CompareOptions o;
  o.compare_mtime = false;
  auto d = Diff(o);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_TRUE(OneDiff("dir/sub/nested.txt", "only in left"));
  EXPECT_TRUE(OneDiff("dir/sub/other.txt", "only in right"));
  EXPECT_TRUE(OneDiff("fifo", "type differs"));
}

TEST_F(TreeCompareTest, DeviceNumbers) {
  if (mknod((a_ + "/dev").c_str(), S_IFCHR | 0600, makedev(1, 3)) != 0 ||
      mknod((b_ + "/dev").c_str(), S_IFCHR | 0600, makedev(1, 5)) != 0)
    GTEST_SKIP() << "mknod: " << strerror(errno);
  CompareOptions o;
  o.compare_mtime = false;
  auto d = Diff(o);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].find("device number"), std::string::npos);
}

TEST_F(TreeCompareTest, SkipPaths) {
  ASSERT_EQ(truncate((b_ + "/dir/sub/nested.txt").c_str(), 3), 0);
  WriteFile(b_ + "/dir/sub/new", "x");
  CompareOptions o;
  o.skip_paths = {"dir/sub"};
  o.compare_mtime = false;
  EXPECT_TRUE(CompareTrees(a_, b_, o).empty());
  o.skip_paths = {"dir/su"};  // a prefix of a name is not a parent
  EXPECT_FALSE(CompareTrees(a_, b_, o).empty());
}

}  // namespace
}  // namespace replifs::test

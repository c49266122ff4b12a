// Attributes and xattrs through the mount, cache invalidation and the
// session lifecycle.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "fusefs/test/mount_fixture.h"

namespace replifs::fusefs {
namespace {

TEST_F(MountTest, ChmodChownUtimensAreReported) {
  ASSERT_EQ(chmod(M("hello.txt").c_str(), 0600), 0);
  auto s = sink_.Find(ChangeEvent::SETATTR, "hello.txt");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].attributes().mode(), S_IFREG | 0600u);
  EXPECT_EQ(Lstat(B("hello.txt")).st_mode & 07777, 0600u);

  sink_.Clear();
  ASSERT_EQ(chown(M("hello.txt").c_str(), 1234, 5678), 0);
  s = sink_.Find(ChangeEvent::SETATTR, "hello.txt");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].attributes().uid(), 1234u);
  EXPECT_EQ(s[0].attributes().gid(), 5678u);
  EXPECT_EQ(Lstat(B("hello.txt")).st_uid, 1234u);

  sink_.Clear();
  const timespec times[2] = {{1000000000, 111111111}, {1234567890, 123456789}};
  ASSERT_EQ(utimensat(AT_FDCWD, M("hello.txt").c_str(), times, 0), 0);
  struct stat st = Lstat(B("hello.txt"));
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 111111111);
  s = sink_.Find(ChangeEvent::SETATTR, "hello.txt");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].attributes().mtime_ns(), 1234567890123456789);

  // UTIME_OMIT keeps mtime, UTIME_NOW sets atime to now.
  const timespec now_omit[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  ASSERT_EQ(utimensat(AT_FDCWD, M("hello.txt").c_str(), now_omit, 0), 0);
  st = Lstat(B("hello.txt"));
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_GT(st.st_atim.tv_sec, 1000000000);

  // A symlink's own times (utimensat AT_SYMLINK_NOFOLLOW).
  ASSERT_EQ(symlink("hello.txt", M("sl").c_str()), 0);
  ASSERT_EQ(utimensat(AT_FDCWD, M("sl").c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << strerror(errno);
  EXPECT_EQ(Lstat(B("sl")).st_mtim.tv_nsec, 123456789);
}

TEST_F(MountTest, XattrsPassThroughAndAreReported) {
  ASSERT_EQ(setxattr(M("hello.txt").c_str(), "user.x", "v1", 2, 0), 0) << strerror(errno);
  char buf[16] = {};
  ASSERT_EQ(getxattr(B("hello.txt").c_str(), "user.x", buf, sizeof(buf)), 2);
  EXPECT_STREQ(buf, "v1");
  memset(buf, 0, sizeof(buf));
  ASSERT_EQ(getxattr(M("hello.txt").c_str(), "user.x", buf, sizeof(buf)), 2);
  EXPECT_STREQ(buf, "v1");
  EXPECT_EQ(getxattr(M("hello.txt").c_str(), "user.x", nullptr, 0), 2);
  auto s = sink_.Find(ChangeEvent::SETXATTR, "hello.txt");
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].xattr_name(), "user.x");

  ASSERT_EQ(setxattr(M("dir").c_str(), "trusted.t", "t", 1, 0), 0) << strerror(errno);
  EXPECT_EQ(getxattr(B("dir").c_str(), "trusted.t", buf, sizeof(buf)), 1);

  char list[256];
  ssize_t n = listxattr(M("hello.txt").c_str(), list, sizeof(list));
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(list, n).find("user.x"), std::string::npos);

  EXPECT_EQ(setxattr(M("hello.txt").c_str(), "user.x", "v2", 2, XATTR_CREATE), -1);
  EXPECT_EQ(errno, EEXIST);

  ASSERT_EQ(removexattr(M("hello.txt").c_str(), "user.x"), 0);
  EXPECT_EQ(getxattr(B("hello.txt").c_str(), "user.x", buf, sizeof(buf)), -1);
  auto r = sink_.Find(ChangeEvent::REMOVEXATTR, "hello.txt");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].xattr_name(), "user.x");
}

TEST_F(MountTest, PosixAclPassesThrough) {
  // posix_acl_xattr format: version 2, then {tag, perm, id} entries.
  struct Entry {
    uint16_t tag, perm;
    uint32_t id;
  };
  struct {
    uint32_t version = 2;
    Entry entries[5] = {{0x01, 6, ~0u},    // USER_OBJ rw
                        {0x02, 6, 65534},  // USER nobody rw
                        {0x04, 4, ~0u},    // GROUP_OBJ r
                        {0x10, 6, ~0u},    // MASK rw
                        {0x20, 4, ~0u}};   // OTHER r
  } acl;
  ASSERT_EQ(setxattr(M("hello.txt").c_str(), "system.posix_acl_access", &acl, sizeof(acl), 0), 0)
      << strerror(errno);
  char buf[sizeof(acl) + 16];
  ASSERT_EQ(getxattr(B("hello.txt").c_str(), "system.posix_acl_access", buf, sizeof(buf)),
            ssize_t(sizeof(acl)));
  EXPECT_EQ(memcmp(buf, &acl, sizeof(acl)), 0);
  EXPECT_EQ(sink_.Find(ChangeEvent::SETXATTR, "hello.txt").at(0).xattr_name(),
            "system.posix_acl_access");
}

TEST_F(MountTest, InvalidatePathDropsCachedAttributes) {
  EXPECT_EQ(Lstat(M("hello.txt")).st_size, 12);  // now cached for 1 s
  WriteAll(B("hello.txt"), "changed underneath, longer");
  fs_->InvalidatePath("hello.txt");
  EXPECT_EQ(Lstat(M("hello.txt")).st_size, 26);
  EXPECT_EQ(ReadAll(M("hello.txt")), "changed underneath, longer");

  // A name removed underneath disappears at once too.
  EXPECT_EQ(Lstat(M("dir/inner.txt")).st_size, 6);
  ASSERT_EQ(unlink(B("dir/inner.txt").c_str()), 0);
  fs_->InvalidatePath("dir/inner.txt");
  struct stat st;
  EXPECT_EQ(lstat(M("dir/inner.txt").c_str(), &st), -1);
  fs_->InvalidatePath("no/such/path");  // no-op
  fs_->InvalidatePath("");
}

TEST_F(MountTest, ExitStopsRunAndUnmountCleansUp) {
  EXPECT_EQ(ReadAll(M("hello.txt")), "hello world\n");
  fs_->Exit();
  loop_.join();
  EXPECT_TRUE(run_status_.ok()) << run_status_;
  EXPECT_TRUE(IsMounted(dir_));
  fs_->Unmount();
  EXPECT_FALSE(IsMounted(dir_));
  fs_.reset();
  // The backing directory is back, untouched.
  EXPECT_EQ(ReadAll(dir_ + "/hello.txt"), "hello world\n");
}

TEST_F(MountTest, ExternalUmountEndsRun) {
  ASSERT_EQ(umount2(dir_.c_str(), 0), 0) << strerror(errno);
  loop_.join();
  EXPECT_TRUE(run_status_.ok()) << run_status_;
  fs_->Unmount();
  fs_.reset();
  EXPECT_FALSE(IsMounted(dir_));
}

TEST(MountErrors, BadArgumentsGiveClearErrors) {
  RecordingSink sink;
  MountOptions options;
  options.mountpoint = "relative/path";
  options.backing_root_fd = 0;
  auto fs = PassthroughFs::Mount(options, &sink);
  EXPECT_FALSE(fs.ok());
  EXPECT_NE(fs.status().message().find("absolute"), std::string::npos);

  options.mountpoint = "/nonexistent-replifs-dir";
  options.backing_root_fd = open("/tmp", O_PATH | O_DIRECTORY);
  fs = PassthroughFs::Mount(options, &sink);
  close(options.backing_root_fd);
  EXPECT_FALSE(fs.ok());
  EXPECT_NE(fs.status().message().find("mount failed"), std::string::npos) << fs.status();
}

}  // namespace
}  // namespace replifs::fusefs

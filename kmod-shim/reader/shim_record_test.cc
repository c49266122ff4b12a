#include "kmod-shim/reader/shim_record.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "kmod-shim/reader/fs_path.h"

namespace replifs::shim {
namespace {

using v1::ChangeEvent;

// Builds a record the way the kernel side does.
std::string Record(uint32_t syscall, const std::string& dir1, const std::string& tail1,
                   const std::string& dir2 = "", const std::string& tail2 = "", uint32_t flags = 0) {
  replifs_shim_event h{};
  h.version = REPLIFS_SHIM_VERSION;
  h.syscall = syscall;
  h.flags = flags;
  h.ino = 42;
  h.offset = 7;
  h.length = 3;
  h.name_len[0] = dir1.size();
  h.name_len[1] = tail1.size();
  h.name_len[2] = dir2.size();
  h.name_len[3] = tail2.size();
  h.size = sizeof(h) + dir1.size() + tail1.size() + dir2.size() + tail2.size();
  std::string out(reinterpret_cast<const char*>(&h), sizeof(h));
  return out + dir1 + tail1 + dir2 + tail2;
}

std::string Leaf(std::initializer_list<const char*> leaf_first) {
  std::string out;
  for (const char* c : leaf_first) out += std::string(c) + '\0';
  return out;
}

TEST(ShimRecordTest, WriteWithKnownRangeBecomesWrite) {
  std::string r = Record(REPLIFS_SYS_PWRITE64, Leaf({"f", "sub"}), "", "", "", REPLIFS_SHIM_F_RANGE_KNOWN);
  auto record = ParseRecord(r.data(), r.size());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->path, "sub/f");
  auto events = ToChangeEvents(*record);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].op(), ChangeEvent::WRITE);
  EXPECT_EQ(events[0].source(), ChangeEvent::SHIM);
  EXPECT_EQ(events[0].offset(), 7u);
  EXPECT_EQ(events[0].length(), 3u);
  EXPECT_EQ(events[0].inode(), 42u);
}

TEST(ShimRecordTest, RenameJoinsDirAndTailAndFollowsDotDot) {
  std::string r = Record(REPLIFS_SYS_RENAMEAT2, Leaf({"b", "a"}), "x", Leaf({"a"}), "b/../c/./y");
  auto record = ParseRecord(r.data(), r.size());
  ASSERT_TRUE(record.ok()) << record.status();
  auto events = ToChangeEvents(*record);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].op(), ChangeEvent::RENAME);
  EXPECT_EQ(events[0].path(), "a/b/x");
  EXPECT_EQ(events[0].new_path(), "a/c/y");
}

TEST(ShimRecordTest, ClimbingAboveTheRootRescansTheTree) {
  std::string r = Record(REPLIFS_SYS_UNLINK, "", "../elsewhere");
  auto record = ParseRecord(r.data(), r.size());
  ASSERT_TRUE(record.ok());
  auto events = ToChangeEvents(*record);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].op(), ChangeEvent::RESCAN);
  EXPECT_EQ(events[0].path(), "");
}

TEST(ShimRecordTest, OverflowFlagAddsATreeRescanAndKeepsTheRecord) {
  std::string r = Record(REPLIFS_SYS_FTRUNCATE, Leaf({"f"}), "", "", "", REPLIFS_SHIM_F_OVERFLOW);
  auto record = ParseRecord(r.data(), r.size());
  ASSERT_TRUE(record.ok());
  auto events = ToChangeEvents(*record);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].op(), ChangeEvent::RESCAN);
  EXPECT_EQ(events[0].path(), "");
  EXPECT_EQ(events[1].op(), ChangeEvent::TRUNCATE);
  EXPECT_EQ(events[1].path(), "f");
}

TEST(ShimRecordTest, NamesFromTheFilesystemRootAreMatchedToTheRoot) {
  // cwd /srv (outside), `mv data/a /tmp/b`: old name inside, new outside.
  const uint32_t flags = REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT | REPLIFS_SHIM_F_NAME2_FROM_FS_ROOT;
  std::string r = Record(REPLIFS_SYS_RENAME, Leaf({"srv"}), "data/a", "", "/tmp/b", flags);
  auto record = ParseRecord(r.data(), r.size(), {"srv/data"});
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->path, "a");
  EXPECT_TRUE(record->new_path_outside);
  auto events = ToChangeEvents(*record);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].op(), ChangeEvent::RESCAN);
  EXPECT_EQ(events[0].path(), "a");
  // Both outside: nothing.
  r = Record(REPLIFS_SYS_UNLINK, Leaf({"srv"}), "other/a", "", "", REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT);
  record = ParseRecord(r.data(), r.size(), {"srv/data"});
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(ToChangeEvents(*record).empty());
}

TEST(ShimRecordTest, NamesFromADirectoryDescriptorAreNotResolvedFromTheCwd) {
  // unlinkat(fd of /srv, "data/a") by a writer whose cwd is elsewhere: the
  // resolver (which starts at the cwd) would say "outside"; the names say a.
  int resolver_calls = 0;
  OutsideResolver from_cwd = [&](uint32_t, const std::string&, bool) -> std::optional<std::string> {
    ++resolver_calls;
    return std::nullopt;
  };
  std::string r = Record(REPLIFS_SYS_UNLINKAT, Leaf({"srv"}), "data/a", "", "",
                         REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT | REPLIFS_SHIM_F_NAME1_FROM_DIRFD);
  auto record = ParseRecord(r.data(), r.size(), {"srv/data"}, from_cwd);
  ASSERT_TRUE(record.ok());
  EXPECT_FALSE(record->path_outside);
  EXPECT_EQ(record->path, "a");
  EXPECT_EQ(resolver_calls, 0);
  // The same name from the cwd goes to the resolver.
  r = Record(REPLIFS_SYS_UNLINKAT, Leaf({"srv"}), "data/a", "", "", REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT);
  record = ParseRecord(r.data(), r.size(), {"srv/data"}, from_cwd);
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record->path_outside);
  EXPECT_EQ(resolver_calls, 1);
  // A descriptor too deep to name (no dir): outside, never guessed from the cwd.
  r = Record(REPLIFS_SYS_UNLINKAT, "", "data/a", "", "",
             REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT | REPLIFS_SHIM_F_NAME1_FROM_DIRFD);
  record = ParseRecord(r.data(), r.size(), {"data"}, from_cwd);
  ASSERT_TRUE(record.ok());
  EXPECT_TRUE(record->path_outside);
  EXPECT_EQ(resolver_calls, 1);
}

TEST(ShimRecordTest, OpenWithCreateAndTruncateGivesBoth) {
  std::string r = Record(REPLIFS_SYS_OPENAT, Leaf({"f"}), "");
  replifs_shim_event* h = reinterpret_cast<replifs_shim_event*>(r.data());
  h->call_flags = O_CREAT | O_TRUNC | O_WRONLY;
  auto record = ParseRecord(r.data(), r.size());
  ASSERT_TRUE(record.ok());
  auto events = ToChangeEvents(*record);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].op(), ChangeEvent::CREATE);
  EXPECT_EQ(events[1].op(), ChangeEvent::TRUNCATE);
  EXPECT_EQ(events[1].new_size(), 0u);
}

TEST(ShimRecordTest, SymlinkAndXattrUseTheirRawStrings) {
  std::string r = Record(REPLIFS_SYS_SYMLINKAT, "", "../target", Leaf({"d"}), "ln");
  auto record = ParseRecord(r.data(), r.size());
  ASSERT_TRUE(record.ok());
  auto events = ToChangeEvents(*record);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].op(), ChangeEvent::SYMLINK);
  EXPECT_EQ(events[0].path(), "d/ln");
  EXPECT_EQ(events[0].symlink_target(), "../target");
  r = Record(REPLIFS_SYS_FSETXATTR, Leaf({"f"}), "", "", "user.k");
  record = ParseRecord(r.data(), r.size());
  ASSERT_TRUE(record.ok());
  events = ToChangeEvents(*record);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].op(), ChangeEvent::SETXATTR);
  EXPECT_EQ(events[0].xattr_name(), "user.k");
}

TEST(ShimRecordTest, BadRecordsAreRefusedWithAReason) {
  std::string r = Record(REPLIFS_SYS_WRITE, Leaf({"f"}), "");
  EXPECT_FALSE(ParseRecord(r.data(), 10).ok());
  EXPECT_FALSE(ParseRecord(r.data(), r.size() - 1).ok());
  std::string bad_version = r;
  reinterpret_cast<replifs_shim_event*>(bad_version.data())->version = 99;
  EXPECT_FALSE(ParseRecord(bad_version.data(), bad_version.size()).ok());
  std::string bad_syscall = r;
  reinterpret_cast<replifs_shim_event*>(bad_syscall.data())->syscall = REPLIFS_SYS_COUNT;
  EXPECT_FALSE(ParseRecord(bad_syscall.data(), bad_syscall.size()).ok());
  // Back to back records split; a truncated tail is refused.
  std::string two = r + Record(REPLIFS_SYS_UNLINK, "", "g");
  auto records = ParseRecords(two.data(), two.size());
  ASSERT_TRUE(records.ok());
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[1].path, "g");
  EXPECT_FALSE(ParseRecords(two.data(), two.size() - 1).ok());
}

TEST(FsPathTest, RelativeToRoot) {
  std::string out;
  EXPECT_TRUE(RelativeToRoot("srv/data/x", "srv/data", &out));
  EXPECT_EQ(out, "x");
  EXPECT_TRUE(RelativeToRoot("srv/data", "srv/data", &out));
  EXPECT_EQ(out, "");
  EXPECT_FALSE(RelativeToRoot("srv/database", "srv/data", &out));
  EXPECT_TRUE(RelativeToRoot("a/b", "", &out));
  EXPECT_EQ(out, "a/b");
}

// A file deeper than the kernel's walk is named from this process's open
// descriptor on it; closed, it cannot be named that way.
TEST(FsPathTest, PathOfOpenFileNamesADeepFileFromItsDescriptor) {
  char tmpl[] = "/tmp/shim-fs-path-test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  std::string rel;
  for (int i = 0; i < REPLIFS_SHIM_MAX_DEPTH + 6; ++i) {
    rel += "d" + std::to_string(i) + "/";
    ASSERT_EQ(mkdir((root + "/" + rel).c_str(), 0755), 0);
  }
  rel += "f";
  int fd = open((root + "/" + rel).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  struct stat file_st;
  ASSERT_EQ(fstat(fd, &file_st), 0);
  int root_fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(root_fd, 0);
  std::optional<std::string> path = PathOfOpenFile(getpid(), file_st.st_dev, file_st.st_ino, root_fd);
  ASSERT_TRUE(path.has_value());
  EXPECT_EQ(*path, rel);
  // A root the file is not under: not named.
  ASSERT_EQ(mkdir((root + "/other").c_str(), 0755), 0);
  int other_fd = open((root + "/other").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(other_fd, 0);
  EXPECT_EQ(PathOfOpenFile(getpid(), file_st.st_dev, file_st.st_ino, other_fd), std::nullopt);
  close(other_fd);
  close(fd);
  EXPECT_EQ(PathOfOpenFile(getpid(), file_st.st_dev, file_st.st_ino, root_fd), std::nullopt);
  close(root_fd);
  ASSERT_EQ(system(("rm -rf " + root).c_str()), 0);
}

TEST(FsPathTest, PathInFilesystemOfProcIsTheRoot) {
  auto p = PathInFilesystem("/proc");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, "");
}

}  // namespace
}  // namespace replifs::shim

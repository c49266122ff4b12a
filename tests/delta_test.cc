// Only the changed part crosses the network (issue 5), end to end through the
// real binaries: a temp+rename save sends only the chunks that differ, a
// copied file sends no data, and a remount reads only the files changed
// while unprotected (including a rewrite that kept size and mtime, caught by
// ctime, and a replacement by another inode).
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <regex>
#include <utility>
#include <vector>

#include "tests/binaries_from_build.h"
#include "tests/harness.h"

namespace replifs::test {
namespace {

constexpr uint64_t kMaxChunk = 256 * 1024;

// A figure of `replifs status`, e.g. "bytes sent" or "file bytes read".
std::optional<uint64_t> StatusFigure(const RunResult& status, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(status.out, m, std::regex(name + ": (\\d+)"))) return std::nullopt;
  return std::stoull(m[1]);
}

class DeltaTest : public ReplifsTest {
 protected:
  uint64_t Figure(const std::string& name) {
    RunResult status = Status();
    EXPECT_TRUE(Succeeded(status));
    std::optional<uint64_t> value = StatusFigure(status, name);
    EXPECT_TRUE(value.has_value()) << "no '" << name << "' in:\n" << status.out;
    return value.value_or(0);
  }
  void WriteFsyncRename(const std::string& tmp, const std::string& final_path, const std::string& data) {
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << tmp << ": " << strerror(errno);
    ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(fsync(fd), 0);
    ASSERT_EQ(close(fd), 0);
    ASSERT_EQ(rename(tmp.c_str(), final_path.c_str()), 0) << strerror(errno);
  }
  void ExpectRestoredAs(const std::string& rel, const std::string& content) {
    const std::string dest = FreshPath("restore");
    ASSERT_TRUE(Succeeded(Restore(dest, {rel})));
    EXPECT_TRUE(FileContentIs(dest + "/" + rel, content));
  }
};

TEST_F(DeltaTest, TempRenameSaveSendsOnlyTheChangedChunks) {
  ASSERT_TRUE(MountOk());
  std::string doc = RandomBytes(8 << 20, 501);  // random: compression cannot hide a full resend
  WriteFile(P("doc.bin"), doc);
  ASSERT_TRUE(Succeeded(Sync()));
  const uint64_t sent_before = Figure("bytes sent");
  ASSERT_GE(sent_before, doc.size()) << "the first version must have been sent whole";

  const std::string edit = RandomBytes(4096, 502);
  doc.replace(doc.size() / 2, edit.size(), edit);
  ASSERT_NO_FATAL_FAILURE(WriteFsyncRename(P("doc.bin.tmp"), P("doc.bin"), doc));
  ASSERT_TRUE(Succeeded(Sync()));
  const uint64_t sent = Figure("bytes sent") - sent_before;
  std::cout << "[ delta    ] temp+rename of 8 MiB with 4 KiB changed sent " << sent << " bytes" << std::endl;
  EXPECT_GE(sent, edit.size()) << "the changed bytes must have been sent";
  EXPECT_LE(sent, 3 * edit.size() / 2 + 2 * kMaxChunk) << "more than the changed chunks went out";
  ExpectRestoredAs("doc.bin", doc);
}

TEST_F(DeltaTest, CopiedFileSendsNoData) {
  ASSERT_TRUE(MountOk());
  const std::string data = RandomBytes(3 << 20, 503);
  WriteFile(P("original.bin"), data);
  ASSERT_TRUE(Succeeded(Sync()));
  const uint64_t sent_before = Figure("bytes sent");
  WriteFile(P("copy.bin"), data);  // as cp does: a new inode, the same bytes
  ASSERT_TRUE(Succeeded(Sync()));
  EXPECT_EQ(Figure("bytes sent") - sent_before, 0u) << "a copy must send no chunk data";
  ExpectRestoredAs("copy.bin", data);
}

TEST_F(DeltaTest, RemountReadsOnlyFilesChangedWhileUnprotected) {
  const std::string same_size = RandomBytes(300 * 1024, 504);
  const std::string replaced = RandomBytes(200 * 1024, 505);
  WriteFile(P("offline-a.bin"), same_size);
  WriteFile(P("offline-b.bin"), replaced);
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  ASSERT_TRUE(Succeeded(Umount()));

  // (1) Rewritten in place, same size, mtime set back: only ctime tells.
  struct stat a_before;
  ASSERT_EQ(stat(P("offline-a.bin").c_str(), &a_before), 0);
  std::string a_new = same_size;
  a_new.replace(1000, 5000, RandomBytes(5000, 506));
  WriteFile(P("offline-a.bin"), a_new);
  const struct timespec a_times[2] = {a_before.st_atim, a_before.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, P("offline-a.bin").c_str(), a_times, 0), 0);
  // (2) Replaced by another inode with the same size and mtime.
  struct stat b_before;
  ASSERT_EQ(stat(P("offline-b.bin").c_str(), &b_before), 0);
  std::string b_new = RandomBytes(replaced.size(), 507);
  WriteFile(P("offline-b.new"), b_new);
  const struct timespec b_times[2] = {b_before.st_atim, b_before.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, P("offline-b.new").c_str(), b_times, 0), 0);
  ASSERT_EQ(rename(P("offline-b.new").c_str(), P("offline-b.bin").c_str()), 0);

  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  // Every other file of the tree is as acknowledged: not a byte of it is read.
  EXPECT_EQ(Figure("file bytes read"), a_new.size() + b_new.size());
  EXPECT_GE(Figure("changed while unprotected"), 1u);
  ExpectRestoredAs("offline-a.bin", a_new);
  ExpectRestoredAs("offline-b.bin", b_new);
}

TEST_F(DeltaTest, ChunkNamedByAStaleMapButGoneFromTheServerIsReadAgain) {
  std::string data = RandomBytes(2 << 20, 508);
  WriteFile(P("stale.bin"), data);
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  ASSERT_TRUE(Succeeded(Umount()));
  // Every chunk id in the client's maps now names nothing on the server (as
  // after a store was replaced or collected); sizes and identities still match.
  // Records are 16-byte id + 4-byte length: replace the ids, keep the lengths.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((state_ + "/chunk-maps.sqlite").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* select = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT rowid, chunks FROM chunk_maps", -1, &select, nullptr), SQLITE_OK);
  std::vector<std::pair<int64_t, std::string>> rows;
  while (sqlite3_step(select) == SQLITE_ROW) {
    const char* blob = static_cast<const char*>(sqlite3_column_blob(select, 1));
    rows.emplace_back(sqlite3_column_int64(select, 0), std::string(blob, sqlite3_column_bytes(select, 1)));
  }
  sqlite3_finalize(select);
  size_t ids_replaced = 0;
  for (auto& [rowid, blob] : rows) {
    ASSERT_EQ(blob.size() % 20, 0u);
    for (size_t i = 0; i < blob.size(); i += 20, ++ids_replaced) {
      blob.replace(i, 16, RandomBytes(16, 600 + ids_replaced));
    }
    sqlite3_stmt* update = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE chunk_maps SET chunks = ?1 WHERE rowid = ?2", -1, &update, nullptr),
              SQLITE_OK);
    sqlite3_bind_blob(update, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int64(update, 2, rowid);
    ASSERT_EQ(sqlite3_step(update), SQLITE_DONE);
    sqlite3_finalize(update);
  }
  ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
  ASSERT_GT(ids_replaced, 8u);
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  const std::string edit = RandomBytes(4096, 509);
  int fd = open(P("stale.bin").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, edit.data(), edit.size(), 1 << 20), static_cast<ssize_t>(edit.size()));
  ASSERT_EQ(close(fd), 0);
  data.replace(1 << 20, edit.size(), edit);
  ASSERT_TRUE(Succeeded(Sync()));
  EXPECT_GE(Figure("file bytes read"), data.size()) << "the file must have been read whole again";
  ExpectRestoredAs("stale.bin", data);
}

}  // namespace
}  // namespace replifs::test

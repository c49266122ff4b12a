// Only the changed bytes cross the network (issue 5, wire side), end to end
// through the real binaries: a chunk list goes as splices of the list the
// server holds, a changed chunk as a patch of the chunks it stores; a base
// the server does not hold is refused and the full list follows; restores
// after patched uploads are byte-identical.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>

#include "tests/binaries_from_build.h"
#include "tests/harness.h"

namespace replifs::test {
namespace {

class WireDeltaTest : public ReplifsTest {
 protected:
  // "wire bytes" of `replifs status`: every gRPC message both ways, serialized.
  uint64_t WireBytes() {
    RunResult status = Status();
    EXPECT_TRUE(Succeeded(status));
    std::smatch m;
    if (!std::regex_search(status.out, m, std::regex("wire bytes: (\\d+)"))) {
      ADD_FAILURE() << "no wire bytes in:\n" << status.out;
      return 0;
    }
    return std::stoull(m[1]);
  }
  // Overwrites bytes in place, as an editor or database does.
  void WriteAt(const std::string& path, uint64_t offset, const std::string& bytes) {
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
    ASSERT_EQ(pwrite(fd, bytes.data(), bytes.size(), offset), static_cast<ssize_t>(bytes.size()));
    ASSERT_EQ(close(fd), 0);
  }
  void ExpectRestoredAs(const std::string& rel, const std::string& content) {
    const std::string dest = FreshPath("restore");
    ASSERT_TRUE(Succeeded(Restore(dest, {rel})));
    EXPECT_TRUE(FileContentIs(dest + "/" + rel, content));
  }
  int DaemonLogLines(const std::string& words) {
    std::ifstream log(state_ + "/daemon.log");
    int count = 0;
    for (std::string line; std::getline(log, line);) count += line.find(words) != std::string::npos;
    return count;
  }
};

TEST_F(WireDeltaTest, FourKiBEditOfABigFileSendsAboutFourKiB) {
  ASSERT_TRUE(MountOk());
  // Random: compression cannot hide a resent chunk (64 KiB) or list (~22 KiB).
  std::string data = RandomBytes(64 << 20, 701);
  WriteFile(P("big.bin"), data);
  ASSERT_TRUE(Succeeded(Sync()));
  const uint64_t before = WireBytes();
  const std::string edit = RandomBytes(4096, 702);
  ASSERT_NO_FATAL_FAILURE(WriteAt(P("big.bin"), 40 << 20, edit));
  data.replace(40 << 20, edit.size(), edit);
  ASSERT_TRUE(Succeeded(Sync()));
  const uint64_t sent = WireBytes() - before;
  std::cout << "[ wire     ] 4 KiB edit of a 64 MiB file (1,000+ chunks): " << sent << " bytes on the wire"
            << std::endl;
  EXPECT_GE(sent, edit.size()) << "the edit itself must have crossed";
  EXPECT_LE(sent, 16u << 10) << "more than the edit went out: a whole chunk or the whole list";
  ExpectRestoredAs("big.bin", data);
  EXPECT_TRUE(Succeeded(Verify()));
}

TEST_F(WireDeltaTest, SmallFileEditsSendAboutTheChangedBytes) {
  ASSERT_TRUE(MountOk());
  std::vector<std::string> files;
  for (int i = 0; i < 20; ++i) {
    files.push_back(RandomBytes(12000 + i * 100, 710 + i));  // one chunk each (< 16 KiB)
    WriteFile(P("small" + std::to_string(i)), files.back());
  }
  ASSERT_TRUE(Succeeded(Sync()));
  const uint64_t before = WireBytes();
  for (int i = 0; i < 20; i += 4) {  // 5 files, 100 bytes each
    const std::string edit = RandomBytes(100, 740 + i);
    ASSERT_NO_FATAL_FAILURE(WriteAt(P("small" + std::to_string(i)), 1000 + i, edit));
    files[i].replace(1000 + i, edit.size(), edit);
  }
  ASSERT_TRUE(Succeeded(Sync()));
  const uint64_t sent = WireBytes() - before;
  std::cout << "[ wire     ] 100-byte edits of 5 small files: " << sent << " bytes on the wire" << std::endl;
  EXPECT_GE(sent, 500u);
  // The mount captures writes at page granularity (writeback cache): each
  // edit is a 4 KiB dirty range of random bytes. Whole files would be 5 x 12 KB.
  EXPECT_LE(sent, 5u * 6000) << "more than the edited pages went out";
  for (int i = 0; i < 20; i += 4) ExpectRestoredAs("small" + std::to_string(i), files[i]);
  EXPECT_TRUE(Succeeded(Verify()));
}

// Text is stored as zstd frames: restore gets them as they are and
// decompresses them itself (ReadChunks accept_compressed), checking ids.
TEST_F(WireDeltaTest, CompressedChunksRestoreByteIdentical) {
  ASSERT_TRUE(MountOk());
  std::string text;
  for (int i = 0; text.size() < (3u << 20); ++i) text += "line " + std::to_string(i * 7919 % 100003) + " of a log\n";
  ASSERT_TRUE(Succeeded(Sync()));  // the fixture's own files first
  const uint64_t before = WireBytes();
  WriteFile(P("log.txt"), text);
  ASSERT_TRUE(Succeeded(Sync()));
  EXPECT_LT(WireBytes() - before, text.size() / 2) << "the text should have been sent compressed";
  ExpectRestoredAs("log.txt", text);
  EXPECT_TRUE(Succeeded(Verify()));
}

// The client's acknowledged map names an older list than the server holds
// (v1 while the server has v2): the delta is refused, the full list goes,
// and patches made from v1's chunks (still stored) rebuild the right bytes.
TEST_F(WireDeltaTest, ADeltaFromAnOldBaseIsRefusedAndTheFullListCommits) {
  std::string data = RandomBytes(8 << 20, 720);
  WriteFile(P("f.bin"), data);
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  auto read_chunks = [&]() {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open((state_ + "/chunk-maps.sqlite").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* select = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, "SELECT chunks FROM chunk_maps ORDER BY length(chunks) DESC LIMIT 1", -1,
                                 &select, nullptr),
              SQLITE_OK);
    std::string blob;
    if (sqlite3_step(select) == SQLITE_ROW) {
      blob.assign(static_cast<const char*>(sqlite3_column_blob(select, 0)), sqlite3_column_bytes(select, 0));
    }
    sqlite3_finalize(select);
    sqlite3_close(db);
    return blob;
  };
  const std::string v1_chunks = read_chunks();
  ASSERT_GT(v1_chunks.size(), 20u * 40);  // 40+ chunks of 20 bytes
  // v2: 4 KiB at 4 MiB.
  ASSERT_NO_FATAL_FAILURE(WriteAt(P("f.bin"), 4 << 20, RandomBytes(4096, 721)));
  ASSERT_TRUE(Succeeded(Sync()));
  ASSERT_TRUE(Succeeded(Umount()));
  ASSERT_NE(read_chunks(), v1_chunks);
  // Back to v1's list under v2's identity: every chunk but the edited one is the same.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((state_ + "/chunk-maps.sqlite").c_str(), &db), SQLITE_OK);
    sqlite3_stmt* update = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db,
                                 "UPDATE chunk_maps SET chunks = ?1 WHERE rowid = (SELECT rowid FROM chunk_maps "
                                 "ORDER BY length(chunks) DESC LIMIT 1)",
                                 -1, &update, nullptr),
              SQLITE_OK);
    sqlite3_bind_blob(update, 1, v1_chunks.data(), static_cast<int>(v1_chunks.size()), SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(update), SQLITE_DONE);
    sqlite3_finalize(update);
    ASSERT_EQ(sqlite3_close(db), SQLITE_OK);
  }
  ASSERT_TRUE(MountOk());
  ASSERT_TRUE(Succeeded(Sync()));
  // v3 overwrites exactly v2's range, so a re-chunk from v1's map is right.
  const std::string edit = RandomBytes(4096, 722);
  ASSERT_NO_FATAL_FAILURE(WriteAt(P("f.bin"), 4 << 20, edit));
  data.replace(4 << 20, edit.size(), edit);
  ASSERT_TRUE(Succeeded(Sync()));
  EXPECT_GE(DaemonLogLines("chunk-list delta refused"), 1) << "the server should have refused the v1 base";
  ExpectRestoredAs("f.bin", data);
  EXPECT_TRUE(Succeeded(Verify()));
}

}  // namespace
}  // namespace replifs::test

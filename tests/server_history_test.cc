// History on a running server: `replifs-server scrub` finds damage,
// `replifs-server prune` keeps what its policy says and collects garbage
// without ever deleting a chunk a concurrent commit needs, and
// `replifs versions` lists a path's versions. Real processes, raw stub.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/escaping.h"
#include "tests/raw_server_fixture.h"

#include "tests/binaries_from_build.h"

namespace replifs::test {
namespace {

constexpr int64_t kDayNs = int64_t{86400} * 1000000000;

class ServerHistoryTest : public RawServerTest {
 protected:
  void SetUp() override {
    RawServerTest::SetUp();
    token_ = CreateRepo("home");
    ASSERT_NO_FATAL_FAILURE(StartServer());
    stub_ = Stub();
    v1::HelloReply hello;
    ASSERT_TRUE(Hello(*stub_, "home", token_, &hello).ok());
    secret_ = hello.chunk_secret();
  }
  // Uploads `data` and commits it as `path` at `time_ns` (0: now).
  grpc::Status Commit(const std::string& path, const std::string& data, uint64_t seq,
                      int64_t time_ns = 0) {
    const v1::ChunkUpload chunk = Chunk("home", secret_, data);
    v1::MissingChunksRequest missing;
    missing.set_repo("home");
    missing.add_ids(chunk.id());
    v1::MissingChunksReply missing_reply;
    grpc::Status status = stub_->MissingChunks(Context(token_).get(), missing, &missing_reply);
    if (!status.ok()) return status;
    if (missing_reply.ids_size() > 0) {
      status = Upload(*stub_, token_, {chunk});
      if (!status.ok()) return status;
    }
    v1::Operation op = PutFile(path, chunk, seq);
    op.set_time_ns(time_ns);
    return Apply(*stub_, "home", token_, {op});
  }
  std::vector<v1::NodeState> Versions(const std::string& path) {
    v1::ListVersionsRequest request;
    request.set_repo("home");
    request.set_path(path);
    auto context = Context(token_);
    auto reader = stub_->ListVersions(context.get(), request);
    std::vector<v1::NodeState> versions;
    v1::NodeState state;
    while (reader->Read(&state)) versions.push_back(state);
    EXPECT_TRUE(reader->Finish().ok());
    return versions;
  }
  RunResult Server(std::vector<std::string> args) {
    args.insert(args.begin(), ServerBin());
    args.push_back("--store");
    args.push_back(store_);
    return RunProcess(args, 120);
  }
  // Store files holding `bytes` (chunks too short to compress are stored raw).
  std::vector<std::string> StoreFilesContaining(const std::string& bytes) {
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(store_ + "/repos")) {
      if (!entry.is_regular_file()) continue;
      if (ReadText(entry.path()).find(bytes) != std::string::npos) files.push_back(entry.path());
    }
    return files;
  }
  std::vector<std::string> PackFiles() {
    std::vector<std::string> packs;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(store_ + "/repos")) {
      if (entry.path().extension() == ".pack") packs.push_back(entry.path());
    }
    return packs;
  }
  void RemovePackIndex() {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::filesystem::remove(store_ + "/repos/pack-index.sqlite" + suffix);
    }
  }
  // `replifs restore PATH` from the running server; the restored bytes.
  std::string Restore(const std::string& path) {
    const std::string dest = root_ + "/restored-" + std::to_string(++restores_);
    RunResult restore =
        RunProcess({ReplifsBin(), "restore", "--to", dest, "--server", server_.address(), "--repo",
                    "home", "--token-file", WriteToken("home", token_), path},
                   120);
    EXPECT_EQ(restore.exit_code, 0) << restore.Describe();
    return ReadText(dest + "/" + path);
  }
  // Every chunk named by any version of any listed path reads back intact.
  void ExpectEveryVersionReadable(const std::vector<std::string>& paths) {
    for (const std::string& path : paths) {
      for (const v1::NodeState& version : Versions(path)) {
        for (const v1::ChunkRef& ref : version.chunks()) {
          std::string data;
          const grpc::Status status = Read(*stub_, "home", token_, ref.id(), &data);
          EXPECT_TRUE(status.ok()) << path << " @" << version.time_ns() << ": "
                                   << status.error_message();
          EXPECT_EQ(data.size(), ref.length());
        }
      }
    }
  }

  std::string token_, secret_;
  std::unique_ptr<v1::Backup::Stub> stub_;
  int restores_ = 0;
};

TEST_F(ServerHistoryTest, ScrubReportsAFlippedByteAndTheRestStillRestores) {
  const std::string damaged_data = "this chunk will be damaged on disk\n";
  const std::string healthy_data = "this one stays healthy\n";
  ASSERT_TRUE(Commit("damaged.txt", damaged_data, 1).ok());
  ASSERT_TRUE(Commit("healthy.txt", healthy_data, 2).ok());
  RunResult clean = Server({"scrub"});
  EXPECT_EQ(clean.exit_code, 0) << clean.Describe();
  EXPECT_NE(clean.out.find("2 chunks"), std::string::npos) << clean.out;
  EXPECT_NE(clean.out.find("0 damaged"), std::string::npos) << clean.out;

  const std::string damaged_id = Chunk("home", secret_, damaged_data).id();
  const std::vector<std::string> files = StoreFilesContaining(damaged_data);
  ASSERT_EQ(files.size(), 1u);
  {
    // Flip a bit of the chunk's last byte, inside its pack.
    const size_t at = ReadText(files[0]).find(damaged_data) + damaged_data.size() - 1;
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(at));
    f.put(static_cast<char>(damaged_data.back() ^ 0x20));
  }
  RunResult dirty = Server({"scrub"});
  std::cout << "[ scrub    ] " << dirty.out << std::flush;
  EXPECT_EQ(dirty.exit_code, 1) << dirty.Describe();
  EXPECT_NE(dirty.out.find("DAMAGED"), std::string::npos) << dirty.out;
  EXPECT_NE(dirty.out.find(absl::BytesToHexString(damaged_id)), std::string::npos) << dirty.out;
  EXPECT_NE(dirty.out.find("1 damaged"), std::string::npos) << dirty.out;

  // The damaged chunk is never served; the healthy file restores.
  std::string data;
  EXPECT_EQ(Read(*stub_, "home", token_, damaged_id, &data).error_code(),
            grpc::StatusCode::DATA_LOSS);
  const std::string token_file = WriteToken("home", token_);
  const std::string dest = root_ + "/restored";
  RunResult restore =
      RunProcess({ReplifsBin(), "restore", "--to", dest, "--server", server_.address(), "--repo",
                  "home", "--token-file", token_file, "healthy.txt"},
                 60);
  EXPECT_EQ(restore.exit_code, 0) << restore.Describe();
  EXPECT_EQ(ReadText(dest + "/healthy.txt"), healthy_data);
}

TEST_F(ServerHistoryTest, PruneIsADryRunUntilApplyThenKeepsWhatThePolicySays) {
  // Ten daily versions of one file, the newest yesterday.
  const int64_t now = static_cast<int64_t>(time(nullptr)) * 1000000000;
  std::vector<std::string> contents;
  for (int day = 10; day >= 1; --day) {
    contents.push_back("version from " + std::to_string(day) + " days ago\n");
    ASSERT_TRUE(Commit("f", contents.back(), 11 - day, now - day * kDayNs).ok());
  }
  ASSERT_TRUE(Commit("other", "untouched\n", 20).ok());
  ASSERT_EQ(Versions("f").size(), 10u);

  RunResult dry = Server({"prune", "--repo", "home", "--keep-last", "2", "--keep-daily", "4"});
  EXPECT_EQ(dry.exit_code, 0) << dry.Describe();
  EXPECT_NE(dry.out.find("would remove 6 of 11 versions"), std::string::npos) << dry.out;
  EXPECT_EQ(Versions("f").size(), 10u) << "a dry run changed the store";

  RunResult keep_within = Server({"prune", "--repo", "home", "--keep-within", "3d", "--apply",
                                  "--gc-grace", "0"});
  EXPECT_EQ(keep_within.exit_code, 0) << keep_within.Describe();
  // Days 1 and 2 are within 3 days (day 3 is just outside), plus nothing else.
  std::vector<v1::NodeState> left = Versions("f");
  ASSERT_EQ(left.size(), 2u) << keep_within.out;
  EXPECT_EQ(left[0].size(), contents[8].size());
  EXPECT_EQ(left[1].size(), contents[9].size());
  EXPECT_EQ(Versions("other").size(), 1u);
  EXPECT_NE(keep_within.out.find("collected 8 unreferenced chunks"), std::string::npos)
      << keep_within.out;
  // The pruned versions' chunks are gone, from the packs too (repacked),
  // the kept ones restore.
  std::string gone;
  EXPECT_EQ(Read(*stub_, "home", token_, Chunk("home", secret_, contents[0]).id(), &gone)
                .error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(StoreFilesContaining(contents[0]).empty());
  EXPECT_FALSE(StoreFilesContaining(contents[9]).empty());
  EXPECT_NE(keep_within.out.find("repacked 1 packs"), std::string::npos) << keep_within.out;
  ExpectEveryVersionReadable({"f", "other"});
  RunResult scrub = Server({"scrub"});
  EXPECT_EQ(scrub.exit_code, 0) << scrub.Describe();

  RunResult no_policy = Server({"prune", "--repo", "home", "--keep-daily", "x"});
  EXPECT_EQ(no_policy.exit_code, 2) << no_policy.Describe();
  RunResult no_repo = Server({"prune", "--repo", "nobody", "--keep-last", "1"});
  EXPECT_EQ(no_repo.exit_code, 1) << no_repo.Describe();
}

// Commits race garbage collection. With no grace period a commit may be
// refused (FAILED_PRECONDITION: its chunk went) but never commits a version
// naming a deleted chunk; with the default grace no commit is refused.
TEST_F(ServerHistoryTest, GarbageCollectionNeverDeletesAChunkACommitNeeds) {
  for (const std::string grace : {"0", "1h"}) {
    SCOPED_TRACE("gc grace " + grace);
    std::atomic<bool> stop{false};
    std::atomic<int> collections{0};
    std::thread collector([&] {
      while (!stop) {
        RunResult r = Server({"prune", "--repo", "home", "--keep-last", "1", "--apply",
                              "--gc-grace", grace});
        EXPECT_EQ(r.exit_code, 0) << r.Describe();
        ++collections;
      }
    });
    std::map<grpc::StatusCode, int> outcomes;
    static uint64_t seq = 100;
    for (int i = 0; i < 120; ++i) {
      // Some contents recur, so MissingChunks finds them present and the
      // commit names a chunk it did not upload itself.
      const std::string data = i % 3 == 0 ? "recurring " + std::to_string(i % 9)
                                          : "unique " + grace + std::to_string(i);
      outcomes[Commit("f" + std::to_string(i % 4), data, ++seq).error_code()]++;
    }
    stop = true;
    collector.join();
    std::cout << "[ gc race  ] grace " << grace << ": " << collections.load() << " collections, "
              << outcomes[grpc::StatusCode::OK] << " commits ok, "
              << outcomes[grpc::StatusCode::FAILED_PRECONDITION] << " refused" << std::endl;
    EXPECT_GT(collections.load(), 2);
    for (const auto& [code, count] : outcomes) {
      EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::FAILED_PRECONDITION)
          << count << " commits ended with code " << code;
    }
    if (grace != "0") {
      EXPECT_EQ(outcomes[grpc::StatusCode::OK], 120);
    }
    ExpectEveryVersionReadable({"f0", "f1", "f2", "f3"});
    RunResult scrub = Server({"scrub"});
    EXPECT_EQ(scrub.exit_code, 0) << scrub.Describe();
  }
}

TEST_F(ServerHistoryTest, VersionsCommandListsTimesAndSizes) {
  ASSERT_TRUE(Commit("docs/a.txt", "one\n", 1, 1795392000LL * 1000000000).ok());
  ASSERT_TRUE(Commit("docs/a.txt", "two, longer\n", 2, 1795392060LL * 1000000000).ok());
  v1::Operation remove;
  remove.set_seq(3);
  remove.set_time_ns(1795392120LL * 1000000000);
  remove.set_remove("docs/a.txt");
  ASSERT_TRUE(Apply(*stub_, "home", token_, {remove}).ok());
  const std::string token_file = WriteToken("home", token_);
  RunResult r = RunProcess({ReplifsBin(), "versions", "--server", server_.address(), "--repo",
                            "home", "--token-file", token_file, "docs/a.txt"},
                           60);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out,
            "2026-11-23T00:00:00.000Z  4 bytes  file\n"
            "2026-11-23T00:01:00.000Z  12 bytes  file\n"
            "2026-11-23T00:02:00.000Z  deleted\n")
      << r.Describe();
  RunResult none = RunProcess({ReplifsBin(), "versions", "--server", server_.address(), "--repo",
                               "home", "--token-file", token_file, "never/there"},
                              60);
  EXPECT_EQ(none.exit_code, 1) << none.Describe();
  RunResult hostile = RunProcess({ReplifsBin(), "versions", "--server", server_.address(),
                                  "--repo", "home", "--token-file", token_file, "../etc"},
                                 60);
  EXPECT_EQ(hostile.exit_code, 2) << hostile.Describe();
}

// The pack index is derived data: deleted, it is rebuilt from the packs
// (by `replifs-server rebuild-index`, or by a server that finds it missing),
// a torn pack tail is cut off, and every file restores.
TEST_F(ServerHistoryTest, ADeletedPackIndexIsRebuiltFromThePacksAndEverythingRestores) {
  // 100 chunks: the file's chunk list is stored as pages, which need the index too.
  std::vector<v1::ChunkUpload> chunks;
  std::string big;
  v1::Operation op;
  op.set_seq(1);
  v1::NodeState* put = op.mutable_put();
  put->set_path("big");
  put->set_type(v1::NodeState::REGULAR);
  put->set_mode(0644);
  for (int i = 0; i < 100; ++i) {
    const std::string data = "chunk " + std::to_string(i) + " " + std::string(300 + i, 'a' + i % 26);
    chunks.push_back(Chunk("home", secret_, data));
    big += data;
    v1::ChunkRef* ref = put->add_chunks();
    ref->set_id(chunks.back().id());
    ref->set_length(chunks.back().length());
  }
  put->set_size(big.size());
  ASSERT_TRUE(Upload(*stub_, token_, chunks).ok());
  ASSERT_TRUE(Apply(*stub_, "home", token_, {op}).ok());
  ASSERT_TRUE(Commit("small.txt", "a small file\n", 2).ok());
  ASSERT_EQ(Restore("big"), big);

  RunResult busy = Server({"rebuild-index"});
  EXPECT_EQ(busy.exit_code, 1) << "rebuilt under a running server: " << busy.Describe();
  ASSERT_EQ(server_.Stop(), "exited with status 0 after SIGTERM");
  const std::vector<std::string> packs = PackFiles();
  ASSERT_EQ(packs.size(), 1u);
  {
    std::ofstream torn(packs[0], std::ios::binary | std::ios::app);
    torn << std::string("RFPE\x01\x00", 6) << std::string(94, 'x');  // 100 bytes of a cut append
  }
  RemovePackIndex();
  RunResult lost = Server({"scrub"});  // opens (and creates) an empty index
  EXPECT_EQ(lost.exit_code, 1) << lost.Describe();
  EXPECT_NE(lost.err.find("lost its pack index"), std::string::npos) << lost.Describe();
  RunResult rebuilt = Server({"rebuild-index"});
  std::cout << "[ rebuild  ] " << rebuilt.out << std::flush;
  EXPECT_EQ(rebuilt.exit_code, 0) << rebuilt.Describe();
  EXPECT_NE(rebuilt.out.find("in 1 packs indexed, 100 bytes of torn tails cut off"),
            std::string::npos)
      << rebuilt.out;
  ASSERT_NO_FATAL_FAILURE(StartServer());
  stub_ = Stub();
  EXPECT_EQ(Restore("big"), big);
  EXPECT_EQ(Restore("small.txt"), "a small file\n");
  RunResult scrub = Server({"scrub"});
  EXPECT_EQ(scrub.exit_code, 0) << scrub.Describe();
  EXPECT_NE(scrub.out.find("101 chunks"), std::string::npos) << scrub.out;

  // A server that finds the index lost rebuilds it before serving, even
  // after another process opened (and so recreated) it empty.
  ASSERT_EQ(server_.Stop(), "exited with status 0 after SIGTERM");
  RemovePackIndex();
  EXPECT_EQ(Server({"scrub"}).exit_code, 1);
  ASSERT_NO_FATAL_FAILURE(StartServer());
  stub_ = Stub();
  EXPECT_EQ(Restore("big"), big);
}

}  // namespace
}  // namespace replifs::test

// The backup server as an attacker meets it: a real `replifs-server` process
// on 127.0.0.1, driven with the generated gRPC stub directly (no replifs
// client in between), plus the CLI where credentials are concerned.
// Repositories and tokens, TLS, hostile requests, links in the store.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/chunker/chunker.h"
#include "replifs/v1/backup.grpc.pb.h"
#include "tests/raw_server_fixture.h"

#include "tests/binaries_from_build.h"

namespace replifs::test {
namespace {

using ServerSecurityTest = RawServerTest;

TEST_F(ServerSecurityTest, EachRepositoryOpensOnlyWithItsOwnToken) {
  const std::string alice = CreateRepo("alice");
  const std::string bob = CreateRepo("bob");
  ASSERT_NE(alice, bob);
  StartServer();
  // A repository created while the server runs is usable at once.
  const std::string carol = CreateRepo("carol");
  auto stub = Stub();
  v1::HelloReply reply;
  EXPECT_TRUE(Hello(*stub, "alice", alice, &reply).ok());
  EXPECT_TRUE(Hello(*stub, "carol", carol, &reply).ok());
  EXPECT_EQ(Hello(*stub, "bob", alice, &reply).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Hello(*stub, "bob", "", &reply).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Hello(*stub, "nobody", alice, &reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Clients no longer create repositories by saying hello.
  RunResult list = RunProcess({ServerBin(), "repo", "list", "--store", store_}, 30);
  EXPECT_EQ(list.out, "alice\nbob\ncarol\n") << list.Describe();
  // The token is nowhere in the store, only its hash.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(store_)) {
    if (entry.is_regular_file()) {
      EXPECT_EQ(ReadText(entry.path()).find(alice), std::string::npos) << entry.path();
    }
  }

  // The CLI: disaster recovery with --token-file, and a clear refusal with a
  // wrong one.
  const std::string dest = root_ + "/restored";
  RunResult ok = RunProcess({ReplifsBin(), "restore", "--to", dest, "--server", server_.address(),
                             "--repo", "alice", "--token-file", WriteToken("alice", alice)},
                            60);
  EXPECT_EQ(ok.exit_code, 0) << ok.Describe();
  RunResult refused =
      RunProcess({ReplifsBin(), "restore", "--to", root_ + "/refused", "--server",
                  server_.address(), "--repo", "bob", "--token-file", WriteToken("alice", alice)},
                 60);
  EXPECT_NE(refused.exit_code, 0) << refused.Describe();
  EXPECT_NE(refused.err.find("wrong token"), std::string::npos) << refused.Describe();
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
  RunResult no_file = RunProcess({ReplifsBin(), "restore", "--to", root_ + "/x", "--server",
                                  server_.address(), "--repo", "bob", "--token-file",
                                  root_ + "/missing.token"},
                                 60);
  EXPECT_EQ(no_file.exit_code, 2) << no_file.Describe();
}

TEST_F(ServerSecurityTest, TlsServesOnlyClientsThatTrustItsCertificate) {
  std::string error;
  auto cert = MakeSelfSigned(root_, "server", &error);
  ASSERT_TRUE(cert.has_value()) << error;
  auto stranger = MakeSelfSigned(root_, "stranger", &error);
  ASSERT_TRUE(stranger.has_value()) << error;
  const std::string token = CreateRepo("home");
  StartServer({"--tls-cert", cert->cert_file, "--tls-key", cert->key_file});

  v1::HelloReply reply;
  auto trusted = Stub(ReadText(cert->cert_file));
  // A TLS handshake on a loaded machine can miss gRPC's connect window once;
  // a trusting client retries, the refusals below must stay refusals.
  grpc::Status status = Hello(*trusted, "home", token, &reply);
  for (int retry = 0; retry < 3 && status.error_code() == grpc::StatusCode::UNAVAILABLE; ++retry) {
    status = Hello(*trusted, "home", token, &reply);
  }
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(reply.chunk_secret().size(), 32u);
  auto plaintext = Stub();
  EXPECT_EQ(Hello(*plaintext, "home", token, &reply).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto wrong_ca = Stub(ReadText(stranger->cert_file));
  EXPECT_EQ(Hello(*wrong_ca, "home", token, &reply).error_code(), grpc::StatusCode::UNAVAILABLE);

  // The CLI with --ca, and without it.
  const std::string token_file = WriteToken("home", token);
  RunResult ok =
      RunProcess({ReplifsBin(), "restore", "--to", root_ + "/r1", "--server", server_.address(),
                  "--repo", "home", "--token-file", token_file, "--ca", cert->cert_file},
                 60);
  EXPECT_EQ(ok.exit_code, 0) << ok.Describe();
  RunResult no_ca = RunProcess({ReplifsBin(), "restore", "--to", root_ + "/r2", "--server",
                                server_.address(), "--repo", "home", "--token-file", token_file},
                               90);
  EXPECT_NE(no_ca.exit_code, 0) << no_ca.Describe();
}

TEST_F(ServerSecurityTest, PlaintextOffLoopbackIsRefusedUnlessInsecure) {
  RunResult r = RunProcess({ServerBin(), "--listen", "0.0.0.0:0", "--store", store_}, 30);
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_NE(r.err.find("without TLS"), std::string::npos) << r.Describe();
  EXPECT_NE(r.err.find("--insecure"), std::string::npos) << r.Describe();
  RunResult half = RunProcess(
      {ServerBin(), "--listen", "127.0.0.1:0", "--store", store_, "--tls-cert", "/nonexistent"}, 30);
  EXPECT_EQ(half.exit_code, 2) << half.Describe();
}

// Hostile and inconsistent requests: each gets its error code, the server
// lives on, and what was stored before is intact afterwards.
TEST_F(ServerSecurityTest, HostileRequestsFailCleanlyAndLeaveTheStoreIntact) {
  const std::string token = CreateRepo("home");
  StartServer();
  auto stub = Stub();
  v1::HelloReply hello;
  ASSERT_TRUE(Hello(*stub, "home", token, &hello).ok());
  const std::string secret = hello.chunk_secret();
  const v1::ChunkUpload good = Chunk("home", secret, "the good file\n");
  ASSERT_TRUE(Upload(*stub, token, {good}).ok());
  ASSERT_TRUE(Apply(*stub, "home", token, {PutFile("good.txt", good, 1)}).ok());

  const std::vector<std::string> bad_paths = {"../x", "/abs", "a/../../b", std::string("a\0b", 3),
                                              std::string(5000, 'p'), "a//b", "./a",
                                              std::string(300, 'c') + "/f", ""};
  for (const std::string& path : bad_paths) {
    SCOPED_TRACE("path of " + std::to_string(path.size()) + " bytes");
    EXPECT_EQ(Apply(*stub, "home", token, {PutFile(path, good, 2)}).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    v1::Operation remove;
    remove.set_seq(3);
    remove.set_remove(path);
    EXPECT_EQ(Apply(*stub, "home", token, {remove}).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    v1::Operation rename;
    rename.set_seq(3);
    rename.mutable_rename()->set_from("good.txt");
    rename.mutable_rename()->set_to(path);
    EXPECT_EQ(Apply(*stub, "home", token, {rename}).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A manifest naming a chunk never uploaded.
  const v1::ChunkUpload never = Chunk("home", secret, "never uploaded");
  EXPECT_EQ(Apply(*stub, "home", token, {PutFile("ghost", never, 4)}).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  // A chunk whose data does not match its id; one with a lying length; a
  // zstd bomb claiming a small length; a chunk over the size limit.
  v1::ChunkUpload forged = Chunk("home", secret, "honest");
  forged.set_data("forged");
  EXPECT_EQ(Upload(*stub, token, {forged}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::ChunkUpload lying = good;
  lying.set_length(good.length() + 1);
  EXPECT_EQ(Upload(*stub, token, {lying}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  {
    const std::string zeros(64 << 20, '\0');
    std::string frame(ZSTD_compressBound(zeros.size()), '\0');
    frame.resize(ZSTD_compress(frame.data(), frame.size(), zeros.data(), zeros.size(), 3));
    v1::ChunkUpload bomb = Chunk("home", secret, "tiny");
    bomb.set_data(frame);
    bomb.set_compressed(true);
    EXPECT_EQ(Upload(*stub, token, {bomb}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    const v1::ChunkUpload huge = Chunk("home", secret, std::string(hello.max_chunk_size() + 1, 'h'));
    EXPECT_EQ(Upload(*stub, token, {huge}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  // A message over the server's 64 MiB receive limit.
  {
    v1::ApplyRequest request;
    request.set_repo("home");
    request.set_journal_id(std::string(70 << 20, 'j'));
    v1::ApplyReply reply;
    EXPECT_EQ(stub->Apply(Context(token).get(), request, &reply).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // An upload stream that switches repository half-way.
  {
    const std::string other_token = CreateRepo("other");
    v1::ChunkUpload first = Chunk("home", secret, "first");
    v1::ChunkUpload second = Chunk("other", secret, "second");
    EXPECT_EQ(Upload(*stub, token, {first, second}).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
    (void)other_token;
  }
  // Garbage ids and journal ids.
  {
    v1::ReadChunksRequest read;
    read.set_repo("home");
    read.add_ids("short");
    auto context = Context(token);
    auto reader = stub->ReadChunks(context.get(), read);
    v1::ChunkData chunk;
    EXPECT_FALSE(reader->Read(&chunk));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }

  ASSERT_TRUE(ServerAlive()) << "the server died on hostile input";
  std::vector<v1::NodeState> states;
  ASSERT_TRUE(List(*stub, "home", token, &states).ok());
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].path(), "good.txt");
  std::string data;
  ASSERT_TRUE(Read(*stub, "home", token, good.id(), &data).ok());
  EXPECT_EQ(data, good.data());
  // Nothing escaped the store: no file was created beside it.
  for (const auto& entry : std::filesystem::directory_iterator(root_)) {
    const std::string name = entry.path().filename();
    EXPECT_TRUE(name == "store" || name == "server.log") << "unexpected " << entry.path();
  }
}

// Many concurrent streams from one client: the server caps them per
// connection (the rest wait), answers all, and stays up.
TEST_F(ServerSecurityTest, ManyConcurrentStreamsFromOneClientAreServed) {
  const std::string token = CreateRepo("home");
  StartServer();
  auto stub = Stub();
  v1::HelloReply hello;
  ASSERT_TRUE(Hello(*stub, "home", token, &hello).ok());
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 200; ++i) {
    threads.emplace_back([&, i] {
      const v1::ChunkUpload chunk =
          Chunk("home", hello.chunk_secret(), "stream " + std::to_string(i));
      (Upload(*stub, token, {chunk}).ok() ? ok : failed)++;
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 200) << failed.load() << " streams failed";
  EXPECT_TRUE(ServerAlive());
}

// A chunk file replaced by a symlink to a file outside the store: the server
// refuses to read through it rather than serve the outside file.
TEST_F(ServerSecurityTest, StoreNeverFollowsALinkOutOfItself) {
  const std::string token = CreateRepo("home");
  StartServer();
  auto stub = Stub();
  v1::HelloReply hello;
  ASSERT_TRUE(Hello(*stub, "home", token, &hello).ok());
  const v1::ChunkUpload chunk = Chunk("home", hello.chunk_secret(), "inside the store");
  ASSERT_TRUE(Upload(*stub, token, {chunk}).ok());
  // The pack file holding it.
  std::string chunk_file;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(store_ + "/repos")) {
    if (entry.path().extension() == ".pack") chunk_file = entry.path();
  }
  ASSERT_FALSE(chunk_file.empty());
  const std::string outside = root_ + "/outside";
  std::filesystem::copy_file(chunk_file, outside);
  ASSERT_EQ(unlink(chunk_file.c_str()), 0);
  ASSERT_EQ(symlink(outside.c_str(), chunk_file.c_str()), 0);
  std::string data;
  const grpc::Status status = Read(*stub, "home", token, chunk.id(), &data);
  EXPECT_FALSE(status.ok()) << "served a chunk through a symlink";
  EXPECT_TRUE(data.empty());
  EXPECT_TRUE(ServerAlive());
}

}  // namespace
}  // namespace replifs::test

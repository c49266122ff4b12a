// Service-level tests: a real in-process gRPC server on 127.0.0.1:0 and the
// generated stub, as the client uses it (service_test_fixture.h).
#include <zstd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/chunker/chunker.h"
#include "replicator/server/backup_server.h"
#include "replicator/server/repo_token.h"
#include "replicator/server/service_test_fixture.h"
#include "replicator/server/sqlite_catalog.h"

namespace replifs::server {
namespace {

class BackupServiceTest : public ServiceTest {
 protected:
  static v1::ChunkUpload Upload(const std::string& id, const std::string& data, bool compress) {
    v1::ChunkUpload upload;
    upload.set_repo("home");
    upload.set_id(id);
    upload.set_length(static_cast<uint32_t>(data.size()));
    if (compress) {
      std::string frame(ZSTD_compressBound(data.size()), '\0');
      frame.resize(ZSTD_compress(frame.data(), frame.size(), data.data(), data.size(), 1));
      upload.set_data(frame);
      upload.set_compressed(true);
    } else {
      upload.set_data(data);
    }
    return upload;
  }
  static v1::Operation PutFile(const std::string& path, const std::vector<std::string>& ids,
                               const std::vector<std::string>& contents, uint64_t seq) {
    google::protobuf::RepeatedPtrField<v1::ChunkRef> chunks;
    for (size_t i = 0; i < ids.size(); ++i) {
      v1::ChunkRef* chunk = chunks.Add();
      chunk->set_id(ids[i]);
      chunk->set_length(static_cast<uint32_t>(contents[i].size()));
    }
    return PutFileOp(path, chunks, seq);
  }
};

TEST_F(BackupServiceTest, HelloReturnsStableSecret) {
  EXPECT_EQ(hello_.chunk_secret().size(), 32u);
  EXPECT_EQ(hello_.applied_seq(), 0u);
  EXPECT_GT(hello_.max_chunk_size(), 0u);
  v1::HelloRequest hello;
  hello.set_repo("home");
  hello.set_journal_id("j1");
  v1::HelloReply again;
  grpc::ClientContext context;
  Authorize(&context, home_token_);
  ASSERT_TRUE(stub_->Hello(&context, hello, &again).ok());
  EXPECT_EQ(again.chunk_secret(), hello_.chunk_secret());

  hello.set_repo(std::string("bad\0name", 8));
  grpc::ClientContext bad_context;
  Authorize(&bad_context, home_token_);
  EXPECT_EQ(stub_->Hello(&bad_context, hello, &again).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BackupServiceTest, UnknownRepoIsPermissionDenied) {
  v1::MissingChunksRequest request;
  request.set_repo("nobody");
  v1::MissingChunksReply reply;
  grpc::ClientContext context;
  Authorize(&context, home_token_);
  EXPECT_EQ(stub_->MissingChunks(&context, request, &reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(BackupServiceTest, UploadWithWrongIdIsRejectedAndNothingStored) {
  const std::string data = "some bytes";
  std::string wrong = IdOf(data);
  wrong[0] ^= 1;
  v1::UploadReply reply;
  EXPECT_EQ(SendUploads({Upload(wrong, data, false)}, &reply).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);

  v1::MissingChunksRequest request;
  request.set_repo("home");
  request.add_ids(wrong);
  v1::MissingChunksReply missing;
  grpc::ClientContext context;
  Authorize(&context, home_token_);
  ASSERT_TRUE(stub_->MissingChunks(&context, request, &missing).ok());
  EXPECT_EQ(missing.ids_size(), 1);
}

TEST_F(BackupServiceTest, UploadWithWrongLengthOrOversizeIsRejected) {
  const std::string data(1000, 'z');
  v1::ChunkUpload upload = Upload(IdOf(data), data, true);
  upload.set_length(999);
  v1::UploadReply reply;
  EXPECT_EQ(SendUploads({upload}, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  upload.set_length(hello_.max_chunk_size() + 1);
  EXPECT_EQ(SendUploads({upload}, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::ChunkUpload garbage = Upload(IdOf(data), data, false);
  garbage.set_compressed(true);  // raw bytes claimed to be zstd
  EXPECT_EQ(SendUploads({garbage}, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BackupServiceTest, PutNamingMissingChunkFailsAndCommitsNothing) {
  v1::Operation dir;
  dir.mutable_put()->set_path("d");
  dir.mutable_put()->set_type(v1::NodeState::DIRECTORY);
  v1::Operation remove;
  remove.set_seq(5);
  remove.set_remove("gone");
  const std::string data = "never uploaded";
  v1::ApplyReply reply;
  EXPECT_EQ(ApplyOps({dir, remove, PutFile("d/f", {IdOf(data)}, {data}, 6)}, &reply).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(ListAll().empty());
  v1::HelloReply again;
  ASSERT_TRUE(Hello(&again).ok());
  EXPECT_EQ(again.applied_seq(), 0u);
}

TEST_F(BackupServiceTest, HostilePathsAreInvalidArgument) {
  for (const std::string& path : {std::string("../x"), std::string("/abs"), std::string("a/../b"),
                                  std::string("a\0b", 3), std::string(5000, 'p')}) {
    v1::Operation put;
    put.mutable_put()->set_path(path);
    put.mutable_put()->set_type(v1::NodeState::DIRECTORY);
    v1::Operation remove;
    remove.set_seq(1);
    remove.set_remove(path);
    v1::Operation rename;
    rename.set_seq(1);
    rename.mutable_rename()->set_from("ok");
    rename.mutable_rename()->set_to(path);
    for (const v1::Operation& op : {put, remove, rename}) {
      v1::ApplyReply reply;
      EXPECT_EQ(ApplyOps({op}, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << op.DebugString();
    }
    v1::ListRequest list;
    list.set_repo("home");
    list.add_paths(path);
    grpc::ClientContext context;
    Authorize(&context, home_token_);
    auto reader = stub_->List(&context, list);
    v1::NodeState state;
    while (reader->Read(&state)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_TRUE(ListAll().empty());
}

TEST_F(BackupServiceTest, FullRoundTripUploadApplyListRead) {
  const std::string text(300000, 'x');  // compresses well
  std::string noise(5000, '\0');
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<char>((i * 2654435761u) >> 13);
  const std::vector<std::string> contents = {text, noise};
  const std::vector<std::string> ids = {IdOf(text), IdOf(noise)};

  v1::MissingChunksRequest missing_request;
  missing_request.set_repo("home");
  for (const auto& id : ids) missing_request.add_ids(id);
  v1::MissingChunksReply missing;
  {
    grpc::ClientContext context;
    Authorize(&context, home_token_);
    ASSERT_TRUE(stub_->MissingChunks(&context, missing_request, &missing).ok());
    EXPECT_EQ(missing.ids_size(), 2);
  }

  v1::UploadReply upload_reply;
  const grpc::Status uploaded = SendUploads(
      {Upload(ids[0], text, true), Upload(ids[1], noise, false), Upload(ids[0], text, true)},
      &upload_reply);
  ASSERT_TRUE(uploaded.ok()) << uploaded.error_message();
  EXPECT_EQ(upload_reply.stored(), 2u);
  EXPECT_EQ(upload_reply.bytes_stored(), text.size() + noise.size());
  {
    grpc::ClientContext context;
    Authorize(&context, home_token_);
    missing.Clear();
    ASSERT_TRUE(stub_->MissingChunks(&context, missing_request, &missing).ok());
    EXPECT_EQ(missing.ids_size(), 0);
  }

  v1::Operation root;
  root.mutable_put()->set_type(v1::NodeState::DIRECTORY);
  v1::Operation rename;
  rename.set_seq(9);
  rename.mutable_rename()->set_from("tmp");
  rename.mutable_rename()->set_to("file");
  v1::ApplyReply apply_reply;
  const grpc::Status applied =
      ApplyOps({root, PutFile("tmp", ids, contents, 8), rename}, &apply_reply);
  ASSERT_TRUE(applied.ok()) << applied.error_message();
  EXPECT_EQ(apply_reply.applied_seq(), 9u);

  const std::vector<v1::NodeState> states = ListAll();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0].path(), "");
  const v1::NodeState& file = states[1];
  EXPECT_EQ(file.path(), "file");
  EXPECT_EQ(file.size(), text.size() + noise.size());
  EXPECT_EQ(file.seq(), 9u);
  EXPECT_GT(file.time_ns(), 0);
  ASSERT_EQ(file.chunks_size(), 2);

  std::vector<std::string> ids_read;
  for (const auto& chunk : file.chunks()) ids_read.push_back(chunk.id());
  std::vector<v1::ChunkData> read;
  ASSERT_TRUE(ReadChunks(ids_read, &read).ok());
  std::string restored;
  for (const v1::ChunkData& data : read) restored += data.data();
  EXPECT_EQ(restored, text + noise);
}

TEST_F(BackupServiceTest, ReadOfUnknownChunkIsNotFound) {
  std::vector<v1::ChunkData> read;
  EXPECT_EQ(ReadChunks({std::string(16, 'u')}, &read).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(read.empty());
}

TEST_F(BackupServiceTest, ChunksOfOneRepoAreInvisibleToAnother) {
  const std::string data = "private";
  v1::UploadReply upload_reply;
  ASSERT_TRUE(SendUploads({Upload(IdOf(data), data, false)}, &upload_reply).ok());

  const std::string intruder_token = CreateRepo("intruder");
  v1::HelloRequest hello;
  hello.set_repo("intruder");
  v1::HelloReply intruder;
  grpc::ClientContext hello_context;
  Authorize(&hello_context, intruder_token);
  ASSERT_TRUE(stub_->Hello(&hello_context, hello, &intruder).ok());
  EXPECT_NE(intruder.chunk_secret(), hello_.chunk_secret());

  std::vector<v1::ChunkData> read;
  EXPECT_EQ(ReadChunks({IdOf(data)}, &read, false, "intruder", intruder_token).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(read.empty());
}

TEST_F(BackupServiceTest, SecondServerOnSameStoreIsRefused) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.store_dir = dir_ + "/store";
  auto second = BackupServer::Start(options);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/store/REPLIFS-SERVER-STORE"));
}

// Every RPC, with no token, a wrong token, and another repository's token.
TEST_F(BackupServiceTest, EveryRpcNeedsTheRepositorysOwnToken) {
  const std::string other_token = CreateRepo("other");
  const std::string data = "home's secret bytes";
  v1::UploadReply stored;
  ASSERT_TRUE(SendUploads({Upload(IdOf(data), data, false)}, &stored).ok());
  v1::ApplyReply applied;
  ASSERT_TRUE(ApplyOps({PutFile("f", {IdOf(data)}, {data}, 1)}, &applied).ok());

  struct Caller {
    std::string label;
    std::optional<std::string> token;  // nullopt: no metadata at all
    grpc::StatusCode expected;
  };
  const std::vector<Caller> callers = {
      {"no token", std::nullopt, grpc::StatusCode::UNAUTHENTICATED},
      {"wrong token", std::string(64, 'a'), grpc::StatusCode::PERMISSION_DENIED},
      {"empty token", std::string(), grpc::StatusCode::PERMISSION_DENIED},
      {"other repo's token", other_token, grpc::StatusCode::PERMISSION_DENIED},
  };
  for (const Caller& caller : callers) {
    SCOPED_TRACE(caller.label);
    auto context = [&] {
      auto c = std::make_unique<grpc::ClientContext>();
      if (caller.token.has_value()) Authorize(c.get(), *caller.token);
      return c;
    };
    // A refused stream yields nothing and ends with the caller's code.
    auto expect_refused = [&](auto reader, auto message) {
      EXPECT_FALSE(reader->Read(&message));
      EXPECT_EQ(reader->Finish().error_code(), caller.expected);
    };
    v1::HelloRequest hello;
    hello.set_repo("home");
    v1::HelloReply hello_reply;
    EXPECT_EQ(stub_->Hello(context().get(), hello, &hello_reply).error_code(), caller.expected);
    EXPECT_TRUE(hello_reply.chunk_secret().empty());

    v1::MissingChunksRequest missing;
    missing.set_repo("home");
    missing.add_ids(IdOf(data));
    v1::MissingChunksReply missing_reply;
    EXPECT_EQ(stub_->MissingChunks(context().get(), missing, &missing_reply).error_code(),
              caller.expected);

    const std::string planted = "planted by an intruder";
    v1::UploadReply upload_reply;
    {
      auto c = context();
      auto writer = stub_->UploadChunks(c.get(), &upload_reply);
      writer->Write(Upload(IdOf(planted), planted, false));
      writer->WritesDone();
      EXPECT_EQ(writer->Finish().error_code(), caller.expected);
    }

    v1::ApplyRequest apply;
    apply.set_repo("home");
    apply.set_journal_id("intruder");
    v1::Operation remove;
    remove.set_seq(100);
    remove.set_remove("f");
    *apply.add_operations() = remove;
    v1::ApplyReply apply_reply;
    EXPECT_EQ(stub_->Apply(context().get(), apply, &apply_reply).error_code(), caller.expected);

    // (Each context() lives to the end of its statement, past Finish.)
    v1::ListRequest list;
    list.set_repo("home");
    expect_refused(stub_->List(context().get(), list), v1::NodeState());
    v1::ReadChunksRequest read;
    read.set_repo("home");
    read.add_ids(IdOf(data));
    expect_refused(stub_->ReadChunks(context().get(), read), v1::ChunkData());
    v1::ListVersionsRequest versions;
    versions.set_repo("home");
    versions.set_path("f");
    expect_refused(stub_->ListVersions(context().get(), versions), v1::NodeState());
    // Nothing the intruder sent arrived.
    v1::MissingChunksRequest check;
    check.set_repo("home");
    check.add_ids(IdOf(planted));
    v1::MissingChunksReply check_reply;
    grpc::ClientContext check_context;
    Authorize(&check_context, home_token_);
    ASSERT_TRUE(stub_->MissingChunks(&check_context, check, &check_reply).ok());
    EXPECT_EQ(check_reply.ids_size(), 1);
  }
  const std::vector<v1::NodeState> states = ListAll();
  ASSERT_EQ(states.size(), 1u);  // the remove was refused every time
  EXPECT_EQ(states[0].path(), "f");
}

TEST_F(BackupServiceTest, ResetTokenLocksOutTheOldOne) {
  auto catalog = SqliteCatalog::Open(dir_ + "/store/catalog.sqlite");
  ASSERT_TRUE(catalog.ok());
  auto fresh = ResetRepoToken(**catalog, "home");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  v1::HelloRequest hello;
  hello.set_repo("home");
  v1::HelloReply reply;
  grpc::ClientContext old_context;
  Authorize(&old_context, home_token_);
  EXPECT_EQ(stub_->Hello(&old_context, hello, &reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext new_context;
  Authorize(&new_context, *fresh);
  EXPECT_TRUE(stub_->Hello(&new_context, hello, &reply).ok());
  EXPECT_EQ(reply.chunk_secret(), hello_.chunk_secret());
  // Only the hash is stored: the token text appears nowhere in the catalog.
  auto repos = (*catalog)->ListRepos();
  ASSERT_TRUE(repos.ok());
  for (const Repo& repo : *repos) {
    EXPECT_EQ(repo.token_hash.size(), 32u);
    EXPECT_EQ(repo.token_hash.find(*fresh), std::string::npos);
  }
  EXPECT_EQ(CreateRepoWithToken(**catalog, "home").status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(BackupServiceTest, ListVersionsReturnsEveryVersionOldestFirst) {
  const std::string a = "version one", b = "version two, longer";
  v1::UploadReply stored;
  ASSERT_TRUE(SendUploads({Upload(IdOf(a), a, false), Upload(IdOf(b), b, true)}, &stored).ok());
  v1::ApplyReply applied;
  ASSERT_TRUE(ApplyOps({PutFile("f", {IdOf(a)}, {a}, 1)}, &applied).ok());
  ASSERT_TRUE(ApplyOps({PutFile("f", {IdOf(b)}, {b}, 2)}, &applied).ok());
  v1::Operation remove;
  remove.set_seq(3);
  remove.set_remove("f");
  ASSERT_TRUE(ApplyOps({remove}, &applied).ok());

  v1::ListVersionsRequest request;
  request.set_repo("home");
  request.set_path("f");
  grpc::ClientContext context;
  Authorize(&context, home_token_);
  auto reader = stub_->ListVersions(&context, request);
  std::vector<v1::NodeState> versions;
  v1::NodeState state;
  while (reader->Read(&state)) versions.push_back(state);
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_EQ(versions[0].size(), a.size());
  EXPECT_FALSE(versions[0].deleted());
  EXPECT_EQ(versions[1].size(), b.size());
  EXPECT_TRUE(versions[2].deleted());
  EXPECT_LE(versions[0].time_ns(), versions[1].time_ns());
  EXPECT_LE(versions[1].time_ns(), versions[2].time_ns());

  request.set_path("../f");
  grpc::ClientContext bad_context;
  Authorize(&bad_context, home_token_);
  auto bad = stub_->ListVersions(&bad_context, request);
  EXPECT_FALSE(bad->Read(&state));
  EXPECT_EQ(bad->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace replifs::server

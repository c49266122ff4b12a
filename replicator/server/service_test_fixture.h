// The fixture of the service-level tests: a real in-process gRPC server on
// 127.0.0.1:0 over a fresh store, a repository "home" with its token, and the
// generated stub after Hello, as the client uses them.
#pragma once

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/chunker/chunker.h"
#include "replicator/server/backup_server.h"
#include "replicator/server/repo_token.h"
#include "replicator/server/sqlite_catalog.h"

namespace replifs::server {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/server_service_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.store_dir = dir_ + "/store";
    auto server = BackupServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    home_token_ = CreateRepo("home");
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(kMaxReceiveMessageSize);
    stub_ = v1::Backup::NewStub(
        grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args));

    ASSERT_TRUE(Hello(&hello_).ok());
    hasher_.emplace(hello_.chunk_secret());
  }
  void TearDown() override {
    stub_.reset();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Creates a repository through the catalog, as `replifs-server repo
  // create` does while the server runs; returns its token.
  std::string CreateRepo(const std::string& name) {
    auto catalog = SqliteCatalog::Open(dir_ + "/store/catalog.sqlite");
    EXPECT_TRUE(catalog.ok()) << catalog.status();
    if (!catalog.ok()) return "";
    auto token = CreateRepoWithToken(**catalog, name);
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "";
  }
  static void Authorize(grpc::ClientContext* context, const std::string& token) {
    context->AddMetadata("authorization", "Bearer " + token);
  }
  void Authorize(grpc::ClientContext* context) { Authorize(context, home_token_); }
  // The id of `data` under "home"'s chunk secret.
  std::string IdOf(const std::string& data) const { return hasher_->Hash(data).ToBytes(); }

  // Hello from "home" (journal "j1").
  grpc::Status Hello(v1::HelloReply* reply) {
    v1::HelloRequest hello;
    hello.set_repo("home");
    hello.set_journal_id("j1");
    grpc::ClientContext context;
    Authorize(&context);
    return stub_->Hello(&context, hello, reply);
  }
  // An operation that commits `chunks` as the regular file `path` (0644).
  static v1::Operation PutFileOp(const std::string& path,
                                 const google::protobuf::RepeatedPtrField<v1::ChunkRef>& chunks,
                                 uint64_t seq) {
    v1::Operation op;
    op.set_seq(seq);
    v1::NodeState* put = op.mutable_put();
    put->set_path(path);
    put->set_type(v1::NodeState::REGULAR);
    put->set_mode(0644);
    uint64_t size = 0;
    for (const v1::ChunkRef& ref : chunks) size += ref.length();
    put->set_size(size);
    *put->mutable_chunks() = chunks;
    return op;
  }

  // One UploadChunks stream to "home" with `uploads`, in order.
  grpc::Status SendUploads(const std::vector<v1::ChunkUpload>& uploads, v1::UploadReply* reply) {
    grpc::ClientContext context;
    Authorize(&context);
    auto writer = stub_->UploadChunks(&context, reply);
    for (const auto& upload : uploads) {
      if (!writer->Write(upload)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }
  // One Apply batch to "home" (journal "j1") with `ops`.
  grpc::Status ApplyOps(const std::vector<v1::Operation>& ops, v1::ApplyReply* reply) {
    v1::ApplyRequest request;
    request.set_repo("home");
    request.set_journal_id("j1");
    for (const auto& op : ops) *request.add_operations() = op;
    grpc::ClientContext context;
    Authorize(&context);
    return stub_->Apply(&context, request, reply);
  }

  // Every state a List of "home" yields (of `paths` only, if any).
  std::vector<v1::NodeState> ListAll(const std::vector<std::string>& paths = {}) {
    v1::ListRequest request;
    request.set_repo("home");
    for (const std::string& path : paths) request.add_paths(path);
    grpc::ClientContext context;
    Authorize(&context);
    auto reader = stub_->List(&context, request);
    std::vector<v1::NodeState> states;
    v1::NodeState state;
    while (reader->Read(&state)) states.push_back(state);
    EXPECT_TRUE(reader->Finish().ok());
    return states;
  }
  // Every chunk a ReadChunks stream of `ids` yields into `chunks`; returns
  // how the stream ended. `repo` and `token` default to "home"'s.
  grpc::Status ReadChunks(const std::vector<std::string>& ids, std::vector<v1::ChunkData>* chunks,
                          bool accept_compressed = false, const std::string& repo = "home",
                          const std::string& token = "") {
    v1::ReadChunksRequest request;
    request.set_repo(repo);
    for (const std::string& id : ids) request.add_ids(id);
    request.set_accept_compressed(accept_compressed);
    grpc::ClientContext context;
    Authorize(&context, token.empty() ? home_token_ : token);
    auto reader = stub_->ReadChunks(&context, request);
    v1::ChunkData data;
    while (reader->Read(&data)) chunks->push_back(data);
    return reader->Finish();
  }

  std::string dir_;
  std::unique_ptr<BackupServer> server_;
  std::unique_ptr<v1::Backup::Stub> stub_;
  std::string home_token_;
  v1::HelloReply hello_;
  std::optional<chunker::ChunkIdHasher> hasher_;  // "home"'s, from hello_
};

}  // namespace replifs::server

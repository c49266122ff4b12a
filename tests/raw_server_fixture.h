// A real `replifs-server` process on 127.0.0.1 and the generated gRPC stub,
// used directly (no replifs client in between): the fixture of the server's
// security and history tests.
#pragma once

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "replicator/chunker/chunker.h"
#include "replifs/v1/backup.grpc.pb.h"
#include "tests/harness.h"

namespace replifs::test {

inline std::string ServerBin() { return Binaries().server; }
inline std::string ReplifsBin() { return Binaries().replifs; }

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A self-signed certificate for 127.0.0.1 made now with the openssl tool.
struct SelfSigned {
  std::string cert_file, key_file;
};
inline std::optional<SelfSigned> MakeSelfSigned(const std::string& dir, const std::string& name,
                                         std::string* error) {
  SelfSigned out{dir + "/" + name + ".crt", dir + "/" + name + ".key"};
  RunResult r = RunProcess({"/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                            "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                            out.key_file, "-out", out.cert_file},
                           60);
  if (r.exit_code != 0) {
    *error = "openssl req failed: " + r.Describe();
    return std::nullopt;
  }
  return out;
}

class RawServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir("replifs-sec-");
    ASSERT_FALSE(root_.empty());
    store_ = root_ + "/store";
    log_ = root_ + "/server.log";
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "server log:\n" << ReadText(log_) << "\n";
    server_.Stop();
    RemoveTree(root_);
  }

  // `replifs-server repo create NAME`; returns the printed token.
  std::string CreateRepo(const std::string& name) {
    RunResult r = RunProcess({ServerBin(), "repo", "create", name, "--store", store_}, 60);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    std::string token = r.out;
    while (!token.empty() && token.back() == '\n') token.pop_back();
    EXPECT_EQ(token.size(), 64u) << r.Describe();
    return token;
  }
  std::string WriteToken(const std::string& name, const std::string& token) {
    const std::string path = root_ + "/" + name + ".token";
    WriteFile(path, token + "\n", 0600);
    return path;
  }
  void StartServer(const std::vector<std::string>& extra = {}) {
    ASSERT_EQ(server_.Start(store_, "127.0.0.1:0", log_, 20, extra), "");
  }
  std::unique_ptr<v1::Backup::Stub> Stub(const std::string& ca_pem = "") {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(256 << 20);
    args.SetMaxReceiveMessageSize(256 << 20);
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (!ca_pem.empty()) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = ca_pem;
      credentials = grpc::SslCredentials(ssl);
    }
    return v1::Backup::NewStub(grpc::CreateCustomChannel(server_.address(), credentials, args));
  }
  static std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
    return context;
  }
  static grpc::Status Hello(v1::Backup::Stub& stub, const std::string& repo,
                            const std::string& token, v1::HelloReply* reply) {
    v1::HelloRequest request;
    request.set_repo(repo);
    request.set_journal_id("journal");
    return stub.Hello(Context(token).get(), request, reply);
  }
  static grpc::Status Upload(v1::Backup::Stub& stub, const std::string& token,
                             const std::vector<v1::ChunkUpload>& uploads) {
    auto context = Context(token);
    v1::UploadReply reply;
    auto writer = stub.UploadChunks(context.get(), &reply);
    for (const auto& upload : uploads) {
      if (!writer->Write(upload)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }
  static v1::ChunkUpload Chunk(const std::string& repo, const std::string& secret,
                               const std::string& data) {
    v1::ChunkUpload upload;
    upload.set_repo(repo);
    upload.set_id(chunker::ChunkIdHasher(secret).Hash(data).ToBytes());
    upload.set_data(data);
    upload.set_length(static_cast<uint32_t>(data.size()));
    return upload;
  }
  static v1::Operation PutFile(const std::string& path, const v1::ChunkUpload& chunk,
                               uint64_t seq) {
    v1::Operation op;
    op.set_seq(seq);
    v1::NodeState* put = op.mutable_put();
    put->set_path(path);
    put->set_type(v1::NodeState::REGULAR);
    put->set_mode(0644);
    put->set_size(chunk.length());
    v1::ChunkRef* ref = put->add_chunks();
    ref->set_id(chunk.id());
    ref->set_length(chunk.length());
    return op;
  }
  static grpc::Status Apply(v1::Backup::Stub& stub, const std::string& repo,
                            const std::string& token, const std::vector<v1::Operation>& ops) {
    v1::ApplyRequest request;
    request.set_repo(repo);
    request.set_journal_id("journal");
    for (const auto& op : ops) *request.add_operations() = op;
    v1::ApplyReply reply;
    return stub.Apply(Context(token).get(), request, &reply);
  }
  static grpc::Status List(v1::Backup::Stub& stub, const std::string& repo,
                           const std::string& token, std::vector<v1::NodeState>* out) {
    v1::ListRequest request;
    request.set_repo(repo);
    auto context = Context(token);
    auto reader = stub.List(context.get(), request);
    v1::NodeState state;
    while (reader->Read(&state)) out->push_back(state);
    return reader->Finish();
  }
  static grpc::Status Read(v1::Backup::Stub& stub, const std::string& repo,
                           const std::string& token, const std::string& id, std::string* data) {
    v1::ReadChunksRequest request;
    request.set_repo(repo);
    request.add_ids(id);
    auto context = Context(token);
    auto reader = stub.ReadChunks(context.get(), request);
    v1::ChunkData chunk;
    while (reader->Read(&chunk)) *data += chunk.data();
    return reader->Finish();
  }
  bool ServerAlive() { return server_.running() && kill(server_.pid(), 0) == 0; }

  std::string root_, store_, log_;
  ServerProcess server_;
};

}  // namespace replifs::test

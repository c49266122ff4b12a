#include "tests/fuzz/server_under_fuzz.h"

#include <ftw.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "replicator/chunker/chunker.h"
#include "replicator/server/repo_token.h"
#include "replicator/server/sqlite_catalog.h"
#include "replicator/server/store_directory.h"

namespace replifs::fuzz {
namespace {

constexpr size_t kMaxKnownChunks = 256;
constexpr auto kCallDeadline = std::chrono::seconds(10);

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "server_under_fuzz: %s\n", why.c_str());
  std::abort();
}

std::string owned_root;  // removed at exit when we made it
void RemoveOwnedRoot() {
  if (owned_root.empty()) return;
  nftw(
      owned_root.c_str(),
      [](const char* path, const struct stat*, int, struct FTW*) { return ::remove(path); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

}  // namespace

ServerUnderFuzz& ServerUnderFuzz::Get() {
  static ServerUnderFuzz* instance = [] {
    auto* s = new ServerUnderFuzz();  // lives until exit: the server serves every input
    s->Start();
    return s;
  }();
  return *instance;
}

void ServerUnderFuzz::Start() {
  if (const char* dir = getenv("REPLIFS_FUZZ_DIR"); dir != nullptr && *dir != '\0') {
    root_ = dir;
  } else {
    char pattern[] = "/tmp/replifs-fuzz-XXXXXX";
    if (mkdtemp(pattern) == nullptr) Die("mkdtemp failed");
    root_ = owned_root = pattern;
    atexit(RemoveOwnedRoot);
  }
  const std::string store = root_ + "/store";
  {
    // The operator's step (`replifs-server repo create`), then the lock is released.
    auto directory = server::StoreDirectory::Open(store);
    if (!directory.ok()) Die(directory.status().ToString());
    auto catalog = server::SqliteCatalog::Open((*directory)->catalog_path());
    if (!catalog.ok()) Die(catalog.status().ToString());
    auto token = server::CreateRepoWithToken(**catalog, kFuzzRepo);
    if (!token.ok()) Die(token.status().ToString());
    token_ = *token;
  }
  server::ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.store_dir = store;
  auto started = server::BackupServer::Start(options);
  if (!started.ok()) Die(started.status().ToString());
  server_ = std::move(*started);
  // Through 127.0.0.1 like a real client, so the server's transport limits
  // apply too (an in-process channel measured no faster).
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(server::kMaxReceiveMessageSize);
  stub_ = v1::Backup::NewStub(
      grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  Prepare(&context, 0);
  v1::HelloRequest hello;
  hello.set_repo(kFuzzRepo);
  v1::HelloReply reply;
  if (grpc::Status s = stub_->Hello(&context, hello, &reply); !s.ok())
    Die("Hello: " + s.error_message());
  secret_ = reply.chunk_secret();
}

void ServerUnderFuzz::Prepare(grpc::ClientContext* context, uint8_t flags) const {
  context->set_deadline(std::chrono::system_clock::now() + kCallDeadline);
  if (flags & kNoToken) return;
  // Same length as a real token, so only the comparison can refuse it.
  const std::string token = (flags & kWrongToken) ? std::string(token_.size(), 'x') : token_;
  context->AddMetadata("authorization", "Bearer " + token);
}

void ServerUnderFuzz::FixId(std::string* id, uint8_t flags) const {
  if ((flags & kNoFixups) || id->size() != 1 || known_ids_.empty()) return;
  *id = known_ids_[static_cast<uint8_t>((*id)[0]) % known_ids_.size()];
}

void ServerUnderFuzz::Remember(const std::string& id, const std::string& data) {
  if (!known_data_.emplace(id, data).second) return;
  known_ids_.push_back(id);
  if (known_ids_.size() > kMaxKnownChunks) {
    known_data_.erase(known_ids_.front());
    known_ids_.erase(known_ids_.begin());
  }
}

void ServerUnderFuzz::CheckRead(const v1::ChunkData& chunk) const {
  const auto found = known_data_.find(chunk.id());
  if (found != known_data_.end() && found->second != chunk.data()) {
    Die("ReadChunks returned other bytes than were stored for a chunk");
  }
}

void ServerUnderFuzz::Run(const Call& call) {
  grpc::ClientContext context;
  Prepare(&context, call.flags);
  const bool fix = !(call.flags & kNoFixups);
  const bool set_repo = !(call.flags & kKeepRepo);
  switch (call.method) {
    case Method::kHello: {
      v1::HelloRequest request;
      request.ParseFromString(call.request);
      if (set_repo) request.set_repo(kFuzzRepo);
      v1::HelloReply reply;
      grpc::Status status = stub_->Hello(&context, request, &reply);
      if (status.ok() && request.repo() == kFuzzRepo && reply.chunk_secret() != secret_) {
        Die("Hello returned another chunk secret");
      }
      break;
    }
    case Method::kMissingChunks: {
      v1::MissingChunksRequest request;
      request.ParseFromString(call.request);
      if (set_repo) request.set_repo(kFuzzRepo);
      for (std::string& id : *request.mutable_ids()) FixId(&id, call.flags);
      v1::MissingChunksReply reply;
      stub_->MissingChunks(&context, request, &reply);
      break;
    }
    case Method::kUploadChunks: {
      const chunker::ChunkIdHasher hasher(secret_);
      std::vector<std::pair<std::string, std::string>> sent;  // uncompressed, fixed-up ones
      v1::UploadReply reply;
      std::unique_ptr<grpc::ClientWriter<v1::ChunkUpload>> writer =
          stub_->UploadChunks(&context, &reply);
      for (size_t i = 0; i < call.uploads.size(); ++i) {
        v1::ChunkUpload upload;
        upload.ParseFromString(call.uploads[i]);
        if (i == 0 && set_repo) upload.set_repo(kFuzzRepo);
        if (fix && !upload.compressed()) {
          upload.set_length(static_cast<uint32_t>(upload.data().size()));
          upload.set_id(hasher.Hash(upload.data()).ToBytes());
          sent.emplace_back(upload.id(), upload.data());
        }
        if (!writer->Write(upload)) break;
      }
      writer->WritesDone();
      if (writer->Finish().ok()) {
        for (const auto& [id, data] : sent) Remember(id, data);
      }
      break;
    }
    case Method::kApply: {
      v1::ApplyRequest request;
      request.ParseFromString(call.request);
      if (set_repo) request.set_repo(kFuzzRepo);
      for (v1::Operation& op : *request.mutable_operations()) {
        if (!op.has_put()) continue;
        uint64_t size = 0;
        for (v1::ChunkRef& chunk : *op.mutable_put()->mutable_chunks()) {
          FixId(chunk.mutable_id(), call.flags);
          const auto found = known_data_.find(chunk.id());
          if (fix && chunk.length() == 0 && found != known_data_.end()) {
            chunk.set_length(static_cast<uint32_t>(found->second.size()));
          }
          size += chunk.length();
        }
        if (fix && op.put().size() == 0) op.mutable_put()->set_size(size);
      }
      v1::ApplyReply reply;
      stub_->Apply(&context, request, &reply);
      break;
    }
    case Method::kList: {
      v1::ListRequest request;
      request.ParseFromString(call.request);
      if (set_repo) request.set_repo(kFuzzRepo);
      std::unique_ptr<grpc::ClientReader<v1::NodeState>> reader = stub_->List(&context, request);
      v1::NodeState state;
      while (reader->Read(&state)) {
      }
      reader->Finish();
      break;
    }
    case Method::kReadChunks: {
      v1::ReadChunksRequest request;
      request.ParseFromString(call.request);
      if (set_repo) request.set_repo(kFuzzRepo);
      for (std::string& id : *request.mutable_ids()) FixId(&id, call.flags);
      std::unique_ptr<grpc::ClientReader<v1::ChunkData>> reader =
          stub_->ReadChunks(&context, request);
      v1::ChunkData chunk;
      while (reader->Read(&chunk)) CheckRead(chunk);
      reader->Finish();
      break;
    }
    case Method::kListVersions: {
      v1::ListVersionsRequest request;
      request.ParseFromString(call.request);
      if (set_repo) request.set_repo(kFuzzRepo);
      std::unique_ptr<grpc::ClientReader<v1::NodeState>> reader =
          stub_->ListVersions(&context, request);
      v1::NodeState state;
      while (reader->Read(&state)) {
      }
      reader->Finish();
      break;
    }
    case Method::kCount:
      break;
  }
}

}  // namespace replifs::fuzz

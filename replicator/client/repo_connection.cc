#include "replicator/client/repo_connection.h"

#include <grpcpp/grpcpp.h>
#include <zstd.h>

#include "absl/strings/str_cat.h"
#include "replicator/client/cancel_watchdog.h"

namespace replifs::client {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;

absl::StatusCode ToAbslCode(grpc::StatusCode code) {
  return static_cast<absl::StatusCode>(static_cast<int>(code));  // same numbering by design
}

}  // namespace

RepoConnection::RepoConnection(ConnectionOptions options, std::shared_ptr<grpc::Channel> channel)
    : options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::Backup::NewStub(channel_)) {}

absl::StatusOr<std::unique_ptr<RepoConnection>> RepoConnection::Open(
    const ConnectionOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Reconnect quickly once a stopped server is back.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.ca_pem.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.ca_pem;
    credentials = grpc::SslCredentials(ssl);
  }
  auto channel = grpc::CreateCustomChannel(options.server, credentials, args);
  std::unique_ptr<RepoConnection> connection(new RepoConnection(options, channel));

  v1::HelloRequest request;
  request.set_repo(options.repo);
  request.set_journal_id(options.journal_id);
  v1::HelloReply reply;
  auto context = connection->NewContext();
  grpc::Status status = connection->stub_->Hello(context.get(), request, &reply);
  if (!status.ok()) return connection->FromGrpc(status, "hello");
  connection->wire_bytes_ += request.ByteSizeLong() + reply.ByteSizeLong();
  connection->hasher_.emplace(reply.chunk_secret());
  connection->applied_seq_ = reply.applied_seq();
  return connection;
}

absl::StatusOr<uint64_t> RepoConnection::FetchAppliedSeq() {
  v1::HelloRequest request;
  request.set_repo(options_.repo);
  request.set_journal_id(options_.journal_id);
  v1::HelloReply reply;
  auto context = NewContext();
  grpc::Status status = stub_->Hello(context.get(), request, &reply);
  if (!status.ok()) return FromGrpc(status, "hello");
  wire_bytes_ += request.ByteSizeLong() + reply.ByteSizeLong();
  applied_seq_ = reply.applied_seq();
  return applied_seq_;
}

std::unique_ptr<grpc::ClientContext> RepoConnection::NewContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(options_.rpc_timeout));
  if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
  return context;
}

absl::Status RepoConnection::FromGrpc(const grpc::Status& status, absl::string_view rpc) const {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::UnavailableError(
        absl::StrCat("backup server ", options_.server, " unreachable (", rpc, "): ",
                     status.error_message()));
  }
  return absl::Status(ToAbslCode(status.error_code()),
                      absl::StrCat("server refused ", rpc, ": ", status.error_message()));
}

absl::StatusOr<std::vector<std::string>> RepoConnection::MissingChunks(
    const std::vector<std::string>& ids) {
  v1::MissingChunksRequest request;
  request.set_repo(options_.repo);
  for (const auto& id : ids) request.add_ids(id);
  v1::MissingChunksReply reply;
  auto context = NewContext();
  grpc::Status status = stub_->MissingChunks(context.get(), request, &reply);
  wire_bytes_ += request.ByteSizeLong() + reply.ByteSizeLong();
  if (!status.ok()) return FromGrpc(status, "missing-chunks");
  return std::vector<std::string>(reply.ids().begin(), reply.ids().end());
}

absl::StatusOr<uint64_t> RepoConnection::UploadChunks(const std::vector<UploadItem>& chunks) {
  if (chunks.empty()) return 0;
  auto context = NewContext();
  // A little past the deadline: gRPC's own expiry goes first when it works.
  CancelWatchdog watchdog(context.get(), context->deadline() + std::chrono::seconds(5));
  v1::UploadReply reply;
  auto writer = stub_->UploadChunks(context.get(), &reply);
  uint64_t wire_bytes = 0;
  std::string compressed;
  bool first = true;
  for (const UploadItem& item : chunks) {
    v1::ChunkUpload message;
    if (first) message.set_repo(options_.repo);
    first = false;
    message.set_id(item.id);
    message.set_length(static_cast<uint32_t>(item.data.size()));
    compressed.resize(ZSTD_compressBound(item.data.size()));
    size_t size = ZSTD_compress(compressed.data(), compressed.size(), item.data.data(),
                                item.data.size(), 1);
    // Incompressible chunks travel as they are.
    if (!ZSTD_isError(size) && size < item.data.size()) {
      message.set_data(compressed.data(), size);
      message.set_compressed(true);
    } else {
      message.set_data(item.data);
    }
    wire_bytes += message.data().size();
    wire_bytes_ += message.ByteSizeLong();
    if (!writer->Write(message)) break;  // the server ended the stream: Finish says why
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  wire_bytes_ += reply.ByteSizeLong();
  if (!status.ok()) return FromGrpc(status, "upload");
  return wire_bytes;
}

absl::StatusOr<uint64_t> RepoConnection::Apply(const std::vector<v1::Operation>& operations) {
  v1::ApplyRequest request;
  request.set_repo(options_.repo);
  request.set_journal_id(options_.journal_id);
  for (const auto& op : operations) *request.add_operations() = op;
  v1::ApplyReply reply;
  auto context = NewContext();
  grpc::Status status = stub_->Apply(context.get(), request, &reply);
  wire_bytes_ += request.ByteSizeLong() + reply.ByteSizeLong();
  if (!status.ok()) return FromGrpc(status, "apply");
  return reply.applied_seq();
}

absl::StatusOr<std::vector<v1::NodeState>> RepoConnection::List(
    int64_t at_time_ns, const std::vector<std::string>& paths) {
  v1::ListRequest request;
  request.set_repo(options_.repo);
  request.set_at_time_ns(at_time_ns);
  for (const auto& path : paths) request.add_paths(path);
  auto context = NewContext();
  auto reader = stub_->List(context.get(), request);
  std::vector<v1::NodeState> nodes;
  v1::NodeState node;
  wire_bytes_ += request.ByteSizeLong();
  while (reader->Read(&node)) {
    wire_bytes_ += node.ByteSizeLong();
    nodes.push_back(std::move(node));
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpc(status, "list");
  return nodes;
}

absl::Status RepoConnection::ReadChunks(
    const std::vector<std::string>& ids,
    const std::function<absl::Status(const v1::ChunkData&)>& visit) {
  v1::ReadChunksRequest request;
  request.set_repo(options_.repo);
  for (const auto& id : ids) request.add_ids(id);
  auto context = NewContext();
  auto reader = stub_->ReadChunks(context.get(), request);
  v1::ChunkData chunk;
  absl::Status visit_status;
  while (reader->Read(&chunk)) {
    if (visit_status.ok()) visit_status = visit(chunk);
    if (!visit_status.ok()) context->TryCancel();
  }
  grpc::Status status = reader->Finish();
  if (!visit_status.ok()) return visit_status;
  if (!status.ok()) return FromGrpc(status, "read-chunks");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::NodeState>> RepoConnection::ListVersions(const std::string& path) {
  v1::ListVersionsRequest request;
  request.set_repo(options_.repo);
  request.set_path(path);
  auto context = NewContext();
  auto reader = stub_->ListVersions(context.get(), request);
  std::vector<v1::NodeState> versions;
  v1::NodeState version;
  while (reader->Read(&version)) versions.push_back(std::move(version));
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpc(status, "list-versions");
  return versions;
}

}  // namespace replifs::client

#include "replicator/client/repo_connection.h"

#include <grpcpp/grpcpp.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "replicator/client/cancel_watchdog.h"
#include "replicator/delta/chunk_patch.h"
#include "replicator/telemetry/log.h"

namespace replifs::client {
namespace {

constexpr int kMaxMessageBytes = 64 << 20;
// The server accepts pings this often (backup_server.cc, kMinClientPingIntervalMs).
constexpr int kKeepaliveMs = 10000;

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
  // A half-open connection (peer gone, our socket in CLOSE-WAIT with a full
  // send queue) leaves a streaming Write blocked even after TryCancel; an
  // unanswered keepalive ping closes the transport and fails the call.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kKeepaliveMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kKeepaliveMs);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // pings while our writes are stuck too
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
  // Bounded streams (issue 6, a link that resets): the server stores every
  // chunk it fully received when a stream ends, broken or not, so a reset
  // costs at most one stream, and the retry sends only what it still lacks.
  std::vector<const UploadItem*> todo;
  todo.reserve(chunks.size());
  for (const UploadItem& item : chunks) todo.push_back(&item);
  uint64_t wire_bytes = 0;
  int failures = 0;
  for (size_t next = 0; next < todo.size();) {
    const size_t limit = stream_bytes_.load(std::memory_order_relaxed);
    size_t end = next, bytes = 0;
    do {
      bytes += todo[end]->data.size();
      ++end;
    } while (end < todo.size() && bytes + todo[end]->data.size() <= limit);
    const std::span<const UploadItem* const> stream(todo.data() + next, end - next);
    absl::StatusOr<uint64_t> sent = UploadStream(stream);
    if (sent.ok()) {
      wire_bytes += *sent;
      next = end;
      failures = 0;
      stream_bytes_.store(std::min(kMaxStreamBytes, limit * 2), std::memory_order_relaxed);
      continue;
    }
    if (!absl::IsUnavailable(sent.status()) || ++failures > kMaxStreamFailures) return sent.status();
    // Adapt down: a link that breaks streams gets shorter ones.
    stream_bytes_.store(std::max(kMinStreamBytes, limit / 2), std::memory_order_relaxed);
    upload_retries_.fetch_add(1, std::memory_order_relaxed);
    telemetry::LogWarn("client", "upload stream broken; retrying what the server lacks",
                       {{"error", sent.status()},
                        {"stream_bytes", std::to_string(stream_bytes_.load())},
                        {"failures", std::to_string(failures)}});
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100 * failures, 1000)));
    std::vector<std::string> ids;
    for (const UploadItem* item : stream) ids.push_back(item->id);
    absl::StatusOr<std::vector<std::string>> missing = MissingChunks(ids);
    if (!missing.ok()) continue;  // the same stream again, counted as a failure if it breaks
    const std::set<std::string> lacking(missing->begin(), missing->end());
    const auto kept = std::remove_if(todo.begin() + next, todo.begin() + end,
                                     [&](const UploadItem* item) { return !lacking.count(item->id); });
    todo.erase(kept, todo.begin() + end);
  }
  return wire_bytes;
}

absl::StatusOr<uint64_t> RepoConnection::UploadStream(std::span<const UploadItem* const> chunks) {
  absl::StatusOr<uint64_t> sent = UploadChunksOnce(chunks, /*allow_patches=*/true);
  const bool patched = std::any_of(chunks.begin(), chunks.end(),
                                   [](const UploadItem* item) { return item->patch.has_value(); });
  // A refused patch (its sources gone, say) costs one resend of whole chunks.
  if (!sent.ok() && patched && !absl::IsUnavailable(sent.status())) {
    telemetry::LogWarn("client", "patched upload refused; sending whole chunks", {{"error", sent.status()}});
    sent = UploadChunksOnce(chunks, /*allow_patches=*/false);
  }
  return sent;
}

absl::StatusOr<uint64_t> RepoConnection::UploadChunksOnce(std::span<const UploadItem* const> chunks,
                                                          bool allow_patches) {
  if (chunks.empty()) return 0;
  auto context = NewContext();
  // A little past the deadline: gRPC's own expiry goes first when it works.
  CancelWatchdog watchdog(context.get(), context->deadline() + std::chrono::seconds(5));
  v1::UploadReply reply;
  auto writer = stub_->UploadChunks(context.get(), &reply);
  uint64_t wire_bytes = 0;
  bool first = true;
  for (const UploadItem* item_pointer : chunks) {
    const UploadItem& item = *item_pointer;
    v1::ChunkUpload message;
    if (first) message.set_repo(options_.repo);
    first = false;
    message.set_id(item.id);
    message.set_length(static_cast<uint32_t>(item.data.size()));
    // Compressed unless incompressible; a patch of stored chunks if smaller.
    delta::FillChunkUpload(item.data, allow_patches && item.patch ? &*item.patch : nullptr, &message);
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
  request.set_accept_compressed(true);
  auto context = NewContext();
  auto reader = stub_->ReadChunks(context.get(), request);
  wire_bytes_ += request.ByteSizeLong();
  v1::ChunkData chunk;
  absl::Status visit_status;
  while (reader->Read(&chunk)) {
    wire_bytes_ += chunk.ByteSizeLong();
    if (visit_status.ok()) visit_status = CheckedChunk(&chunk);
    if (visit_status.ok()) visit_status = visit(chunk);
    if (!visit_status.ok()) context->TryCancel();
  }
  grpc::Status status = reader->Finish();
  if (!visit_status.ok()) return visit_status;
  if (!status.ok()) return FromGrpc(status, "read-chunks");
  return absl::OkStatus();
}

absl::Status RepoConnection::CheckedChunk(v1::ChunkData* chunk) const {
  const std::string hex = absl::BytesToHexString(chunk->id());
  if (chunk->compressed()) {
    // The frame names its size; never trust more than a message could hold.
    const unsigned long long size = ZSTD_getFrameContentSize(chunk->data().data(), chunk->data().size());
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > kMaxMessageBytes) {
      return absl::DataLossError(absl::StrCat("chunk ", hex, " from the server is not a zstd frame"));
    }
    std::string data(size, '\0');
    const size_t got = ZSTD_decompress(data.data(), data.size(), chunk->data().data(), chunk->data().size());
    if (ZSTD_isError(got) || got != size) {
      return absl::DataLossError(absl::StrCat("chunk ", hex, " from the server does not decompress"));
    }
    chunk->set_data(std::move(data));
    chunk->set_compressed(false);
  }
  if (hasher_->Hash(chunk->data()).ToBytes() != chunk->id()) {
    return absl::DataLossError(absl::StrCat("chunk ", hex, " from the server does not match its id"));
  }
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

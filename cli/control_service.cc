#include "cli/control_service.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace replifs::cli {
namespace {

absl::Duration TimeoutOf(double seconds) {
  return seconds > 0 ? absl::Seconds(seconds) : absl::Seconds(60);
}

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace

grpc::Status ControlService::Sync(grpc::ServerContext*, const v1::SyncRequest* request,
                                  v1::SyncReply* reply) {
  const absl::Time deadline = absl::Now() + TimeoutOf(request->timeout_seconds());
  // Changes made while unprotected are part of "everything before now".
  while (!parts_.reconcile->done) {
    if (absl::Now() > deadline) {
      std::string why = parts_.client->stats().last_error;
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          absl::StrCat("initial sync not finished", why.empty() ? "" : ": ", why));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  absl::Status status = parts_.scheduler->FlushAndWait(deadline - absl::Now());
  if (!status.ok()) return ToGrpc(status);
  reply->set_synced_seq(parts_.scheduler->stats().acked_seq);
  return grpc::Status::OK;
}

grpc::Status ControlService::Status(grpc::ServerContext*, const v1::StatusRequest*,
                                    v1::StatusReply* reply) {
  const scheduler::SchedulerStats scheduler = parts_.scheduler->stats();
  const client::BackupClientStats client = parts_.client->stats();
  const journal::JournalStats journal = parts_.journal->stats();
  reply->set_mountpoint(parts_.config->mountpoint);
  reply->set_server(parts_.config->server);
  reply->set_repo(parts_.config->repo);
  reply->set_pending_changes(scheduler.pending_events);
  reply->set_pending_bytes(scheduler.pending_bytes);
  reply->set_last_acked_seq(scheduler.acked_seq);
  reply->set_last_acked_time_ns(scheduler.last_ack_time_ns);
  reply->set_server_reachable(client.reachable);
  reply->set_server_error(!client.last_error.empty()       ? client.last_error
                          : scheduler.last_batch_failed ? scheduler.last_error
                                                        : "");
  reply->set_initial_sync_done(parts_.reconcile->done);
  reply->set_initial_sync_scanned(parts_.reconcile->scanned);
  reply->set_initial_sync_queued(parts_.reconcile->queued);
  reply->set_journal_seq(journal.last_seq);
  reply->set_rescan_needed(parts_.rescan_needed());
  if (parts_.capture) parts_.capture(reply);
  reply->set_commits(client.commits);
  reply->set_bytes_sent(client.bytes_uploaded);
  reply->set_wire_bytes(client.wire_bytes);
  reply->set_file_bytes_read(client.bytes_read);
  reply->set_initial_sync_changed_outside(parts_.reconcile->changed_outside);
  return grpc::Status::OK;
}

grpc::Status ControlService::Flush(grpc::ServerContext*, const v1::FlushRequest* request,
                                   v1::FlushReply* reply) {
  // Best effort: what is not sent stays in the journal for the next mount.
  // With the server unreachable there is no point in waiting.
  absl::Duration timeout = TimeoutOf(request->timeout_seconds());
  if (!parts_.client->stats().reachable) timeout = std::min(timeout, absl::Seconds(1));
  (void)parts_.scheduler->FlushAndWait(timeout);
  reply->set_pending_changes(parts_.scheduler->stats().pending_events);
  return grpc::Status::OK;
}

}  // namespace replifs::cli

// The daemon's side of control.proto: sync, status and flush for the
// `replifs` command, over a unix socket in the state directory.
#pragma once

#include <functional>

#include "cli/protection_config.h"
#include "replicator/client/backup_client.h"
#include "replicator/client/reconcile.h"
#include "replicator/journal/journal.h"
#include "replicator/scheduler/scheduler.h"
#include "replifs/v1/control.grpc.pb.h"

namespace replifs::cli {

class ControlService final : public v1::Control::Service {
 public:
  struct Parts {
    const ProtectionConfig* config;
    journal::Journal* journal;
    scheduler::Scheduler* scheduler;
    client::BackupClient* client;
    client::ReconcileProgress* reconcile;
    std::function<bool()> rescan_needed;
    std::function<void(v1::StatusReply*)> capture;  // which capture layers are active (may be empty)
  };
  explicit ControlService(Parts parts) : parts_(parts) {}

  grpc::Status Sync(grpc::ServerContext*, const v1::SyncRequest*, v1::SyncReply*) override;
  grpc::Status Status(grpc::ServerContext*, const v1::StatusRequest*, v1::StatusReply*) override;
  grpc::Status Flush(grpc::ServerContext*, const v1::FlushRequest*, v1::FlushReply*) override;

 private:
  Parts parts_;
};

}  // namespace replifs::cli

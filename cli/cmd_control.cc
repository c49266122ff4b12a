// `replifs sync DIR` and `replifs status DIR`: ask the mount's daemon.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/control_channel.h"
#include "cli/time_spec.h"

namespace replifs::cli {
namespace {

absl::StatusOr<ProtectedDir> MountedDir(const std::string& path) {
  auto dir = FindProtectedDir(path);
  if (!dir.ok()) return dir.status();
  if (!dir->mounted) return absl::FailedPreconditionError(absl::StrCat(dir->mountpoint, " is not mounted (not protected now)"));
  return dir;
}

std::chrono::system_clock::time_point DeadlineAfter(double seconds) {
  return std::chrono::system_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
}

}  // namespace

int SyncCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs(argv, {"timeout"}, {});
  if (!args.ok()) return Fail(std::string(args.status().message()), 2);
  if (args->positional.size() != 1) return Fail("usage: replifs sync DIR [--timeout SECONDS]", 2);
  double timeout = 60;
  if (args->Has("timeout") && !absl::SimpleAtod(args->Get("timeout"), &timeout)) return Fail("--timeout needs seconds", 2);
  auto dir = MountedDir(args->positional[0]);
  if (!dir.ok()) return Fail(std::string(dir.status().message()));

  // Writes still in the kernel (dirty pages of open files and shared
  // mappings) reach the daemon, and so the journal, here.
  int fd = open(dir->mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0 || syncfs(fd) != 0) return Fail(absl::StrCat("syncfs ", dir->mountpoint, ": ", strerror(errno)));
  close(fd);

  auto control = ConnectControl(dir->config);
  v1::SyncRequest request;
  request.set_timeout_seconds(timeout);
  v1::SyncReply reply;
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(timeout + 5));
  grpc::Status status = control->Sync(&context, request, &reply);
  if (!status.ok()) {
    return Fail(absl::StrCat("sync of ", dir->mountpoint, " did not complete: ", status.error_message()));
  }
  return 0;
}

int StatusCommand(const std::vector<std::string>& argv) {
  auto args = ParseArgs(argv, {}, {});
  if (!args.ok()) return Fail(std::string(args.status().message()), 2);
  if (args->positional.size() != 1) return Fail("usage: replifs status DIR", 2);
  auto dir = MountedDir(args->positional[0]);
  if (!dir.ok()) return Fail(std::string(dir.status().message()));
  auto control = ConnectControl(dir->config);
  v1::StatusReply reply;
  grpc::ClientContext context;
  context.set_deadline(DeadlineAfter(10));
  grpc::Status status = control->Status(&context, v1::StatusRequest(), &reply);
  if (!status.ok()) return Fail(absl::StrCat("daemon of ", dir->mountpoint, " did not answer: ", status.error_message()));

  std::cout << "protected: " << reply.mountpoint() << "\n"
            << "server: " << reply.server() << (reply.server_reachable() ? " (reachable)" : " (UNREACHABLE)") << "\n"
            << "repository: " << reply.repo() << "\n"
            << "pending changes: " << reply.pending_changes() << "\n"
            << "pending bytes: " << reply.pending_bytes() << "\n"
            << "last acknowledged change: " << reply.last_acked_seq();
  if (reply.last_acked_time_ns() > 0) std::cout << " at " << FormatTimeNs(reply.last_acked_time_ns());
  std::cout << "\n"
            << "journal: " << reply.journal_seq() << " changes recorded\n"
            << "initial sync: " << (reply.initial_sync_done() ? "done" : "in progress") << " ("
            << reply.initial_sync_scanned() << " paths scanned, " << reply.initial_sync_queued() << " queued)\n"
            << "commits: " << reply.commits() << ", bytes sent: " << reply.bytes_sent() << "\n"
            << "wire bytes: " << reply.wire_bytes() << ", file bytes read: " << reply.file_bytes_read()
            << ", changed while unprotected: " << reply.initial_sync_changed_outside() << "\n";
  if (reply.capture_layers_size() > 0) {
    std::cout << "capture layers: " << absl::StrJoin(reply.capture_layers(), ", ");
    if (reply.capture_layers_size() > 1) {
      std::cout << " (shim: " << reply.shim_events() << " changes, " << reply.shim_dropped() << " lost, "
                << reply.shim_untracked() << " untracked, " << reply.shim_vma_busy()
                << " mapping flushes left to fanotify";
      if (reply.shim_dropped() + reply.shim_untracked() > 0) std::cout << ", tree rescanned";
      std::cout << ")";
    }
    std::cout << "\n";
  }
  if (reply.rescan_needed()) std::cout << "RESCAN NEEDED: the journal missed changes (disk full?)\n";
  if (!reply.server_error().empty()) std::cout << "last error: " << reply.server_error() << "\n";
  return 0;
}

}  // namespace replifs::cli

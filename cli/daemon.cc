#include "cli/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "cli/control_service.h"
#include "cli/journaling_sink.h"
#include "cli/shim_capture.h"
#include "fusefs/passthrough_fs.h"
#include "replicator/client/backup_client.h"
#include "replicator/client/reconcile.h"
#include "replicator/journal/journal.h"
#include "replicator/scheduler/scheduler.h"
#include "replicator/server/fault_injection.h"

namespace replifs::cli {
namespace {

absl::Status MakeStateDir(const std::string& dir) {
  std::string partial;
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("cannot create ", partial, ": ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

// One daemon per state directory.
absl::StatusOr<int> LockStateDir(const std::string& dir) {
  int fd = open((dir + "/LOCK").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot open ", dir, "/LOCK: ", strerror(errno)));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    close(fd);
    return absl::FailedPreconditionError(absl::StrCat("state directory ", dir, " is in use by another replifs daemon"));
  }
  return fd;
}

// Renames seen while the initial sync walks the tree: the walk may have
// listed a directory under its old name and then found nothing there.
class RenamesDuringWalk {
 public:
  void Observe(const v1::ChangeEvent& event) {
    std::lock_guard lock(mutex_);
    if (watching_ && event.op() == v1::ChangeEvent::RENAME) targets_.push_back(event.new_path());
  }
  // The targets seen so far; stops watching (atomically) when there are none.
  std::vector<std::string> TakeOrStop() {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    out.swap(targets_);
    if (out.empty()) watching_ = false;
    return out;
  }
  void Restart() {
    std::lock_guard lock(mutex_);
    watching_ = true;
    targets_.clear();
  }

 private:
  std::mutex mutex_;
  bool watching_ = true;
  std::vector<std::string> targets_;
};

// Sends a batch only once every seq in it is fdatasync'd in the journal. A
// seq the server has seen must survive a power loss: otherwise the next
// Append after the loss reuses it for another change, and the server's
// idempotency check skips that change as a retry (journal/FORMAT.md, "Seqs
// the server has seen"). Group commit makes this one fdatasync per batch.
class SyncBeforeSend : public scheduler::CommandExecutor {
 public:
  SyncBeforeSend(journal::Journal* journal, scheduler::CommandExecutor* inner)
      : journal_(journal), inner_(inner) {}
  absl::Status Execute(const std::vector<v1::BackupCommand>& batch,
                       std::vector<size_t>* stale) override {
    if (absl::Status s = journal_->Sync(); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("journal sync before sending: ", s.message()));
    }
    fault::Hit("before-send");
    return inner_->Execute(batch, stale);
  }

 private:
  journal::Journal* journal_;
  scheduler::CommandExecutor* inner_;
};

// Compares the tree with the server once it can be reached, then stops.
void RunInitialSync(client::BackupClient* backup, int root_fd, fusefs::EventSink* sink,
                    RenamesDuringWalk* renames, client::ReconcileProgress* progress,
                    const std::atomic<bool>* stopping) {
  auto emit = [sink](v1::ChangeEvent event) { sink->OnChange(std::move(event)); };
  while (!*stopping) {
    absl::StatusOr<client::RepoConnection*> connection = backup->Connection();
    absl::Status status = connection.status();
    if (connection.ok()) status = client::Reconcile(**connection, root_fd, emit, progress);
    while (status.ok()) {
      std::vector<std::string> targets = renames->TakeOrStop();
      if (targets.empty()) {
        progress->done = true;
        return;
      }
      for (const std::string& target : targets) {
        status.Update(client::RescanSubtree(root_fd, target, emit, progress));
      }
    }
    std::cerr << "replifs: initial sync: " << status << std::endl;
    renames->Restart();
    progress->scanned = 0;
    progress->queued = 0;
    for (int i = 0; i < 10 && !*stopping; ++i) absl::SleepFor(absl::Milliseconds(100));
  }
}

// After the journal overflowed (JournalingSink::rescan_needed), and once it
// has room again, reconciles the whole tree with the server: the walk finds
// every change the journal missed (journal/FORMAT.md, "Bounded disk use").
void RescanWhenNeeded(client::BackupClient* backup, int root_fd, JournalingSink* sink,
                      journal::Journal* journal, uint64_t max_bytes, RenamesDuringWalk* renames,
                      client::ReconcileProgress* progress, const std::atomic<bool>* stopping) {
  while (!*stopping) {
    absl::SleepFor(absl::Milliseconds(200));
    if (!sink->rescan_needed() || journal->stats().disk_bytes > max_bytes / 2) continue;
    std::cerr << "replifs: the journal has room again; reconciling the tree with the server" << std::endl;
    progress->done = false;       // before the flag clears: status never shows neither
    sink->clear_rescan_needed();  // a change missed from now on sets it again
    renames->Restart();
    progress->scanned = 0;
    progress->queued = 0;
    RunInitialSync(backup, root_fd, sink, renames, progress, stopping);
  }
}

}  // namespace

int RunDaemon(const ProtectionConfig& config, const std::function<void(const absl::Status&)>& ready) {
  auto fail = [&](const absl::Status& status) {
    ready(status);
    return 1;
  };
  if (absl::Status status = MakeStateDir(config.state_dir); !status.ok()) return fail(status);
  absl::StatusOr<int> lock_fd = LockStateDir(config.state_dir);
  if (!lock_fd.ok()) return fail(lock_fd.status());
  if (absl::Status status = WriteConfig(config); !status.ok()) return fail(status);

  journal::JournalOptions journal_options;
  journal_options.directory = config.state_dir + "/journal";
  journal_options.max_bytes = config.journal_max_bytes;
  // Trim frees whole segments only: keep several under the cap so it can drain.
  journal_options.segment_bytes = std::min<uint64_t>(journal_options.segment_bytes, config.journal_max_bytes / 4);
  auto journal = journal::Journal::Open(journal_options);
  if (!journal.ok()) return fail(journal.status());

  // Opened before the mount: afterwards the path leads into the overlay.
  int root_fd = open(config.mountpoint.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) {
    return fail(absl::NotFoundError(absl::StrCat(config.mountpoint, ": ", strerror(errno))));
  }

  client::ConnectionOptions connection;
  connection.server = config.server;
  connection.repo = config.repo;
  connection.token = config.token;
  connection.ca_pem = config.ca_pem;
  connection.journal_id = (*journal)->id();
  connection.rpc_timeout = absl::Seconds(30);
  // The chunk maps only save reading: if they cannot be opened, read whole files.
  auto chunk_maps = client::ChunkMapStore::Open(config.state_dir + "/chunk-maps.sqlite");
  if (!chunk_maps.ok()) std::cerr << "replifs: " << chunk_maps.status() << std::endl;
  client::BackupClient backup(connection, root_fd, chunk_maps.ok() ? chunk_maps->get() : nullptr);

  scheduler::SchedulerPolicy policy;
  policy.quiet_interval = config.quiet_interval;
  policy.max_delay = config.max_delay;
  journal::Journal* journal_ptr = journal->get();
  SyncBeforeSend executor(journal_ptr, &backup);
  auto scheduler = scheduler::Scheduler::Create(
      policy, &executor,
      [journal_ptr](uint64_t acked) {
        fault::Hit("after-ack-before-trim");
        if (absl::Status s = journal_ptr->Trim(acked); !s.ok()) std::cerr << "replifs: trim: " << s << std::endl;
      },
      (*journal)->stats().acked_seq);
  JournalingSink sink(journal_ptr, scheduler.get());

  // Changes journaled before a crash or an unmount go first.
  uint64_t replayed = 0;
  absl::Status replay = (*journal)->Replay([&](const v1::ChangeEvent& event) {
    scheduler->Enqueue(event);
    ++replayed;
  });
  if (!replay.ok()) return fail(replay);

  // The kernel shim first: writes that bypass the overlay (fds opened before
  // the mount, bind mounts, other namespaces) are captured from here on.
  // --no-replicate: the overlay alone, nothing captured (bench/fs).
  absl::StatusOr<std::unique_ptr<ShimCapture>> shim =
      config.replicate ? ShimCapture::Start(root_fd, config.mountpoint, &sink)
                       : absl::StatusOr<std::unique_ptr<ShimCapture>>(
                             absl::FailedPreconditionError("--no-replicate"));
  if (!shim.ok()) std::cerr << "replifs: kernel shim not active (overlay only): " << shim.status() << std::endl;

  fusefs::MountOptions mount_options;
  mount_options.mountpoint = config.mountpoint;
  mount_options.backing_root_fd = root_fd;
  mount_options.fsname = config.state_dir;
  auto fs = fusefs::PassthroughFs::Mount(mount_options, config.replicate ? &sink : nullptr);
  if (!fs.ok()) return fail(fs.status());
  if (shim.ok()) (*shim)->SetOverlay(fs->get());

  client::ReconcileProgress progress;
  RenamesDuringWalk renames;
  sink.SetObserver([&renames](const v1::ChangeEvent& event) { renames.Observe(event); });
  ControlService control({&config, journal_ptr, scheduler.get(), &backup, &progress,
                          [&sink] { return sink.rescan_needed(); },
                          [&shim](v1::StatusReply* reply) {
                            reply->add_capture_layers("overlay");
                            if (!shim.ok()) return;
                            reply->add_capture_layers((*shim)->layer());
                            reply->set_shim_events((*shim)->events());
                            reply->set_shim_dropped((*shim)->dropped());
                          }});
  const std::string socket_path = ControlSocketPath(config.state_dir);
  unlink(socket_path.c_str());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(&control);
  std::unique_ptr<grpc::Server> control_server = builder.BuildAndStart();
  if (control_server == nullptr) {
    (*fs)->Unmount();
    return fail(absl::InternalError(absl::StrCat("cannot listen on ", socket_path)));
  }
  chmod(socket_path.c_str(), 0600);
  std::ofstream(DaemonPidPath(config.state_dir)) << getpid() << "\n";

  scheduler->Start();
  std::atomic<bool> stopping{false};
  std::thread initial_sync([&] {
    RunInitialSync(&backup, root_fd, &sink, &renames, &progress, &stopping);
    RescanWhenNeeded(&backup, root_fd, &sink, journal_ptr, config.journal_max_bytes, &renames,
                     &progress, &stopping);
  });
  std::cerr << "replifs: protecting " << config.mountpoint << " (server " << config.server
            << ", repo " << config.repo << ", " << replayed << " journaled changes replayed)"
            << std::endl;
  ready(absl::OkStatus());

  absl::Status run = (*fs)->Run();  // until unmounted
  if (!run.ok()) std::cerr << "replifs: " << run << std::endl;

  if (shim.ok()) {
    (*shim)->SetOverlay(nullptr);
    shim->reset();  // detach: the syscalls are no longer traced
  }
  stopping = true;
  initial_sync.join();
  // Nothing in flight matters now: a late sync fails and says so.
  control_server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  scheduler->Stop();
  if (absl::Status s = journal_ptr->Sync(); !s.ok()) std::cerr << "replifs: journal sync: " << s << std::endl;
  (*fs)->Unmount();
  unlink(socket_path.c_str());
  unlink(DaemonPidPath(config.state_dir).c_str());
  close(root_fd);
  std::cerr << "replifs: " << config.mountpoint << " unprotected; "
            << scheduler->stats().pending_events << " changes stay in the journal" << std::endl;
  return 0;
}

}  // namespace replifs::cli

#include "cli/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
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
#include "absl/time/clock.h"
#include "cli/change_age_tracker.h"
#include "cli/control_service.h"
#include "cli/crash_marker.h"
#include "cli/daemon_metrics.h"
#include "cli/journaling_sink.h"
#include "cli/overlay_whole_state.h"
#include "cli/shim_capture.h"
#include "fusefs/passthrough_fs.h"
#include "replicator/client/backup_client.h"
#include "replicator/client/reconcile.h"
#include "replicator/journal/journal.h"
#include "replicator/scheduler/scheduler.h"
#include "replicator/server/fault_injection.h"
#include "replicator/telemetry/log.h"
#include "replicator/telemetry/metrics_http_server.h"

namespace replifs::cli {
namespace {

using telemetry::LogError;
using telemetry::LogInfo;
using telemetry::LogWarn;

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
// Replication work (reading, chunking, uploading, reconciling) runs at a low
// CPU priority, so it mostly takes the CPU the programs writing through the
// mount leave idle instead of slowing them (issue 4: bench/fs showed the
// chunking of a busy file taking a core from fio). 10, not 19: a tenth of a
// normal thread's share still bounds how late a change reaches the server
// on a machine kept busy by other work. nice is per thread on Linux, and
// threads started from a lowered one (the upload pipeline) inherit it.
constexpr int kReplicationNice = 10;
void LowerThisThreadsPriority() {
  thread_local bool lowered = false;
  if (lowered) return;
  lowered = true;
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), kReplicationNice) != 0) {
    LogWarn("daemon", "cannot lower the replication thread's priority", {{"error", strerror(errno)}});
  }
}

class SyncBeforeSend : public scheduler::CommandExecutor {
 public:
  SyncBeforeSend(journal::Journal* journal, scheduler::CommandExecutor* inner)
      : journal_(journal), inner_(inner) {}
  absl::Status Execute(const std::vector<v1::BackupCommand>& batch,
                       std::vector<size_t>* stale) override {
    LowerThisThreadsPriority();  // the scheduler's processing thread
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

// fusefs's count of write handles as the scheduler's view: a file still
// open for writing through the mount is held back until its last close or
// the max delay (SchedulerPolicy). cli wires the two: neither includes the other.
class OverlayOpenWriters : public scheduler::OpenWritersView {
 public:
  explicit OverlayOpenWriters(fusefs::OpenWriters* writers) : writers_(writers) {}
  bool IsOpenForWriting(uint64_t inode) const override { return writers_->Count(inode) > 0; }

 private:
  fusefs::OpenWriters* writers_;
};

// Compares the tree with the server once it can be reached, then stops.
void RunInitialSync(client::BackupClient* backup, int root_fd, fusefs::EventSink* sink,
                    RenamesDuringWalk* renames, client::ReconcileProgress* progress,
                    const std::atomic<bool>* stopping,
                    int64_t reread_ctime_since_ns = client::ChunkMapTrust::kNever) {
  auto emit = [sink](v1::ChangeEvent event) { sink->OnChange(std::move(event)); };
  while (!*stopping) {
    absl::StatusOr<client::RepoConnection*> connection = backup->Connection();
    absl::Status status = connection.status();
    if (connection.ok()) status = client::Reconcile(**connection, root_fd, emit, progress, backup->chunk_maps(),
                                                      reread_ctime_since_ns);
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
    LogWarn("daemon", "initial sync failed; retrying", {{"error", status}});
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
    LogInfo("daemon", "the journal has room again; reconciling the tree with the server");
    progress->done = false;       // before the flag clears: status never shows neither
    sink->clear_rescan_needed();  // a change missed from now on sets it again
    renames->Restart();
    progress->scanned = 0;
    progress->queued = 0;
    // Chunk maps stay untrusted until a walk that saw no new loss is over.
    client::ChunkMapTrust& trust = backup->chunk_map_trust();
    const uint64_t epoch = trust.epoch();
    RunInitialSync(backup, root_fd, sink, renames, progress, stopping, trust.lost_since_ns());
    if (progress->done) trust.RestoreIfNoLossSince(epoch);
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
  if (!chunk_maps.ok()) LogWarn("daemon", "no chunk maps; files will be read whole", {{"error", chunk_maps.status()}});
  client::BackupClient backup(connection, root_fd, chunk_maps.ok() ? chunk_maps->get() : nullptr);
  // The machine went down under the previous daemon: its journal may have
  // lost an unsynced tail, so no chunk map is trusted until a reconcile has
  // re-read what changed since it started (crash_marker.h).
  const std::string boot_id = CurrentBootId();
  if (std::optional<int64_t> lost_since = ChangesMayBeLostSince(ReadCrashMarker(config.state_dir), boot_id)) {
    LogWarn("daemon", "the machine went down while protecting; re-reading files changed since then",
            {{"since_ns", *lost_since}});
    backup.chunk_map_trust().NoteLostChanges(*lost_since);
  }
  if (absl::Status s = WriteCrashMarker(config.state_dir, {boot_id, absl::GetCurrentTimeNanos()}); !s.ok()) {
    LogWarn("daemon", "cannot write the crash marker", {{"error", s}});
  }

  scheduler::SchedulerPolicy policy;
  policy.quiet_interval = config.quiet_interval;
  policy.max_delay = config.max_delay;
  journal::Journal* journal_ptr = journal->get();
  ChangeAgeTracker ages;  // for the RPO metrics
  SyncBeforeSend executor(journal_ptr, &backup);
  auto scheduler = scheduler::Scheduler::Create(
      policy, &executor,
      [journal_ptr, &ages, &backup](uint64_t acked) {
        ages.Acknowledged(acked, absl::GetCurrentTimeNanos());
        fault::Hit("after-ack-before-trim");
        // A change leaves the journal only once its chunk map is kept.
        backup.WaitForSavedMaps();
        if (absl::Status s = journal_ptr->Trim(acked); !s.ok()) LogError("journal", "trim failed", {{"error", s}});
      },
      (*journal)->stats().acked_seq);
  JournalingSink sink(journal_ptr, scheduler.get());
  sink.SetMissedChangesHandler(
      [&backup] { backup.chunk_map_trust().NoteLostChanges(absl::GetCurrentTimeNanos()); });

  // Changes journaled before a crash or an unmount go first.
  uint64_t replayed = 0;
  absl::Status replay = (*journal)->Replay([&](const v1::ChangeEvent& event) {
    ages.Journaled(event.seq(), event.time_ns());
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
  if (!shim.ok()) LogWarn("daemon", "kernel shim not active (overlay only)", {{"error", shim.status()}});

  fusefs::MountOptions mount_options;
  mount_options.mountpoint = config.mountpoint;
  mount_options.backing_root_fd = root_fd;
  mount_options.fsname = config.state_dir;
  mount_options.writeback_cache = config.writeback_cache;
  // Long entry/attribute timeouts are safe while changes made underneath are
  // announced (the shim calls InvalidatePath); without it 1 s bounds how
  // stale a view gets. --no-replicate (bench/fs) caches like a shim mount so
  // the two compare.
  mount_options.cache_timeout = (shim.ok() || !config.replicate) ? 60.0 : 1.0;
  auto fs = fusefs::PassthroughFs::Mount(mount_options, config.replicate ? &sink : nullptr);
  if (!fs.ok()) return fail(fs.status());
  if (shim.ok()) (*shim)->SetOverlay(fs->get());
  OverlayOpenWriters open_writers(&(*fs)->open_writers());
  (*fs)->open_writers().SetLastCloseListener(
      [&scheduler](uint64_t inode) { scheduler->WriterClosed(inode); });
  scheduler->SetOpenWriters(&open_writers);
  backup.SetOpenWriters(&open_writers);
  OverlayWholeState whole_state(config.mountpoint, &(*fs)->fsync_copies());
  backup.SetWholeState(&whole_state);

  client::ReconcileProgress progress;
  RenamesDuringWalk renames;
  sink.SetObserver([&renames, &ages](const v1::ChangeEvent& event) {
    renames.Observe(event);
    ages.Journaled(event.seq(), event.time_ns());
  });
  ControlService control({&config, journal_ptr, scheduler.get(), &backup, &progress,
                          [&sink] { return sink.rescan_needed(); },
                          [&shim](v1::StatusReply* reply) {
                            reply->add_capture_layers("overlay");
                            if (!shim.ok()) return;
                            for (const std::string& layer : (*shim)->layers()) reply->add_capture_layers(layer);
                            reply->set_shim_events((*shim)->events());
                            reply->set_shim_dropped((*shim)->dropped());
                            reply->set_shim_untracked((*shim)->untracked());
                            reply->set_shim_vma_busy((*shim)->vma_busy());
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

  telemetry::MetricsRegistry metrics;
  RegisterDaemonMetrics(&metrics, {scheduler.get(), &backup, journal_ptr, &ages,
                                   [&shim] { return shim.ok() ? (*shim)->events() : 0; },
                                   [&shim] { return shim.ok() ? (*shim)->dropped() : 0; },
                                   [&sink] { return sink.rescan_needed(); }});
  std::unique_ptr<telemetry::MetricsHttpServer> metrics_http;
  if (!config.metrics_address.empty()) {
    auto started = telemetry::MetricsHttpServer::Start(config.metrics_address, &metrics);
    if (!started.ok()) {
      control_server->Shutdown();
      (*fs)->Unmount();
      return fail(started.status());
    }
    metrics_http = std::move(*started);
    LogInfo("daemon", "metrics endpoint", {{"url", "http://" + metrics_http->address() + "/metrics"}});
  }
  std::ofstream(DaemonPidPath(config.state_dir)) << getpid() << "\n";

  scheduler->Start();
  std::atomic<bool> stopping{false};
  std::thread initial_sync([&] {
    LowerThisThreadsPriority();
    // Replayed changes reach the server before the tree is compared with
    // it: one applied after the comparison's listing could restore what a
    // change interrupted by the crash (done on disk, never journaled) undid.
    while (replayed > 0 && !stopping && !scheduler->FlushAndWait(absl::Seconds(1)).ok()) {
    }
    client::ChunkMapTrust& trust = backup.chunk_map_trust();
    const uint64_t epoch = trust.epoch();
    RunInitialSync(&backup, root_fd, &sink, &renames, &progress, &stopping, trust.lost_since_ns());
    if (progress.done) trust.RestoreIfNoLossSince(epoch);
    RescanWhenNeeded(&backup, root_fd, &sink, journal_ptr, config.journal_max_bytes, &renames,
                     &progress, &stopping);
  });
  LogInfo("daemon", "protecting",
          {{"dir", config.mountpoint}, {"server", config.server}, {"repo", config.repo},
           {"replayed", replayed}});
  ready(absl::OkStatus());

  absl::Status run = (*fs)->Run();  // until unmounted
  if (!run.ok()) LogError("daemon", "filesystem loop failed", {{"error", run}});

  if (shim.ok()) {
    (*shim)->SetOverlay(nullptr);
    shim->reset();  // detach: the syscalls are no longer traced
  }
  stopping = true;
  initial_sync.join();
  // Nothing in flight matters now: a late sync fails and says so.
  control_server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  scheduler->Stop();
  scheduler->SetOpenWriters(nullptr);
  backup.SetOpenWriters(nullptr);
  backup.SetWholeState(nullptr);
  (*fs)->open_writers().SetLastCloseListener(nullptr);
  if (absl::Status s = journal_ptr->Sync(); !s.ok()) LogError("journal", "sync failed", {{"error", s}});
  (*fs)->Unmount();
  unlink(socket_path.c_str());
  unlink(DaemonPidPath(config.state_dir).c_str());
  RemoveCrashMarker(config.state_dir);  // after the journal sync: a clean exit
  close(root_fd);
  metrics_http.reset();  // its gauges read parts that are going away
  LogInfo("daemon", "unprotected",
          {{"dir", config.mountpoint}, {"pending", scheduler->stats().pending_events}});
  return 0;
}

}  // namespace replifs::cli

#include "cli/daemon.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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
#include "fusefs/passthrough_fs.h"
#include "replicator/client/backup_client.h"
#include "replicator/client/reconcile.h"
#include "replicator/journal/journal.h"
#include "replicator/scheduler/scheduler.h"

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
  connection.journal_id = (*journal)->id();
  connection.rpc_timeout = absl::Seconds(30);
  client::BackupClient backup(connection, root_fd);

  scheduler::SchedulerPolicy policy;
  policy.quiet_interval = config.quiet_interval;
  policy.max_delay = config.max_delay;
  journal::Journal* journal_ptr = journal->get();
  auto scheduler = scheduler::Scheduler::Create(
      policy, &backup,
      [journal_ptr](uint64_t acked) {
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

  fusefs::MountOptions mount_options;
  mount_options.mountpoint = config.mountpoint;
  mount_options.backing_root_fd = root_fd;
  mount_options.fsname = config.state_dir;
  auto fs = fusefs::PassthroughFs::Mount(mount_options, &sink);
  if (!fs.ok()) return fail(fs.status());

  client::ReconcileProgress progress;
  RenamesDuringWalk renames;
  sink.SetObserver([&renames](const v1::ChangeEvent& event) { renames.Observe(event); });
  ControlService control({&config, journal_ptr, scheduler.get(), &backup, &progress,
                          [&sink] { return sink.rescan_needed(); }});
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
  std::thread initial_sync(RunInitialSync, &backup, root_fd, &sink, &renames, &progress,
                           &stopping);
  std::cerr << "replifs: protecting " << config.mountpoint << " (server " << config.server
            << ", repo " << config.repo << ", " << replayed << " journaled changes replayed)"
            << std::endl;
  ready(absl::OkStatus());

  absl::Status run = (*fs)->Run();  // until unmounted
  if (!run.ok()) std::cerr << "replifs: " << run << std::endl;

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

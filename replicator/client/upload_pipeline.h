// Uploads groups of chunks on background threads while the caller goes on
// reading and chunking: reading, compressing and the server's storing
// overlap instead of taking turns (issue 5, initial sync throughput). Each
// group is one MissingChunks and its UploadChunks streams; `workers` groups
// are sent at once, so one stream's transfer overlaps another's server-side
// sync (measured: the sender otherwise waits on each stream's fsyncs). At
// most `max_queued` groups wait, which bounds the memory held. Chunks need no
// order: the commit that names them (Apply) comes after Drain.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "replicator/client/repo_connection.h"

namespace replifs::client {

class UploadPipeline {
 public:
  explicit UploadPipeline(RepoConnection* connection, size_t workers = 2, size_t max_queued = 2);
  ~UploadPipeline();  // waits for what was submitted (errors are dropped: call Drain)

  // Queues a group (blocks while `max_queued` are waiting). Returns the
  // first error of an earlier group, if any; then nothing more is sent.
  absl::Status Submit(std::vector<RepoConnection::UploadItem> group);
  // Waits until every submitted group is stored; the first error, if any.
  absl::Status Drain();

  // Totals of the groups stored so far (complete after Drain).
  uint64_t chunks_uploaded() const;
  uint64_t bytes_uploaded() const;  // on the wire, after compression

 private:
  void Run();

  RepoConnection* const connection_;
  const size_t max_queued_;
  mutable std::mutex mutex_;  // guards everything below
  std::condition_variable changed_;
  std::deque<std::vector<RepoConnection::UploadItem>> queue_;
  size_t busy_ = 0;  // groups taken from the queue and not yet stored
  bool stopping_ = false;
  absl::Status error_;
  uint64_t chunks_uploaded_ = 0;
  uint64_t bytes_uploaded_ = 0;
  const size_t worker_count_;
  std::vector<std::thread> threads_;  // started by the first Submit
};

}  // namespace replifs::client

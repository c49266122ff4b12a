#include "replicator/client/upload_pipeline.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

namespace replifs::client {

UploadPipeline::UploadPipeline(RepoConnection* connection, size_t workers, size_t max_queued)
    : connection_(connection),
      max_queued_(std::max<size_t>(max_queued, 1)),
      worker_count_(std::max<size_t>(workers, 1)) {}

UploadPipeline::~UploadPipeline() {
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return queue_.empty() && busy_ == 0; });
    stopping_ = true;
  }
  changed_.notify_all();
  for (std::thread& thread : threads_) thread.join();
}

absl::Status UploadPipeline::Submit(std::vector<RepoConnection::UploadItem> group) {
  if (group.empty()) return absl::OkStatus();
  std::unique_lock lock(mutex_);
  while (threads_.size() < worker_count_) threads_.emplace_back([this] { Run(); });
  changed_.wait(lock, [this] { return queue_.size() < max_queued_ || !error_.ok(); });
  if (!error_.ok()) return error_;
  queue_.push_back(std::move(group));
  changed_.notify_all();
  return absl::OkStatus();
}

absl::Status UploadPipeline::Drain() {
  std::unique_lock lock(mutex_);
  changed_.wait(lock, [this] { return queue_.empty() && busy_ == 0; });
  return error_;
}

uint64_t UploadPipeline::chunks_uploaded() const {
  std::lock_guard lock(mutex_);
  return chunks_uploaded_;
}

uint64_t UploadPipeline::bytes_uploaded() const {
  std::lock_guard lock(mutex_);
  return bytes_uploaded_;
}

void UploadPipeline::Run() {
  while (true) {
    std::vector<RepoConnection::UploadItem> group;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [this] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping
      group = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
      changed_.notify_all();  // room in the queue
    }
    absl::Status status;
    uint64_t chunks = 0, bytes = 0;
    {
      std::vector<std::string> ids;
      ids.reserve(group.size());
      for (const auto& item : group) ids.push_back(item.id);
      absl::StatusOr<std::vector<std::string>> missing = connection_->MissingChunks(ids);
      status = missing.status();
      if (status.ok()) {
        const std::set<std::string> wanted(missing->begin(), missing->end());
        std::vector<RepoConnection::UploadItem> uploads;
        for (auto& item : group) {
          if (wanted.count(item.id)) uploads.push_back(std::move(item));
        }
        absl::StatusOr<uint64_t> sent = connection_->UploadChunks(uploads);
        status = sent.status();
        if (sent.ok()) {
          chunks = uploads.size();
          bytes = *sent;
        }
      }
    }
    std::lock_guard lock(mutex_);
    --busy_;
    chunks_uploaded_ += chunks;
    bytes_uploaded_ += bytes;
    if (!status.ok() && error_.ok()) {
      error_ = status;
      queue_.clear();  // nothing after a failed group: the batch is retried whole
    }
    changed_.notify_all();
  }
}

}  // namespace replifs::client

#include "replicator/server/page_cache.h"

namespace replifs::server {

absl::StatusOr<bool> CachingPageStore::HasPage(int64_t repo_id, std::string_view id) {
  return inner_->HasPage(repo_id, id);
}

absl::Status CachingPageStore::PutPage(int64_t repo_id, std::string_view id, std::string_view data) {
  absl::Status status = inner_->PutPage(repo_id, id, data);
  // The next edit of the same file reads what this one wrote.
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    InsertLocked({repo_id, std::string(id)}, std::string(data));
  }
  return status;
}

absl::StatusOr<std::string> CachingPageStore::GetPage(int64_t repo_id, std::string_view id) {
  Key key{repo_id, std::string(id)};
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      ++hits_;
      lru_.splice(lru_.begin(), lru_, it->second.position);
      return it->second.data;
    }
    ++misses_;
  }
  absl::StatusOr<std::string> page = inner_->GetPage(repo_id, id);
  if (page.ok()) {
    absl::MutexLock lock(&mu_);
    InsertLocked(std::move(key), *page);
  }
  return page;
}

void CachingPageStore::InsertLocked(Key key, std::string data) {
  if (data.size() > max_bytes_ || entries_.contains(key)) return;
  lru_.push_front(key);
  bytes_ += data.size();
  entries_.emplace(std::move(key), Entry{std::move(data), lru_.begin()});
  while (bytes_ > max_bytes_) {
    auto oldest = entries_.find(lru_.back());
    bytes_ -= oldest->second.data.size();
    entries_.erase(oldest);
    lru_.pop_back();
  }
}

uint64_t CachingPageStore::hits() const {
  absl::MutexLock lock(&mu_);
  return hits_;
}

uint64_t CachingPageStore::misses() const {
  absl::MutexLock lock(&mu_);
  return misses_;
}

size_t CachingPageStore::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

}  // namespace replifs::server

#include "replicator/client/node_snapshot.h"

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <set>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replicator/client/stable_copy.h"

namespace replifs::client {
namespace {

constexpr size_t kReadBlock = 4 << 20;

absl::Status ErrnoStatus(int err, absl::string_view what, absl::string_view path) {
  std::string message = absl::StrCat(what, " '", path, "': ", strerror(err));
  if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

// Extended attributes are read by path through the root fd's /proc link:
// O_PATH fds refuse f*xattr calls, and l*xattr must not follow a symlink.
std::string ProcPath(int root_fd, const std::string& path) {
  std::string proc = absl::StrCat("/proc/self/fd/", root_fd);
  if (!path.empty()) absl::StrAppend(&proc, "/", path);
  return proc;
}

absl::Status ReadXattrs(int root_fd, const std::string& path, v1::NodeState* state) {
  const std::string proc = ProcPath(root_fd, path);
  // The root is the /proc magic link itself: it must be followed.
  auto list = [&](char* buf, size_t size) {
    return path.empty() ? listxattr(proc.c_str(), buf, size) : llistxattr(proc.c_str(), buf, size);
  };
  auto get = [&](const char* name, void* buf, size_t size) {
    return path.empty() ? getxattr(proc.c_str(), name, buf, size)
                        : lgetxattr(proc.c_str(), name, buf, size);
  };
  std::vector<char> names;
  for (int attempt = 0; attempt < 4; ++attempt) {
    ssize_t size = list(nullptr, 0);
    if (size < 0) {
      if (errno == ENOTSUP) return absl::OkStatus();
      return ErrnoStatus(errno, "listxattr", path);
    }
    names.resize(size);
    size = list(names.data(), names.size());
    if (size >= 0) {
      names.resize(size);
      break;
    }
    if (errno != ERANGE) return ErrnoStatus(errno, "listxattr", path);
  }
  std::vector<std::string> sorted;
  for (size_t pos = 0; pos < names.size();) {
    std::string name(&names[pos]);
    pos += name.size() + 1;
    if (!name.empty()) sorted.push_back(std::move(name));
  }
  std::sort(sorted.begin(), sorted.end());
  for (const std::string& name : sorted) {
    ssize_t size = get(name.c_str(), nullptr, 0);
    if (size < 0) continue;  // removed meanwhile
    std::string value(size, '\0');
    size = get(name.c_str(), value.data(), value.size());
    if (size < 0) continue;
    value.resize(size);
    v1::Xattr* xattr = state->add_xattrs();
    xattr->set_name(name);
    xattr->set_value(std::move(value));
  }
  return absl::OkStatus();
}

bool SameGeneration(const struct stat& a, const struct stat& b) {
  return a.st_ino == b.st_ino && a.st_size == b.st_size && a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
         a.st_mtim.tv_nsec == b.st_mtim.tv_nsec && a.st_ctim.tv_sec == b.st_ctim.tv_sec &&
         a.st_ctim.tv_nsec == b.st_ctim.tv_nsec;
}

void FillAttributes(const struct stat& st, v1::NodeState* state) {
  state->set_type(NodeTypeOf(st.st_mode));
  state->set_mode(st.st_mode & 07777);
  state->set_uid(st.st_uid);
  state->set_gid(st.st_gid);
  state->set_size(S_ISREG(st.st_mode) || S_ISLNK(st.st_mode) ? st.st_size : 0);
  state->set_mtime_ns(static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
  state->set_rdev(S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? st.st_rdev : 0);
  state->set_link_group(LinkGroupOf(st));
}

// Reads the whole file once, cutting chunks; `chunks` receives the list.
absl::Status ChunkOpenFile(int fd, const std::string& path, const chunker::ChunkIdHasher& hasher,
                           const ChunkSink& sink, v1::NodeState* state) {
  const chunker::ChunkerParams params;
  // One buffer per thread, never zero-filled: a fresh 4 MiB vector per file
  // cost a 4 MiB memset each, 22 % of the sender's CPU on 10,000 small files.
  struct ReadBuffer {
    std::unique_ptr<uint8_t[]> bytes;
    size_t size = 0;
    uint8_t* data() { return bytes.get(); }
  };
  thread_local ReadBuffer buffer;
  if (buffer.size != kReadBlock + params.max_size) {
    buffer.size = kReadBlock + params.max_size;
    buffer.bytes.reset(new uint8_t[buffer.size]);
  }
  size_t filled = 0;
  bool eof = false;
  while (true) {
    while (!eof && filled < params.max_size) {
      ssize_t n = read(fd, buffer.data() + filled, buffer.size - filled);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "read", path);
      }
      if (n == 0) eof = true;
      filled += n;
    }
    if (filled == 0) break;
    size_t start = 0;
    // Cut while a full max-size window remains (or the rest is the tail).
    while (start < filled && (eof || filled - start >= params.max_size)) {
      std::span<const uint8_t> window(buffer.data() + start, filled - start);
      size_t length = chunker::NextChunkLength(window, params, eof);
      std::span<const uint8_t> chunk = window.first(length);
      chunker::ChunkId id = hasher.Hash(chunk);
      v1::ChunkRef* ref = state->add_chunks();
      ref->set_id(id.ToBytes());
      ref->set_length(static_cast<uint32_t>(length));
      if (absl::Status status = sink(id, chunk); !status.ok()) return status;
      start += length;
    }
    std::memmove(buffer.data(), buffer.data() + start, filled - start);
    filled -= start;
    if (eof && filled == 0) break;
  }
  return absl::OkStatus();
}

int64_t Nanos(const struct timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec; }

ChunkMap MapOf(const struct stat& st, const v1::NodeState& state) {
  ChunkMap map;
  map.identity = {st.st_dev, st.st_ino, static_cast<uint64_t>(st.st_size), Nanos(st.st_mtim),
                  Nanos(st.st_ctim)};
  uint64_t offset = 0;
  for (const v1::ChunkRef& ref : state.chunks()) {
    chunker::ChunkRecord record;
    record.offset = offset;
    record.length = ref.length();
    chunker::ChunkId::FromBytes(ref.id(), &record.id);
    offset += ref.length();
    map.chunks.push_back(record);
  }
  return map;
}

void AddChunk(const chunker::ChunkRecord& record, v1::NodeState* state) {
  v1::ChunkRef* ref = state->add_chunks();
  ref->set_id(record.id.ToBytes());
  ref->set_length(record.length);
}

// Re-chunks only around the changed ranges (or nothing, for an attribute
// change), starting from the file's previous chunk map.
absl::Status ChunkIncrementally(int fd, const std::string& path, const ChunkMap& previous,
                                const struct stat& st, const chunker::ChunkIdHasher& hasher,
                                const ChunkSink& sink, const ContentSnapshotOptions& options,
                                v1::NodeState* state) {
  std::vector<chunker::ChunkRecord> chunks;
  if (options.content_unchanged) {  // identity checked by the caller
    chunks = previous.chunks;
  } else {
    chunker::ReadAt read = [&](uint64_t offset, std::span<uint8_t> out) {
      for (size_t done = 0; done < out.size();) {
        ssize_t n = pread(fd, out.data() + done, out.size() - done, offset + done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return ErrnoStatus(errno, "read", path);
        if (n == 0) return absl::AbortedError(absl::StrCat("'", path, "' shrank while it was read"));
        done += n;
      }
      return absl::OkStatus();
    };
    chunker::NewChunkSink new_chunk = [&](const chunker::ChunkRecord& record,
                                          std::span<const uint8_t> data) {
      if (options.on_recut_chunk) options.on_recut_chunk(previous, record, data);
      return sink(record.id, data);
    };
    chunker::RechunkStats stats;
    absl::StatusOr<std::vector<chunker::ChunkRecord>> recut = chunker::Rechunk(
        previous.chunks, st.st_size, options.changed, read, hasher, new_chunk, &stats);
    if (!recut.ok()) return recut.status();
    if (options.bytes_read != nullptr) *options.bytes_read += stats.bytes_read;
    chunks = std::move(*recut);
  }
  // Chunks not cut now come from the previous map: the server must still have them.
  for (const auto& record : chunks) AddChunk(record, state);
  if (options.reused_ids != nullptr) {
    // A sorted vector, not a set of strings: a 1 GiB file has 16,384 chunks
    // and this runs on every edit of it (allocations were most of its cost).
    std::vector<chunker::ChunkId> previous_ids;
    previous_ids.reserve(previous.chunks.size());
    for (const auto& record : previous.chunks) previous_ids.push_back(record.id);
    std::sort(previous_ids.begin(), previous_ids.end());
    options.reused_ids->reserve(chunks.size());
    for (const auto& record : chunks) {
      if (std::binary_search(previous_ids.begin(), previous_ids.end(), record.id)) {
        options.reused_ids->push_back(record.id.ToBytes());
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

uint64_t LinkGroupOf(const struct stat& st) {
  if (!S_ISREG(st.st_mode) || st.st_nlink < 2) return 0;
  // st_ino names the inode within the device; mixing in st_dev keeps groups
  // of different filesystems apart. Never 0.
  return (static_cast<uint64_t>(st.st_ino) ^ (static_cast<uint64_t>(st.st_dev) << 48)) | 1ull << 63;
}

v1::NodeState::Type NodeTypeOf(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return v1::NodeState::REGULAR;
    case S_IFDIR: return v1::NodeState::DIRECTORY;
    case S_IFLNK: return v1::NodeState::SYMLINK;
    case S_IFIFO: return v1::NodeState::FIFO;
    case S_IFCHR: return v1::NodeState::CHAR_DEVICE;
    case S_IFBLK: return v1::NodeState::BLOCK_DEVICE;
    case S_IFSOCK: return v1::NodeState::SOCKET;
    default: return v1::NodeState::TYPE_UNSPECIFIED;
  }
}

absl::StatusOr<v1::NodeState> StatNode(int root_fd, const std::string& path, struct stat* st_out) {
  struct stat st;
  int rc = path.empty() ? fstatat(root_fd, "", &st, AT_EMPTY_PATH)
                        : fstatat(root_fd, path.c_str(), &st, AT_SYMLINK_NOFOLLOW);
  if (rc != 0) return ErrnoStatus(errno, "stat", path);
  v1::NodeState state;
  state.set_path(path);
  FillAttributes(st, &state);
  if (S_ISLNK(st.st_mode)) {
    std::string target(st.st_size + 1, '\0');
    ssize_t n = readlinkat(root_fd, path.c_str(), target.data(), target.size());
    if (n < 0) return ErrnoStatus(errno, "readlink", path);
    target.resize(n);
    state.set_size(n);
    state.set_symlink_target(std::move(target));
  }
  if (absl::Status status = ReadXattrs(root_fd, path, &state); !status.ok()) return status;
  if (st_out != nullptr) *st_out = st;
  return state;
}

absl::StatusOr<v1::NodeState> SnapshotNode(int root_fd, const std::string& path,
                                           const chunker::ChunkIdHasher& hasher,
                                           const ChunkSink& sink,
                                           const ContentSnapshotOptions& options) {
  // Chunks the content behind `fd`, which holds the file as `opened` says.
  auto read_content = [&](int fd, const struct stat& opened, v1::NodeState* state) {
    std::optional<ChunkMap> previous;
    if (options.previous_map) previous = options.previous_map(opened.st_dev, opened.st_ino);
    // "Attributes only" is trusted only while size and mtime say so; then no
    // range is known, so the whole file is read.
    if (previous && options.content_unchanged &&
        (previous->identity.size != static_cast<uint64_t>(opened.st_size) ||
         previous->identity.mtime_ns != Nanos(opened.st_mtim))) {
      previous.reset();
    }
    state->clear_chunks();
    if (options.reused_ids != nullptr) options.reused_ids->clear();
    if (previous.has_value()) {
      return ChunkIncrementally(fd, path, *previous, opened, hasher, sink, options, state);
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    absl::Status status = ChunkOpenFile(fd, path, hasher, sink, state);
    if (options.bytes_read != nullptr) *options.bytes_read += opened.st_size;
    return status;
  };

  // A file still open for writing: read a copy of a state the program wrote
  // (whole_state.h), in full, since the writeback that made it whole sent
  // writes that are not in `changed`. Too large to copy: read it as it is.
  if (options.whole_state != nullptr) {
    absl::StatusOr<StableCopy> copy = options.whole_state->CopyWholeState(options.expected_inode, path);
    if (!copy.ok() && !absl::IsOutOfRange(copy.status())) {
      return absl::AbortedError(absl::StrCat("'", path, "': ", copy.status().message()));  // retried
    }
    if (copy.ok()) {
      struct stat now;
      absl::StatusOr<v1::NodeState> state = StatNode(root_fd, path, &now);
      // Inode numbers repeat across devices (a filesystem mounted in the
      // tree): a copy another device's FSYNC made is not this file's.
      if (state.ok() && (now.st_ino != copy->source.st_ino || now.st_dev != copy->source.st_dev)) {
        state = absl::FailedPreconditionError(absl::StrCat("'", path, "' names another inode now"));
      }
      absl::Status status = state.status();
      if (state.ok()) {
        FillAttributes(copy->source, &*state);  // size and times of the state copied
        state->clear_chunks();
        posix_fadvise(copy->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        status = ChunkOpenFile(copy->fd, path, hasher, sink, &*state);
        if (options.bytes_read != nullptr) *options.bytes_read += copy->source.st_size;
      }
      close(copy->fd);
      if (!status.ok()) return status;
      if (options.map_out != nullptr) *options.map_out = MapOf(copy->source, *state);
      return state;
    }
  }

  for (int attempt = 0; attempt < std::max(1, options.attempts); ++attempt) {
    struct stat before;
    absl::StatusOr<v1::NodeState> state = StatNode(root_fd, path, &before);
    if (!state.ok()) return state.status();
    if (options.expected_inode != 0 && before.st_ino != options.expected_inode) {
      return absl::FailedPreconditionError(absl::StrCat("'", path, "' names another inode now"));
    }
    if (!S_ISREG(before.st_mode)) return state;

    // O_NONBLOCK: if the path turned into a fifo meanwhile, open must not hang.
    int fd = openat(root_fd, path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "open", path);
    struct stat opened;
    if (fstat(fd, &opened) != 0 || !SameGeneration(before, opened)) {
      close(fd);
      continue;
    }
    absl::Status status = read_content(fd, opened, &*state);
    struct stat after;
    bool unchanged = fstat(fd, &after) == 0 && SameGeneration(before, after);
    close(fd);
    if (!unchanged) continue;  // torn (a read error from a shrinking file included)
    if (!status.ok()) return status;
    if (options.map_out != nullptr) *options.map_out = MapOf(after, *state);
    return state;
  }

  // Never quiet: read a copy that held still instead (stable_copy.h).
  if (options.stable_copy_attempts > 0) {
    struct stat st;
    absl::StatusOr<v1::NodeState> state = StatNode(root_fd, path, &st);
    if (!state.ok()) return state.status();
    if (options.expected_inode != 0 && st.st_ino != options.expected_inode) {
      return absl::FailedPreconditionError(absl::StrCat("'", path, "' names another inode now"));
    }
    if (!S_ISREG(st.st_mode)) return state;
    int fd = openat(root_fd, path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, "open", path);
    // Copies cost the file's size each: big files get fewer tries.
    const int attempts = static_cast<int>(std::clamp<int64_t>(
        (int64_t{256} << 20) / std::max<int64_t>(st.st_size, 1), 2, options.stable_copy_attempts));
    absl::StatusOr<StableCopy> copy = CopyWhileUnchanged(root_fd, fd, attempts);
    close(fd);
    if (copy.ok()) {
      FillAttributes(copy->source, &*state);  // size and times of the generation copied
      absl::Status status = read_content(copy->fd, copy->source, &*state);
      close(copy->fd);
      if (!status.ok()) return status;
      if (options.map_out != nullptr) *options.map_out = MapOf(copy->source, *state);
      return state;
    }
    if (!absl::IsAborted(copy.status())) return copy.status();
  }
  return absl::AbortedError(absl::StrCat("'", path, "' kept changing while it was read"));
}

}  // namespace replifs::client

#include "kmod-shim/reader/shim_record.h"

#include <fcntl.h>
#include <time.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kmod-shim/reader/fs_path.h"

namespace replifs::shim {
namespace {

using v1::ChangeEvent;

constexpr uint32_t kAtRemoveDir = 0x200;  // AT_REMOVEDIR (unlinkat)

// dir (leaf-first, NUL-terminated components) + tail ('/'-separated,
// relative) -> path relative to the root. False if it climbs above the root.
bool ResolveName(const std::string& dir, const std::string& tail, std::string* out) {
  std::vector<std::string> parts;
  if (!dir.empty()) {
    std::vector<std::string> leaf_first = absl::StrSplit(dir, '\0', absl::SkipEmpty());
    parts.assign(leaf_first.rbegin(), leaf_first.rend());
  }
  for (absl::string_view part : absl::StrSplit(tail, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return false;
      parts.pop_back();
      continue;
    }
    parts.emplace_back(part);
  }
  *out = absl::StrJoin(parts, "/");
  return true;
}

bool IsDataWrite(uint32_t syscall) {
  switch (syscall) {
    case REPLIFS_SYS_WRITE: case REPLIFS_SYS_PWRITE64: case REPLIFS_SYS_WRITEV:
    case REPLIFS_SYS_PWRITEV: case REPLIFS_SYS_PWRITEV2: case REPLIFS_SYS_SENDFILE:
    case REPLIFS_SYS_SPLICE:
      return true;
    default:
      return false;
  }
}

int64_t RealtimeNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace

absl::StatusOr<ShimRecord> ParseRecord(const void* data, size_t size, const RootFsPaths& roots,
                                       const OutsideResolver& resolver) {
  constexpr size_t kHeader = sizeof(replifs_shim_event);
  if (size < kHeader) return absl::InvalidArgumentError(absl::StrCat("shim record of ", size, " bytes is shorter than its header"));
  ShimRecord record;
  std::memcpy(&record.header, data, kHeader);
  const replifs_shim_event& h = record.header;
  if (h.version != REPLIFS_SHIM_VERSION) {
    return absl::InvalidArgumentError(absl::StrCat("shim record version ", h.version, ", expected ", REPLIFS_SHIM_VERSION));
  }
  if (h.size != size) return absl::InvalidArgumentError(absl::StrCat("shim record says ", h.size, " bytes, got ", size));
  if (h.syscall == REPLIFS_SYS_NONE || h.syscall >= REPLIFS_SYS_COUNT) {
    return absl::InvalidArgumentError(absl::StrCat("shim record for unknown syscall ", h.syscall));
  }
  size_t total = 0;
  for (uint16_t len : h.name_len) {
    if (len > REPLIFS_SHIM_FIELD_MAX) return absl::InvalidArgumentError("shim record name field too long");
    total += len;
  }
  if (kHeader + total != size) return absl::InvalidArgumentError("shim record name lengths do not add up to its size");
  const char* p = static_cast<const char*>(data) + kHeader;
  std::string fields[4];
  for (int i = 0; i < 4; ++i) {
    fields[i].assign(p, h.name_len[i]);
    p += h.name_len[i];
  }
  record.unresolved = (h.flags & REPLIFS_SHIM_F_UNRESOLVED) != 0;
  // A name resolved from the filesystem's root is matched against where the
  // protected root lies in that filesystem.
  auto resolve = [&](int field, uint32_t from_fs_root_flag, std::string* out, bool* outside) {
    if (!ResolveName(fields[field], fields[field + 1], out)) {
      if (h.flags & from_fs_root_flag) *outside = true;  // above the filesystem root: not ours
      else record.unresolved = true;
      return;
    }
    if (!(h.flags & from_fs_root_flag)) return;
    // A name from a directory descriptor: the resolver starts at the writer's
    // cwd or root, which is not where this name started. Matched by its names
    // (symlinks on the way are not followed); too deep to name: outside.
    const uint32_t from_dirfd_flag = from_fs_root_flag == REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT
                                         ? REPLIFS_SHIM_F_NAME1_FROM_DIRFD
                                         : REPLIFS_SHIM_F_NAME2_FROM_DIRFD;
    const bool from_dirfd = (h.flags & from_dirfd_flag) != 0;
    if (from_dirfd && fields[field].empty()) {
      *outside = true;
      return;
    }
    if (resolver && !from_dirfd) {
      const std::string& tail = fields[field + 1];
      std::optional<std::string> resolved = resolver(h.tgid, tail, !tail.empty() && tail[0] == '/');
      if (resolved) *out = *resolved;
      else *outside = true;
      return;
    }
    if (h.root_index >= roots.size()) {
      record.unresolved = true;  // the reader was not told where the root is
      return;
    }
    std::string fs_relative = *out;
    if (!RelativeToRoot(fs_relative, roots[h.root_index], out)) *outside = true;
  };
  if (h.syscall == REPLIFS_SYS_SYMLINK || h.syscall == REPLIFS_SYS_SYMLINKAT) {
    // name1 is the target string, name2 the new link.
    record.symlink_target = fields[1];
    resolve(2, REPLIFS_SHIM_F_NAME2_FROM_FS_ROOT, &record.path, &record.path_outside);
    return record;
  }
  resolve(0, REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT, &record.path, &record.path_outside);
  switch (h.syscall) {
    case REPLIFS_SYS_SETXATTR: case REPLIFS_SYS_LSETXATTR: case REPLIFS_SYS_FSETXATTR:
    case REPLIFS_SYS_REMOVEXATTR: case REPLIFS_SYS_LREMOVEXATTR: case REPLIFS_SYS_FREMOVEXATTR:
      record.new_path = fields[3];  // the attribute's name
      break;
    default:
      if (h.name_len[2] + h.name_len[3] > 0) {
        resolve(2, REPLIFS_SHIM_F_NAME2_FROM_FS_ROOT, &record.new_path, &record.new_path_outside);
      }
  }
  return record;
}

absl::StatusOr<std::vector<ShimRecord>> ParseRecords(const void* data, size_t size, const RootFsPaths& roots) {
  std::vector<ShimRecord> out;
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    uint32_t record_size = 0;
    if (size < sizeof(replifs_shim_event)) return absl::InvalidArgumentError("truncated shim record at end of buffer");
    std::memcpy(&record_size, p + offsetof(replifs_shim_event, size), sizeof(record_size));
    if (record_size < sizeof(replifs_shim_event) || record_size > size) {
      return absl::InvalidArgumentError(absl::StrCat("shim record size ", record_size, " does not fit the buffer"));
    }
    absl::StatusOr<ShimRecord> record = ParseRecord(p, record_size, roots);
    if (!record.ok()) return record.status();
    out.push_back(*std::move(record));
    p += record_size;
    size -= record_size;
  }
  return out;
}

std::vector<ChangeEvent> ToChangeEvents(const ShimRecord& record) {
  const replifs_shim_event& h = record.header;
  ChangeEvent base;
  base.set_source(ChangeEvent::SHIM);
  base.set_time_ns(RealtimeNs());
  base.set_path(record.path);
  base.set_inode(h.ino);
  base.set_device((uint64_t{h.dev_major} << 32) | h.dev_minor);
  if (record.unresolved || (h.flags & REPLIFS_SHIM_F_OVERFLOW)) {
    // The whole tree: the one state that is certainly right.
    ChangeEvent rescan = base;
    rescan.set_op(ChangeEvent::RESCAN);
    rescan.set_path("");
    rescan.set_inode(0);
    std::vector<ChangeEvent> out{rescan};
    if (record.unresolved) return out;
    // Overflow flag on an otherwise good record: keep the record too.
    std::vector<ChangeEvent> rest;
    ShimRecord copy = record;
    copy.header.flags &= ~REPLIFS_SHIM_F_OVERFLOW;
    rest = ToChangeEvents(copy);
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
  }
  if (record.path_outside && (record.new_path_outside || record.new_path.empty() ||
                              h.syscall == REPLIFS_SYS_SETXATTR || h.syscall == REPLIFS_SYS_LSETXATTR ||
                              h.syscall == REPLIFS_SYS_REMOVEXATTR || h.syscall == REPLIFS_SYS_LREMOVEXATTR)) {
    return {};  // not in the tree at all
  }
  if (record.path_outside || record.new_path_outside) {
    // Moved or linked across the tree's edge: what is inside is new or gone.
    ChangeEvent e = base;
    e.set_op(ChangeEvent::RESCAN);
    e.set_inode(0);
    e.set_path(record.path_outside ? record.new_path : record.path);
    return {e};
  }
  auto with_op = [&](ChangeEvent::Op op) {
    ChangeEvent e = base;
    e.set_op(op);
    return e;
  };
  std::vector<ChangeEvent> out;
  const uint32_t sc = h.syscall;
  if (IsDataWrite(sc)) {
    if (h.flags & REPLIFS_SHIM_F_RANGE_KNOWN) {
      ChangeEvent e = with_op(ChangeEvent::WRITE);
      e.set_offset(h.offset);
      e.set_length(h.length);
      out.push_back(e);
    } else {
      out.push_back(with_op(ChangeEvent::RESCAN));
    }
    return out;
  }
  switch (sc) {
    case REPLIFS_SYS_COPY_FILE_RANGE: {
      ChangeEvent e = with_op(ChangeEvent::COPY_RANGE);
      e.set_offset(h.offset);
      e.set_length(h.length);
      out.push_back(e);
      break;
    }
    case REPLIFS_SYS_TRUNCATE: case REPLIFS_SYS_FTRUNCATE: {
      ChangeEvent e = with_op(ChangeEvent::TRUNCATE);
      e.set_new_size(h.new_size);
      out.push_back(e);
      break;
    }
    case REPLIFS_SYS_FALLOCATE: {
      ChangeEvent e = with_op(ChangeEvent::FALLOCATE);
      e.set_offset(h.offset);
      e.set_length(h.length);
      out.push_back(e);
      break;
    }
    case REPLIFS_SYS_RENAME: case REPLIFS_SYS_RENAMEAT: case REPLIFS_SYS_RENAMEAT2: {
      ChangeEvent e = with_op(ChangeEvent::RENAME);
      e.set_new_path(record.new_path);
      e.set_rename_flags(h.call_flags);
      e.set_inode(0);  // the names say what moved
      out.push_back(e);
      break;
    }
    case REPLIFS_SYS_UNLINK: case REPLIFS_SYS_UNLINKAT: case REPLIFS_SYS_RMDIR: {
      bool dir = sc == REPLIFS_SYS_RMDIR || (sc == REPLIFS_SYS_UNLINKAT && (h.call_flags & kAtRemoveDir));
      ChangeEvent e = with_op(dir ? ChangeEvent::RMDIR : ChangeEvent::UNLINK);
      e.set_inode(0);
      out.push_back(e);
      break;
    }
    case REPLIFS_SYS_MKDIR: case REPLIFS_SYS_MKDIRAT:
      out.push_back(with_op(ChangeEvent::MKDIR));
      break;
    case REPLIFS_SYS_LINK: case REPLIFS_SYS_LINKAT: {
      ChangeEvent e = with_op(ChangeEvent::LINK);
      e.set_new_path(record.new_path);
      out.push_back(e);
      break;
    }
    case REPLIFS_SYS_SYMLINK: case REPLIFS_SYS_SYMLINKAT: {
      ChangeEvent e = with_op(ChangeEvent::SYMLINK);
      e.set_symlink_target(record.symlink_target);
      out.push_back(e);
      break;
    }
    case REPLIFS_SYS_CHMOD: case REPLIFS_SYS_FCHMODAT: case REPLIFS_SYS_CHOWN: case REPLIFS_SYS_LCHOWN:
    case REPLIFS_SYS_FCHOWNAT: case REPLIFS_SYS_UTIMENSAT: case REPLIFS_SYS_FCHMOD: case REPLIFS_SYS_FCHOWN:
      out.push_back(with_op(ChangeEvent::SETATTR));
      break;
    case REPLIFS_SYS_SETXATTR: case REPLIFS_SYS_LSETXATTR: case REPLIFS_SYS_FSETXATTR: {
      ChangeEvent e = with_op(ChangeEvent::SETXATTR);
      e.set_xattr_name(record.new_path);
      out.push_back(e);
      break;
    }
    case REPLIFS_SYS_REMOVEXATTR: case REPLIFS_SYS_LREMOVEXATTR: case REPLIFS_SYS_FREMOVEXATTR: {
      ChangeEvent e = with_op(ChangeEvent::REMOVEXATTR);
      e.set_xattr_name(record.new_path);
      out.push_back(e);
      break;
    }
    case REPLIFS_SYS_OPEN: case REPLIFS_SYS_OPENAT: case REPLIFS_SYS_OPENAT2: case REPLIFS_SYS_CREAT: {
      uint32_t flags = sc == REPLIFS_SYS_CREAT ? (O_CREAT | O_TRUNC) : h.call_flags;
      if (flags & O_CREAT) out.push_back(with_op(ChangeEvent::CREATE));
      if (flags & O_TRUNC) {
        ChangeEvent e = with_op(ChangeEvent::TRUNCATE);
        e.set_new_size(0);
        out.push_back(e);
      }
      break;
    }
    case REPLIFS_SYS_MSYNC: case REPLIFS_SYS_MUNMAP: case REPLIFS_SYS_CLOSE:
      out.push_back(with_op(ChangeEvent::RESCAN));  // stores through a mapping: ranges unknown
      break;
    default:
      out.push_back(with_op(ChangeEvent::RESCAN));
  }
  return out;
}

const char* SyscallName(uint32_t syscall) {
  static const char* const kNames[REPLIFS_SYS_COUNT] = {
      "none", "write", "pwrite64", "writev", "pwritev", "pwritev2", "ftruncate", "fallocate",
      "copy_file_range", "sendfile", "splice", "truncate", "rename", "renameat", "renameat2",
      "unlink", "unlinkat", "mkdir", "mkdirat", "rmdir", "link", "linkat", "symlink", "symlinkat",
      "chmod", "fchmodat", "chown", "lchown", "fchownat", "utimensat", "setxattr", "lsetxattr",
      "removexattr", "lremovexattr", "fchmod", "fchown", "fsetxattr", "fremovexattr", "open",
      "openat", "openat2", "creat", "msync", "munmap", "close"};
  return syscall < REPLIFS_SYS_COUNT ? kNames[syscall] : "unknown";
}

std::string Describe(const ShimRecord& record) {
  const replifs_shim_event& h = record.header;
  std::string out = absl::StrCat(SyscallName(h.syscall), " path=", record.path.empty() ? "." : record.path);
  if (!record.new_path.empty()) absl::StrAppend(&out, " new=", record.new_path);
  if (!record.symlink_target.empty()) absl::StrAppend(&out, " target=", record.symlink_target);
  if (h.flags & REPLIFS_SHIM_F_RANGE_KNOWN) absl::StrAppend(&out, " off=", h.offset, " len=", h.length);
  if (h.flags & REPLIFS_SHIM_F_SIZE_KNOWN) absl::StrAppend(&out, " size=", h.new_size);
  if (record.unresolved) absl::StrAppend(&out, " UNRESOLVED");
  if (h.flags & REPLIFS_SHIM_F_OVERFLOW) absl::StrAppend(&out, " OVERFLOW");
  return out;
}

}  // namespace replifs::shim

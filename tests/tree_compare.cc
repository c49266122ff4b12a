#include "tests/tree_compare.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>
#include <utility>

namespace replifs::test {
namespace {

struct Entry {
  struct stat st {};
  std::string link_target;
  std::map<std::string, std::string> xattrs;
  std::string error;  // non-empty: could not be read completely
};

using Tree = std::map<std::string, Entry>;

std::string Join(const std::string& root, const std::string& rel) {
  return rel.empty() ? root : root + "/" + rel;
}

std::string Shown(const std::string& rel) { return rel.empty() ? "." : rel; }

bool Skipped(const std::string& rel, const CompareOptions& o) {
  for (const auto& s : o.skip_paths) {
    if (rel == s) return true;
    if (!s.empty() && rel.size() > s.size() && rel.compare(0, s.size(), s) == 0 &&
        rel[s.size()] == '/')
      return true;
  }
  return false;
}

std::string Errno(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

void ReadXattrs(const std::string& path, Entry& e) {
  std::vector<char> names;
  for (int attempt = 0; attempt < 5; ++attempt) {
    ssize_t n = llistxattr(path.c_str(), nullptr, 0);
    if (n < 0) {
      if (errno == ENOTSUP) return;
      e.error += Errno("llistxattr", errno) + "; ";
      return;
    }
    names.resize(static_cast<size_t>(n));
    if (n == 0) return;
    n = llistxattr(path.c_str(), names.data(), names.size());
    if (n >= 0) {
      names.resize(static_cast<size_t>(n));
      break;
    }
    if (errno != ERANGE) {
      e.error += Errno("llistxattr", errno) + "; ";
      return;
    }
  }
  for (size_t i = 0; i < names.size();) {
    std::string name(names.data() + i);
    i += name.size() + 1;
    if (name.empty()) continue;
    std::string value;
    bool ok = false;
    for (int attempt = 0; attempt < 5 && !ok; ++attempt) {
      ssize_t n = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
      if (n < 0) {
        e.error += Errno(("lgetxattr " + name).c_str(), errno) + "; ";
        break;
      }
      value.resize(static_cast<size_t>(n));
      n = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
      if (n >= 0) {
        value.resize(static_cast<size_t>(n));
        ok = true;
      } else if (errno != ERANGE) {
        e.error += Errno(("lgetxattr " + name).c_str(), errno) + "; ";
        break;
      }
    }
    if (ok) e.xattrs[name] = value;
  }
}

void Walk(const std::string& root, const std::string& rel, const CompareOptions& o, Tree& tree) {
  if (Skipped(rel, o)) return;
  const std::string path = Join(root, rel);
  Entry e;
  if (lstat(path.c_str(), &e.st) != 0) {
    e.error = Errno("lstat", errno);
    tree[rel] = std::move(e);
    return;
  }
  if (S_ISLNK(e.st.st_mode)) {
    std::string buf(static_cast<size_t>(std::max<off_t>(e.st.st_size, 255)) + 1, '\0');
    ssize_t n = readlink(path.c_str(), buf.data(), buf.size());
    if (n < 0)
      e.error = Errno("readlink", errno);
    else
      e.link_target.assign(buf.data(), static_cast<size_t>(n));
  }
  if (o.compare_xattrs) ReadXattrs(path, e);
  const bool is_dir = S_ISDIR(e.st.st_mode);
  tree[rel] = std::move(e);
  if (!is_dir) return;

  DIR* d = opendir(path.c_str());
  if (d == nullptr) {
    tree[rel].error += Errno("opendir", errno);
    return;
  }
  std::vector<std::string> names;
  while (dirent* de = readdir(d)) {
    if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
    names.emplace_back(de->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) Walk(root, rel.empty() ? n : rel + "/" + n, o, tree);
}

const char* TypeName(mode_t m) {
  switch (m & S_IFMT) {
    case S_IFREG: return "regular file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
  }
  return "unknown";
}

std::string Octal(mode_t m) {
  std::ostringstream s;
  s << "0" << std::oct << (m & 07777);
  return s.str();
}

std::string Printable(const std::string& v) {
  std::ostringstream s;
  bool text = std::all_of(v.begin(), v.end(), [](unsigned char c) { return c >= 0x20 && c < 0x7f; });
  if (text) {
    s << '"' << v << '"';
  } else {
    s << "0x";
    static const char* hex = "0123456789abcdef";
    for (unsigned char c : v) s << hex[c >> 4] << hex[c & 15];
  }
  return s.str();
}

std::string Time(const struct timespec& t) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld.%09ld", static_cast<long long>(t.tv_sec), t.tv_nsec);
  return buf;
}

// Compares the bytes of two regular files; returns "" or a description.
std::string CompareContent(const std::string& a, const std::string& b) {
  int fa = open(a.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fa < 0) return Errno("open left", errno);
  int fb = open(b.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fb < 0) {
    int err = errno;
    close(fa);
    return Errno("open right", err);
  }
  constexpr size_t kBuf = 1 << 20;
  std::vector<char> ba(kBuf), bb(kBuf);
  std::string result;
  off_t offset = 0;
  auto read_full = [](int fd, char* p, size_t n) -> ssize_t {
    size_t got = 0;
    while (got < n) {
      ssize_t r = read(fd, p + got, n - got);
      if (r < 0) {
        if (errno == EINTR) continue;
        return -1;
      }
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    return static_cast<ssize_t>(got);
  };
  for (;;) {
    ssize_t na = read_full(fa, ba.data(), kBuf);
    ssize_t nb = read_full(fb, bb.data(), kBuf);
    if (na < 0 || nb < 0) {
      result = Errno("read", errno);
      break;
    }
    size_t common = static_cast<size_t>(std::min(na, nb));
    if (std::memcmp(ba.data(), bb.data(), common) != 0) {
      size_t i = 0;
      while (ba[i] == bb[i]) ++i;
      result = "content differs first at byte " + std::to_string(offset + static_cast<off_t>(i));
      break;
    }
    if (na != nb) {
      result = "content length differs at byte " + std::to_string(offset + static_cast<off_t>(common));
      break;
    }
    if (na == 0) break;
    offset += na;
  }
  close(fa);
  close(fb);
  return result;
}

// Paths of each (dev, ino) among non-directories of a tree.
std::map<std::string, std::set<std::string>> LinkGroups(const Tree& t) {
  std::map<std::pair<dev_t, ino_t>, std::set<std::string>> by_inode;
  for (const auto& [rel, e] : t)
    if (e.error.empty() && !S_ISDIR(e.st.st_mode)) by_inode[{e.st.st_dev, e.st.st_ino}].insert(rel);
  std::map<std::string, std::set<std::string>> out;
  for (const auto& [_, paths] : by_inode)
    for (const auto& p : paths) out[p] = paths;
  return out;
}

std::string SetString(const std::set<std::string>& s) {
  std::string out = "{";
  for (const auto& p : s) out += (out.size() > 1 ? ", " : "") + p;
  return out + "}";
}

}  // namespace

std::vector<std::string> CompareTrees(const std::string& left, const std::string& right,
                                      const CompareOptions& o) {
  std::vector<std::string> diffs;
  Tree lt, rt;
  Walk(left, "", o, lt);
  Walk(right, "", o, rt);

  for (const auto& [rel, l] : lt) {
    if (!rt.count(rel)) diffs.push_back(Shown(rel) + ": only in left (" + TypeName(l.st.st_mode) + ")");
  }
  for (const auto& [rel, r] : rt) {
    if (!lt.count(rel)) diffs.push_back(Shown(rel) + ": only in right (" + TypeName(r.st.st_mode) + ")");
  }

  for (const auto& [rel, l] : lt) {
    auto it = rt.find(rel);
    if (it == rt.end()) continue;
    const Entry& r = it->second;
    const std::string name = Shown(rel);
    if (!l.error.empty()) diffs.push_back(name + ": error reading left: " + l.error);
    if (!r.error.empty()) diffs.push_back(name + ": error reading right: " + r.error);
    if ((l.st.st_mode & S_IFMT) != (r.st.st_mode & S_IFMT)) {
      diffs.push_back(name + ": type differs: left " + TypeName(l.st.st_mode) + ", right " +
                      TypeName(r.st.st_mode));
      continue;
    }
    const mode_t type = l.st.st_mode & S_IFMT;
    // Symlink permission bits are meaningless on Linux (always 0777).
    if (type != S_IFLNK && (l.st.st_mode & 07777) != (r.st.st_mode & 07777))
      diffs.push_back(name + ": mode differs: left " + Octal(l.st.st_mode) + ", right " +
                      Octal(r.st.st_mode));
    if (o.compare_owner && (l.st.st_uid != r.st.st_uid || l.st.st_gid != r.st.st_gid))
      diffs.push_back(name + ": owner differs: left " + std::to_string(l.st.st_uid) + ":" +
                      std::to_string(l.st.st_gid) + ", right " + std::to_string(r.st.st_uid) +
                      ":" + std::to_string(r.st.st_gid));
    if (type == S_IFLNK && l.link_target != r.link_target)
      diffs.push_back(name + ": symlink target differs: left \"" + l.link_target +
                      "\", right \"" + r.link_target + "\"");
    if ((type == S_IFCHR || type == S_IFBLK) && l.st.st_rdev != r.st.st_rdev)
      diffs.push_back(name + ": device number differs: left " + std::to_string(major(l.st.st_rdev)) +
                      ":" + std::to_string(minor(l.st.st_rdev)) + ", right " +
                      std::to_string(major(r.st.st_rdev)) + ":" + std::to_string(minor(r.st.st_rdev)));
    if (type == S_IFREG) {
      if (l.st.st_size != r.st.st_size)
        diffs.push_back(name + ": size differs: left " + std::to_string(l.st.st_size) +
                        ", right " + std::to_string(r.st.st_size));
      else if (l.error.empty() && r.error.empty()) {
        std::string c = CompareContent(Join(left, rel), Join(right, rel));
        if (!c.empty()) diffs.push_back(name + ": " + c);
      }
    }
    if (o.compare_mtime && !rel.empty() && (type == S_IFREG || type == S_IFLNK || type == S_IFDIR) &&
        (l.st.st_mtim.tv_sec != r.st.st_mtim.tv_sec || l.st.st_mtim.tv_nsec != r.st.st_mtim.tv_nsec))
      diffs.push_back(name + ": mtime differs: left " + Time(l.st.st_mtim) + ", right " +
                      Time(r.st.st_mtim));
    if (o.compare_xattrs) {
      for (const auto& [k, v] : l.xattrs) {
        auto x = r.xattrs.find(k);
        if (x == r.xattrs.end())
          diffs.push_back(name + ": xattr " + k + " only in left (" + Printable(v) + ")");
        else if (x->second != v)
          diffs.push_back(name + ": xattr " + k + " differs: left " + Printable(v) + ", right " +
                          Printable(x->second));
      }
      for (const auto& [k, v] : r.xattrs)
        if (!l.xattrs.count(k))
          diffs.push_back(name + ": xattr " + k + " only in right (" + Printable(v) + ")");
    }
  }

  if (o.compare_hardlinks) {
    auto lg = LinkGroups(lt);
    auto rg = LinkGroups(rt);
    std::set<std::set<std::string>> reported;
    for (const auto& [rel, lset] : lg) {
      auto it = rg.find(rel);
      if (it == rg.end()) continue;  // missing or a directory there: reported above
      if ((lset.size() > 1 || it->second.size() > 1) && lset != it->second) {
        if (reported.insert(lset).second)
          diffs.push_back(Shown(rel) + ": hard-link group differs: left " + SetString(lset) +
                          ", right " + SetString(it->second));
      }
    }
  }
  return diffs;
}

size_t CountEntries(const std::string& root, const CompareOptions& options) {
  Tree t;
  CompareOptions o = options;
  o.compare_xattrs = false;
  Walk(root, "", o, t);
  return t.empty() ? 0 : t.size() - 1;
}

}  // namespace replifs::test

// SPDX-License-Identifier: GPL-2.0
/* The eBPF implementation of the shim (contract: include/replifs_shim.h).
 *
 * Syscall tracepoints only (fentry/LSM/kprobes do not load on the target
 * kernel). Entry saves the arguments per thread, after a cheap filter (the
 * daemon's own pid; for fd calls, the file's device); exit decides on the
 * return value, walks d_parent to a protected root and sends one record
 * through the ring buffer. A full ring buffer increments `dropped` and
 * flags the next record: the daemon then rescans the tree. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "replifs_shim.h"

char LICENSE[] SEC("license") = "GPL";

#define AT_FDCWD_ARG -1 /* name resolved from the cwd (or root if absolute) */
#define RAW_ARG -2      /* string taken as is (symlink target, xattr name) */
#define NO_ARG -3
#define O_CREAT_ 0100
#define O_TRUNC_ 01000
#define VM_SHARED_ 0x8
#define VM_MAYWRITE_ 0x20
#define MINORBITS 20

struct saved_call {
  __u32 syscall;
  __u32 pad;
  __u64 args[6];
  __u64 open_flags;
};

struct scratch {
  struct replifs_shim_event h;
  char data[REPLIFS_SHIM_DATA_MAX + REPLIFS_SHIM_FIELD_MAX];
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct replifs_shim_config);
} shim_config SEC(".maps");

/* The call in progress, per thread (task storage: created once per thread,
 * then a pointer in the task, so saving needs no allocation or bucket lock
 * that could fail). `syscall` is REPLIFS_SYS_NONE when nothing is saved. */
struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct saved_call);
} calls SEC(".maps");

/* Where a call goes when its thread has no slot and none can be made (task
 * storage refuses while another task-storage operation runs on this CPU, or
 * memory is short): keyed by pid_tgid, looked at only while non-empty. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __type(key, __u64);
  __type(value, struct saved_call);
} spilled_calls SEC(".maps");

/* The roots again, for one lookup per level of the d_parent walk: (dev, ino)
 * -> root index, and dev -> index of the first root on it. Filled by the
 * loader from shim_config. */
struct root_key {
  __u32 dev_major;
  __u32 dev_minor;
  __u64 ino; /* 0 in shim_devs */
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, REPLIFS_SHIM_MAX_ROOTS);
  __type(key, struct root_key);
  __type(value, __u32);
} shim_roots SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, REPLIFS_SHIM_MAX_ROOTS);
  __type(key, struct root_key);
  __type(value, __u32);
} shim_devs SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct scratch);
} scratch_buf SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 16 << 20);
} events SEC(".maps");

/* The directory verdict cache: whether a directory lies under a protected
 * root, keyed by its device and inode, so calls on files of a protected
 * device outside the trees cost one lookup, not a d_parent walk each. A
 * file's verdict is its directory's (roots are directories), so every new
 * file in a known directory (an untar) is a hit too. A verdict is only
 * trusted while `tree_gen` is unchanged: every rename (the only way a
 * directory changes place) and every directory removal (after which its
 * inode number can name a new directory elsewhere) bumps it; the inode's
 * generation in the key covers a number reused while the removed directory
 * was still pinned (btrfs subvolumes, which repeat inode numbers under one
 * device, are not told apart: see the README). */
struct dir_key {
  __u32 dev;
  __u32 generation; /* i_generation: a reused inode number is another key */
  __u64 ino;
};
struct verdict {
  __u64 gen;
  __u64 inside;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, struct dir_key);
  __type(value, struct verdict);
} dir_verdicts SEC(".maps");

/* In front of it, the verdict per open file, keyed by the struct file and
 * its dentry (one read, where the directory's key takes six): writes to a
 * file already open cost one lookup. Same generation rule; a reused struct
 * file names another dentry, or the same file with the same verdict; the
 * inode and its generation are in the key too, as freed dentries are reused. */
struct file_key {
  __u64 file;
  __u64 dentry;
  __u64 inode;
  __u64 generation;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct file_key);
  __type(value, struct verdict);
} file_verdicts SEC(".maps");

__u64 tree_gen = 1;
__u64 unresolved = 0;   /* calls in a protected device the programs could not name: rescan */
__u64 vma_busy = 0;     /* msync/munmap whose mapping could not be looked up (lock or irq work
                         * busy): left to fanotify's FAN_CLOSE_WRITE at the last fput */
__u64 dropped = 0;      /* records the ring buffer had no room for */
__u64 sent = 0;         /* records delivered */
__u64 saved_full = 0;   /* calls not tracked: no per-thread slot could be made, spill table full */
__s64 spilled = 0;      /* calls now in spilled_calls */
__u32 overflow_pending = 0;

static __always_inline struct replifs_shim_config *shim_cfg(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&shim_config, &zero);
}

/* Index of the first protected root on this device, or -1. */
static __always_inline int root_on_dev(struct replifs_shim_config *cfg, dev_t s_dev) {
  struct root_key key = {s_dev >> MINORBITS, s_dev & ((1U << MINORBITS) - 1), 0};
  __u32 *index = bpf_map_lookup_elem(&shim_devs, &key);
  return index ? (int)*index : -1;
}

static __always_inline struct file *fd_file(int fd) {
  struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
  struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
  unsigned int max = BPF_CORE_READ(task, files, fdt, max_fds);
  if (fd < 0 || (unsigned int)fd >= max) return 0;
  struct file *f = 0;
  bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
  return f;
}

static __always_inline dev_t dentry_dev(struct dentry *d) {
  return BPF_CORE_READ(d, d_sb, s_dev);
}

_Static_assert(REPLIFS_SHIM_F_NAME1_FROM_DIRFD == REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT << 2 &&
                   REPLIFS_SHIM_F_NAME2_FROM_DIRFD == REPLIFS_SHIM_F_NAME2_FROM_FS_ROOT << 2,
               "name_field sets FROM_DIRFD by shifting FROM_FS_ROOT");

/* Base directory of a *at() name: dirfd's file, else cwd (or the process
 * root when the name is absolute). */
static __always_inline struct dentry *base_dentry(long dirfd_arg, int dirfd_index, const char *name,
                                                  __u32 *from_dirfd) {
  char first = 0;
  bpf_probe_read_user(&first, 1, name);
  struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
  if (first == '/') return BPF_CORE_READ(task, fs, root.dentry);
  if (dirfd_index == AT_FDCWD_ARG || (int)dirfd_arg == -100 /* AT_FDCWD */)
    return BPF_CORE_READ(task, fs, pwd.dentry);
  struct file *f = fd_file((int)dirfd_arg);
  if (!f) return 0;
  *from_dirfd = 1;
  return BPF_CORE_READ(f, f_path.dentry);
}

enum walk_result { WALK_ROOT = 0, WALK_FS_ROOT = 1, WALK_TOO_DEEP = 2 };

/* Appends the names from `d` up to (not including) a protected root, leaf
 * first, each NUL-terminated, at s->data[*off]. */
static __always_inline int walk(struct replifs_shim_config *cfg, struct scratch *s, __u32 *off,
                                struct dentry *d, __u32 *root_index) {
  dev_t s_dev = dentry_dev(d);
  __u32 major = s_dev >> MINORBITS, minor = s_dev & ((1U << MINORBITS) - 1);
  __u32 start = *off;
  struct root_key key = {major, minor, 0};
  for (int depth = 0; depth < REPLIFS_SHIM_MAX_DEPTH; depth++) {
    key.ino = BPF_CORE_READ(d, d_inode, i_ino);
    __u32 *index = bpf_map_lookup_elem(&shim_roots, &key);
    if (index) {
      *root_index = *index;
      return WALK_ROOT;
    }
    struct dentry *parent = BPF_CORE_READ(d, d_parent);
    if (parent == d) return WALK_FS_ROOT;
    if (*off - start + REPLIFS_SHIM_NAME_MAX > REPLIFS_SHIM_FIELD_MAX) return WALK_TOO_DEEP;
    const unsigned char *name = BPF_CORE_READ(d, d_name.name);
    long n = bpf_probe_read_kernel_str(&s->data[*off & (REPLIFS_SHIM_DATA_MAX - 1)],
                                       REPLIFS_SHIM_NAME_MAX, name);
    if (n <= 0) return WALK_TOO_DEEP;
    *off += n;
    d = parent;
  }
  return WALK_TOO_DEEP;
}

static __always_inline void user_string(struct scratch *s, __u32 *off, __u64 ptr, __u16 *len) {
  long n = bpf_probe_read_user_str(&s->data[*off & (REPLIFS_SHIM_DATA_MAX - 1)],
                                   REPLIFS_SHIM_FIELD_MAX, (const void *)ptr);
  if (n > 1) {
    *off += n - 1; /* no NUL kept */
    *len = n - 1;
  }
}

static __always_inline struct scratch *begin(__u32 syscall, long ret) {
  __u32 zero = 0;
  struct scratch *s = bpf_map_lookup_elem(&scratch_buf, &zero);
  if (!s) return 0;
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  s->h.version = REPLIFS_SHIM_VERSION;
  s->h.syscall = syscall;
  s->h.size = 0;
  s->h.flags = 0;
  s->h.tgid = pid_tgid >> 32;
  s->h.pid = (__u32)pid_tgid;
  s->h.root_index = 0;
  s->h.dev_major = 0;
  s->h.dev_minor = 0;
  s->h.ino = 0;
  s->h.ret = ret;
  s->h.offset = 0;
  s->h.length = 0;
  s->h.new_size = 0;
  s->h.call_flags = 0;
  s->h.name_len[0] = s->h.name_len[1] = s->h.name_len[2] = s->h.name_len[3] = 0;
  s->h.time_ns = bpf_ktime_get_ns();
  return s;
}

/* Waking the reader costs a self-IPI (irq_work), a trap to the hypervisor
 * in a VM: about a fifth of an event's cost (bench/shim, perf). So the
 * reader is woken at most once per WAKEUP_EVERY_NS, or when the ring holds
 * WAKEUP_AT_BYTES; it also looks at least every 20 ms on its own
 * (BpfShim::Poll), so a record waits at most that long. */
#define WAKEUP_EVERY_NS 2000000ULL
#define WAKEUP_AT_BYTES (4 << 20)
__u64 last_wakeup_ns = 0;

static __always_inline __u64 wakeup_flag(__u64 now) {
  if (now - last_wakeup_ns >= WAKEUP_EVERY_NS || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_AT_BYTES) {
    last_wakeup_ns = now;
    /* Forced: the adaptive flag wakes only a reader that has caught up to
     * this record, never one behind records sent without a wakeup. */
    return BPF_RB_FORCE_WAKEUP;
  }
  return BPF_RB_NO_WAKEUP;
}

static __always_inline void send(struct scratch *s, __u32 off) {
  if (overflow_pending) {
    s->h.flags |= REPLIFS_SHIM_F_OVERFLOW;
  }
  __u64 size = sizeof(struct replifs_shim_event) + (off & (REPLIFS_SHIM_DATA_MAX * 2 - 1));
  if (size > sizeof(struct scratch)) return;
  s->h.size = size;
  if (bpf_ringbuf_output(&events, s, size, wakeup_flag(s->h.time_ns)) != 0) {
    __sync_fetch_and_add(&dropped, 1);
    overflow_pending = 1;
  } else {
    __sync_fetch_and_add(&sent, 1);
    if (s->h.flags & REPLIFS_SHIM_F_OVERFLOW) overflow_pending = 0;
  }
}

static bool in_tree(struct dentry *d);

/* A record about the file behind `f` (fd calls, opens): nothing if it is not
 * under a protected root. */
static __always_inline struct scratch *file_record(struct replifs_shim_config *cfg, __u32 syscall,
                                                  long ret, struct file *f, __u32 *off) {
  struct scratch *s = begin(syscall, ret);
  if (!s) return 0;
  struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
  struct inode *inode = BPF_CORE_READ(f, f_inode);
  dev_t s_dev = BPF_CORE_READ(inode, i_sb, s_dev);
  __u32 root = 0;
  *off = 0;
  int r = walk(cfg, s, off, d, &root);
  if (r == WALK_FS_ROOT) return 0;
  /* Too deep to name: a file deep elsewhere on the device (a build tree)
   * would otherwise rescan the tree; the walk without names goes deeper. */
  if (r == WALK_TOO_DEEP && !in_tree(d)) return 0;
  if (r == WALK_TOO_DEEP) s->h.flags |= REPLIFS_SHIM_F_UNRESOLVED;
  s->h.root_index = root;
  s->h.name_len[0] = *off;
  s->h.dev_major = s_dev >> MINORBITS;
  s->h.dev_minor = s_dev & ((1U << MINORBITS) - 1);
  s->h.ino = BPF_CORE_READ(inode, i_ino);
  s->h.new_size = BPF_CORE_READ(inode, i_size);
  s->h.flags |= REPLIFS_SHIM_F_SIZE_KNOWN;
  return s;
}

/* One name (dir + tail) into field `field` (0 or 2). Returns false when the
 * name is certainly outside every protected tree. */
static __always_inline bool name_field(struct replifs_shim_config *cfg, struct scratch *s, __u32 *off,
                                       int field, const struct saved_call *c, int dirfd_index,
                                       int path_index) {
  if (path_index == NO_ARG) return true;
  if (dirfd_index == RAW_ARG) {
    user_string(s, off, c->args[path_index & 7], &s->h.name_len[(field + 1) & 3]);
    return true;
  }
  __u64 name = c->args[path_index & 7];
  long dirfd = dirfd_index >= 0 ? (long)c->args[dirfd_index & 7] : -100;
  __u32 from_dirfd = 0;
  struct dentry *base = base_dentry(dirfd, dirfd_index, (const char *)name, &from_dirfd);
  if (!base) return false;
  int root_index = root_on_dev(cfg, dentry_dev(base));
  if (root_index < 0) return false;
  __u32 start = *off, root = root_index;
  int r = walk(cfg, s, off, base, &root);
  if (r == WALK_TOO_DEEP && !in_tree(base)) {
    /* A starting directory too deep to name but outside every tree: like
     * any other outside start, the name is resolved where the writer sees
     * it (the dir names, cut short, are dropped). */
    *off = start;
    r = WALK_FS_ROOT;
  }
  if (r == WALK_TOO_DEEP) s->h.flags |= REPLIFS_SHIM_F_UNRESOLVED;
  if (r == WALK_FS_ROOT) {
    /* FROM_DIRFD is FROM_FS_ROOT << 2; set without a branch (the verifier's
     * state count is at its limit). */
    __u32 bit = field == 0 ? REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT : REPLIFS_SHIM_F_NAME2_FROM_FS_ROOT;
    s->h.flags |= bit | ((bit << 2) * from_dirfd);
  }
  if (field == 0 || s->h.name_len[0] + s->h.name_len[1] == 0) s->h.root_index = root;
  s->h.name_len[field & 3] = *off - start;
  user_string(s, off, name, &s->h.name_len[(field + 1) & 3]);
  return true;
}

/* ---- the predetermined calls: how to read each one's arguments ---- */

struct call_shape {
  signed char fd;      /* fd argument, or NO_ARG */
  signed char dirfd1, path1, dirfd2, path2;  /* name arguments */
};

static __always_inline struct call_shape shape_of(__u32 sc) {
  struct call_shape c = {NO_ARG, NO_ARG, NO_ARG, NO_ARG, NO_ARG};
  switch (sc) {
    case REPLIFS_SYS_WRITE: case REPLIFS_SYS_PWRITE64: case REPLIFS_SYS_WRITEV:
    case REPLIFS_SYS_PWRITEV: case REPLIFS_SYS_PWRITEV2: case REPLIFS_SYS_FTRUNCATE:
    case REPLIFS_SYS_FALLOCATE: case REPLIFS_SYS_SENDFILE: case REPLIFS_SYS_FCHMOD:
    case REPLIFS_SYS_FCHOWN: case REPLIFS_SYS_CLOSE:
      c.fd = 0; break;
    case REPLIFS_SYS_FSETXATTR: case REPLIFS_SYS_FREMOVEXATTR:
      c.fd = 0; c.dirfd2 = RAW_ARG; c.path2 = 1; break;
    case REPLIFS_SYS_COPY_FILE_RANGE: case REPLIFS_SYS_SPLICE:
      c.fd = 2; break;
    case REPLIFS_SYS_TRUNCATE: case REPLIFS_SYS_UNLINK: case REPLIFS_SYS_MKDIR: case REPLIFS_SYS_RMDIR:
    case REPLIFS_SYS_CHMOD: case REPLIFS_SYS_CHOWN: case REPLIFS_SYS_LCHOWN:
      c.dirfd1 = AT_FDCWD_ARG; c.path1 = 0; break;
    case REPLIFS_SYS_SETXATTR: case REPLIFS_SYS_LSETXATTR: case REPLIFS_SYS_REMOVEXATTR:
    case REPLIFS_SYS_LREMOVEXATTR:
      c.dirfd1 = AT_FDCWD_ARG; c.path1 = 0; c.dirfd2 = RAW_ARG; c.path2 = 1; break;
    case REPLIFS_SYS_UNLINKAT: case REPLIFS_SYS_MKDIRAT: case REPLIFS_SYS_FCHMODAT:
    case REPLIFS_SYS_FCHOWNAT: case REPLIFS_SYS_UTIMENSAT:
      c.dirfd1 = 0; c.path1 = 1; break;
    case REPLIFS_SYS_RENAME: case REPLIFS_SYS_LINK:
      c.dirfd1 = AT_FDCWD_ARG; c.path1 = 0; c.dirfd2 = AT_FDCWD_ARG; c.path2 = 1; break;
    case REPLIFS_SYS_RENAMEAT: case REPLIFS_SYS_RENAMEAT2: case REPLIFS_SYS_LINKAT:
      c.dirfd1 = 0; c.path1 = 1; c.dirfd2 = 2; c.path2 = 3; break;
    case REPLIFS_SYS_SYMLINK:
      c.dirfd1 = RAW_ARG; c.path1 = 0; c.dirfd2 = AT_FDCWD_ARG; c.path2 = 1; break;
    case REPLIFS_SYS_SYMLINKAT:
      c.dirfd1 = RAW_ARG; c.path1 = 0; c.dirfd2 = 1; c.path2 = 2; break;
  }
  return c;
}

/* Calls with one name that act on an existing object (not create/remove). */
static __always_inline bool one_name_on_object(__u32 sc) {
  switch (sc) {
    case REPLIFS_SYS_TRUNCATE: case REPLIFS_SYS_CHMOD: case REPLIFS_SYS_FCHMODAT: case REPLIFS_SYS_CHOWN:
    case REPLIFS_SYS_LCHOWN: case REPLIFS_SYS_FCHOWNAT: case REPLIFS_SYS_UTIMENSAT: case REPLIFS_SYS_SETXATTR:
    case REPLIFS_SYS_LSETXATTR: case REPLIFS_SYS_REMOVEXATTR: case REPLIFS_SYS_LREMOVEXATTR:
      return true;
  }
  return false;
}

/* N when the name is exactly "/proc/self/fd/N", else NOT_PROC_FD. */
#define NOT_PROC_FD -1
static __always_inline int proc_self_fd(__u64 name, int dirfd_index) {
  if (dirfd_index == RAW_ARG || dirfd_index == NO_ARG) return NOT_PROC_FD;
  char buf[24] = {};
  if (bpf_probe_read_user(buf, sizeof(buf), (const void *)name) != 0) {
    /* The name may end less than 24 bytes before an unmapped page. */
    if (bpf_probe_read_user_str(buf, sizeof(buf), (const void *)name) <= 0) return NOT_PROC_FD;
  }
  const char prefix[] = "/proc/self/fd/";
  for (int i = 0; i < (int)sizeof(prefix) - 1; i++)
    if (buf[i] != prefix[i]) return NOT_PROC_FD;
  int fd = 0, digits = 0;
  for (int i = sizeof(prefix) - 1; i < (int)sizeof(buf); i++) {
    char ch = buf[i];
    if (ch == 0) break;
    if (ch < '0' || ch > '9' || digits == 8) return NOT_PROC_FD;
    fd = fd * 10 + (ch - '0');
    digits++;
    if (i == sizeof(buf) - 1) return NOT_PROC_FD; /* no NUL in reach */
  }
  if (digits == 0) return NOT_PROC_FD;
  return fd;
}

/* Whether a one-name call on its object follows a final symlink (then
 * "/proc/self/fd/N" means fd N's file; else the procfs link itself). */
static __always_inline bool follows_last_link(__u32 sc, const struct saved_call *c) {
  switch (sc) {
    case REPLIFS_SYS_TRUNCATE: case REPLIFS_SYS_CHMOD: case REPLIFS_SYS_FCHMODAT: case REPLIFS_SYS_CHOWN:
    case REPLIFS_SYS_SETXATTR: case REPLIFS_SYS_REMOVEXATTR:
      return true;
    case REPLIFS_SYS_FCHOWNAT: return !(c->args[4] & 0x100 /* AT_SYMLINK_NOFOLLOW */);
    case REPLIFS_SYS_UTIMENSAT: return !(c->args[3] & 0x100);
  }
  return false;
}

static __always_inline bool is_open(__u32 sc) {
  return sc == REPLIFS_SYS_OPEN || sc == REPLIFS_SYS_OPENAT || sc == REPLIFS_SYS_OPENAT2 ||
         sc == REPLIFS_SYS_CREAT;
}

/* Whether d lies under a protected root (no names: the cheap test at entry,
 * so calls on other files of a protected device cost one walk, not a saved
 * call too). It goes deeper than the naming walk (REPLIFS_SHIM_MAX_DEPTH);
 * deeper still counts as inside: exit then flags it unresolved. */
#define IN_TREE_MAX_DEPTH 128
/* Global, so the verifier checks its loop once, not at every call site. */
__noinline int in_tree_walk(__u64 dentry) {
  struct dentry *d = (struct dentry *)dentry;
  dev_t s_dev = dentry_dev(d);
  struct root_key key = {s_dev >> MINORBITS, s_dev & ((1U << MINORBITS) - 1), 0};
  for (int depth = 0; depth < IN_TREE_MAX_DEPTH; depth++) {
    key.ino = BPF_CORE_READ(d, d_inode, i_ino);
    if (bpf_map_lookup_elem(&shim_roots, &key)) return true;
    struct dentry *parent = BPF_CORE_READ(d, d_parent);
    if (parent == d) return false;
    d = parent;
  }
  return true;
}

static bool in_tree(struct dentry *d) { return in_tree_walk((__u64)d); }

/* Whether directory dir lies under a protected root, through the cache. */
static __always_inline bool dir_in_tree(struct dentry *dir) {
  struct dir_key key = {dentry_dev(dir), BPF_CORE_READ(dir, d_inode, i_generation),
                        BPF_CORE_READ(dir, d_inode, i_ino)};
  /* Read before the walk: a rename finishing during it makes this verdict stale at once. */
  __u64 gen = tree_gen;
  struct verdict *v = bpf_map_lookup_elem(&dir_verdicts, &key);
  if (v && v->gen == gen) return v->inside;
  struct verdict fresh = {gen, in_tree(dir)};
  bpf_map_update_elem(&dir_verdicts, &key, &fresh, BPF_ANY);
  return fresh.inside;
}

/* Whether the object behind dentry d lies under a protected root: a
 * directory's own verdict, anything else its parent directory's. */
static __always_inline bool dentry_in_tree(struct dentry *d) {
  umode_t mode = BPF_CORE_READ(d, d_inode, i_mode);
  if ((mode & 0170000) == 0040000) return dir_in_tree(d);
  return dir_in_tree(BPF_CORE_READ(d, d_parent));
}

/* Whether file f lies under a protected root. */
static __always_inline bool file_in_tree(struct file *f) {
  struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
  struct inode *inode = BPF_CORE_READ(f, f_inode);
  struct file_key key = {(__u64)f, (__u64)d, (__u64)inode, BPF_CORE_READ(inode, i_generation)};
  __u64 gen = tree_gen;
  struct verdict *v = bpf_map_lookup_elem(&file_verdicts, &key);
  if (v && v->gen == gen) return v->inside;
  struct verdict fresh = {gen, dentry_in_tree(d)};
  bpf_map_update_elem(&file_verdicts, &key, &fresh, BPF_ANY);
  return fresh.inside;
}

static __always_inline bool fd_on_protected_dev(struct replifs_shim_config *cfg, long fd) {
  struct file *f = fd_file((int)fd);
  if (!f) return false;
  if (root_on_dev(cfg, BPF_CORE_READ(f, f_inode, i_sb, s_dev)) < 0) return false;
  return file_in_tree(f);
}

/* msync/munmap: the file behind the shared writable mapping at addr. */
struct vma_found {
  struct file *file;
};

static long vma_file(struct task_struct *task, struct vm_area_struct *vma, void *data) {
  struct vma_found *found = data;
  unsigned long flags = BPF_CORE_READ(vma, vm_flags);
  if ((flags & (VM_SHARED_ | VM_MAYWRITE_)) == (VM_SHARED_ | VM_MAYWRITE_)) found->file = BPF_CORE_READ(vma, vm_file);
  return 0;
}

static __always_inline void emit_file_now(struct replifs_shim_config *cfg, __u32 sc, struct file *f) {
  __u32 off = 0;
  struct scratch *s = file_record(cfg, sc, 0, f, &off);
  if (s) send(s, off);
}

/* c: the call's number in the set and its six arguments, filled by the hook. */
static __always_inline int on_enter(struct saved_call c) {
  __u32 sc = c.syscall;
  struct replifs_shim_config *cfg = shim_cfg();
  if (!cfg || cfg->nroots == 0) return 0;
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if ((pid_tgid >> 32) == cfg->daemon_tgid) return 0;
  struct call_shape shape = shape_of(sc);
  if (sc == REPLIFS_SYS_UTIMENSAT && c.args[1] == 0) {
    if (!fd_on_protected_dev(cfg, c.args[0])) return 0;  /* futimens(fd) */
  } else if (sc == REPLIFS_SYS_CLOSE) {
    /* Stores through a writable shared mapping are flushed no later than
     * the last close/munmap: name the file at entry, while the fd is valid. */
    struct file *f = fd_file((int)c.args[0]);
    if (!f || root_on_dev(cfg, BPF_CORE_READ(f, f_inode, i_sb, s_dev)) < 0) return 0;
    if (BPF_CORE_READ(f, f_mapping, i_mmap_writable.counter) <= 0) return 0;
    emit_file_now(cfg, sc, f);
    return 0;
  } else if (sc == REPLIFS_SYS_MSYNC || sc == REPLIFS_SYS_MUNMAP) {
    /* Stores through the mapping at addr reach the file: name it now, while
     * the mapping exists (munmap removes it). */
    struct vma_found found = {0};
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    long err = bpf_find_vma(task, c.args[0], vma_file, &found, 0);
    if (err == -16 /* EBUSY: mmap lock or this CPU's irq work busy */) {
      __sync_fetch_and_add(&vma_busy, 1);
      return 0;
    }
    struct file *mapped = found.file;  /* a plain local: CO-RE reads start from kernel types */
    if (!mapped || root_on_dev(cfg, BPF_CORE_READ(mapped, f_inode, i_sb, s_dev)) < 0) return 0;
    if (!file_in_tree(mapped)) return 0;
    emit_file_now(cfg, sc, mapped);
    return 0;
  } else if (shape.fd != NO_ARG) {
    if (!fd_on_protected_dev(cfg, c.args[shape.fd & 7])) return 0;
  } else if (is_open(sc)) {
    if (sc == REPLIFS_SYS_OPEN) c.open_flags = c.args[1];
    else if (sc == REPLIFS_SYS_OPENAT) c.open_flags = c.args[2];
    else if (sc == REPLIFS_SYS_CREAT) c.open_flags = O_CREAT_ | O_TRUNC_;
    else bpf_probe_read_user(&c.open_flags, sizeof(c.open_flags), (void *)c.args[2]);
    if (!(c.open_flags & (O_CREAT_ | O_TRUNC_))) return 0;
  }
  struct saved_call *slot =
      bpf_task_storage_get(&calls, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (slot) {
    *slot = c;
    return 0;
  }
  if (bpf_map_update_elem(&spilled_calls, &pid_tgid, &c, BPF_ANY) == 0) {
    __sync_fetch_and_add(&spilled, 1);
    return 0;
  }
  __sync_fetch_and_add(&saved_full, 1);
  __sync_fetch_and_add(&unresolved, 1);  /* a call we will not name: rescan */
  return 0;
}

/* exiting: the call now ending; a slot left by another call (whose exit was
 * missed) is dropped, not paired with this one. */
static __always_inline int on_exit(__u32 exiting, long ret) {
  struct saved_call *saved = bpf_task_storage_get(&calls, bpf_get_current_task_btf(), 0, 0);
  struct saved_call c;
  if (saved && saved->syscall != REPLIFS_SYS_NONE) {
    c = *saved;
    saved->syscall = REPLIFS_SYS_NONE;
  } else if (spilled > 0) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    saved = bpf_map_lookup_elem(&spilled_calls, &pid_tgid);
    if (!saved) return 0;
    c = *saved;
    if (bpf_map_delete_elem(&spilled_calls, &pid_tgid) == 0) __sync_fetch_and_sub(&spilled, 1);
  } else {
    return 0;
  }
  if (c.syscall != exiting) return 0;
  if (ret < 0) return 0;
  struct replifs_shim_config *cfg = shim_cfg();
  if (!cfg) return 0;
  __u32 sc = c.syscall;
  __u32 off = 0;
  struct scratch *s;

  if (is_open(sc)) {
    struct file *f = fd_file((int)ret);
    if (!f) return 0;
    /* Outside every tree (the common case): decided by the cache, no name walk. */
    if (root_on_dev(cfg, BPF_CORE_READ(f, f_inode, i_sb, s_dev)) < 0 || !file_in_tree(f)) return 0;
    s = file_record(cfg, sc, ret, f, &off);
    if (!s) return 0;
    s->h.call_flags = c.open_flags;
    send(s, off);
    return 0;
  }
  struct call_shape shape = shape_of(sc);
  if (sc == REPLIFS_SYS_UTIMENSAT && c.args[1] == 0) shape.fd = 0, shape.dirfd1 = shape.path1 = NO_ARG;
  if (shape.fd != NO_ARG) {
    struct file *f = fd_file((int)c.args[shape.fd & 7]);
    if (!f) return 0;
    s = file_record(cfg, sc, ret, f, &off);
    if (!s) return 0;
    __s64 pos = BPF_CORE_READ(f, f_pos);
    switch (sc) {
      case REPLIFS_SYS_WRITE: case REPLIFS_SYS_WRITEV: case REPLIFS_SYS_SENDFILE:
        s->h.offset = pos - ret; s->h.length = ret; s->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
      case REPLIFS_SYS_PWRITE64: case REPLIFS_SYS_PWRITEV:
        s->h.offset = c.args[3]; s->h.length = ret; s->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
      case REPLIFS_SYS_PWRITEV2:
        s->h.offset = (__s64)c.args[3] == -1 ? pos - ret : c.args[3];
        s->h.length = ret; s->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
      case REPLIFS_SYS_COPY_FILE_RANGE: case REPLIFS_SYS_SPLICE: {
        __s64 out_pos = pos;
        if (c.args[3]) bpf_probe_read_user(&out_pos, sizeof(out_pos), (void *)c.args[3]);
        s->h.offset = out_pos - ret; s->h.length = ret; s->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
      }
      case REPLIFS_SYS_FTRUNCATE:
        s->h.new_size = c.args[1]; break;
      case REPLIFS_SYS_FALLOCATE:
        s->h.call_flags = c.args[1]; s->h.offset = c.args[2]; s->h.length = c.args[3];
        s->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
    }
    if (sc == REPLIFS_SYS_SPLICE || sc == REPLIFS_SYS_SENDFILE) {
      /* Only writes into a regular file change a tree. */
      umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
      if ((mode & 0170000) != 0100000) return 0;
    }
    if (ret == 0 && s->h.length == 0 && (sc <= REPLIFS_SYS_SPLICE && sc != REPLIFS_SYS_FTRUNCATE &&
                                         sc != REPLIFS_SYS_FALLOCATE))
      return 0; /* nothing written */
    s->h.name_len[1] = 0;
    if (shape.path2 != NO_ARG) name_field(cfg, s, &off, 2, &c, shape.dirfd2, shape.path2);
    send(s, off);
    return 0;
  }
  /* By name. "/proc/self/fd/N" (glibc's fchmodat(AT_SYMLINK_NOFOLLOW),
   * "chmod /proc/self/fd/N"): the kernel's magic link names fd N's file,
   * which the daemon could not find from the name (its own /proc/self). */
  int via_fd = one_name_on_object(sc) ? proc_self_fd(c.args[shape.path1 & 7], shape.dirfd1) : NOT_PROC_FD;
  if (via_fd >= 0 && !follows_last_link(sc, &c)) return 0; /* the procfs link itself */
  if (via_fd >= 0) {
    struct file *f = fd_file(via_fd);
    if (!f || root_on_dev(cfg, BPF_CORE_READ(f, f_inode, i_sb, s_dev)) < 0 || !file_in_tree(f)) return 0;
    s = file_record(cfg, sc, ret, f, &off);
    if (!s) return 0;
    s->h.name_len[1] = 0;
    if (shape.path2 != NO_ARG) name_field(cfg, s, &off, 2, &c, shape.dirfd2, shape.path2);  /* xattr name */
    if (sc == REPLIFS_SYS_TRUNCATE) s->h.new_size = c.args[1];
    send(s, off);
    return 0;
  }
  s = begin(sc, ret);
  if (!s) return 0;
  bool in1 = name_field(cfg, s, &off, 0, &c, shape.dirfd1, shape.path1);
  bool in2 = name_field(cfg, s, &off, 2, &c, shape.dirfd2, shape.path2);
  /* Symlink's name1 is only the target; rename/link matter if either side is protected. */
  if (shape.dirfd1 == RAW_ARG) in1 = false;
  if (shape.dirfd2 == RAW_ARG) in2 = false;
  if (!in1 && !in2) return 0;
  if (sc == REPLIFS_SYS_TRUNCATE) { s->h.new_size = c.args[1]; s->h.flags |= REPLIFS_SHIM_F_SIZE_KNOWN; }
  if (sc == REPLIFS_SYS_UNLINKAT) s->h.call_flags = c.args[2];
  if (sc == REPLIFS_SYS_RENAMEAT2) s->h.call_flags = c.args[4];
  send(s, off);
  return 0;
}

/* x86-64 syscall numbers of the predetermined set (the tracepoint's id). */
static __always_inline __u32 shim_syscall(long nr) {
  switch (nr) {
    case 1: return REPLIFS_SYS_WRITE;
    case 18: return REPLIFS_SYS_PWRITE64;
    case 20: return REPLIFS_SYS_WRITEV;
    case 296: return REPLIFS_SYS_PWRITEV;
    case 328: return REPLIFS_SYS_PWRITEV2;
    case 77: return REPLIFS_SYS_FTRUNCATE;
    case 285: return REPLIFS_SYS_FALLOCATE;
    case 326: return REPLIFS_SYS_COPY_FILE_RANGE;
    case 40: return REPLIFS_SYS_SENDFILE;
    case 275: return REPLIFS_SYS_SPLICE;
    case 76: return REPLIFS_SYS_TRUNCATE;
    case 82: return REPLIFS_SYS_RENAME;
    case 264: return REPLIFS_SYS_RENAMEAT;
    case 316: return REPLIFS_SYS_RENAMEAT2;
    case 87: return REPLIFS_SYS_UNLINK;
    case 263: return REPLIFS_SYS_UNLINKAT;
    case 83: return REPLIFS_SYS_MKDIR;
    case 258: return REPLIFS_SYS_MKDIRAT;
    case 84: return REPLIFS_SYS_RMDIR;
    case 86: return REPLIFS_SYS_LINK;
    case 265: return REPLIFS_SYS_LINKAT;
    case 88: return REPLIFS_SYS_SYMLINK;
    case 266: return REPLIFS_SYS_SYMLINKAT;
    case 90: return REPLIFS_SYS_CHMOD;
    case 268: return REPLIFS_SYS_FCHMODAT;
    case 92: return REPLIFS_SYS_CHOWN;
    case 94: return REPLIFS_SYS_LCHOWN;
    case 260: return REPLIFS_SYS_FCHOWNAT;
    case 280: return REPLIFS_SYS_UTIMENSAT;
    case 188: return REPLIFS_SYS_SETXATTR;
    case 189: return REPLIFS_SYS_LSETXATTR;
    case 197: return REPLIFS_SYS_REMOVEXATTR;
    case 198: return REPLIFS_SYS_LREMOVEXATTR;
    case 91: return REPLIFS_SYS_FCHMOD;
    case 93: return REPLIFS_SYS_FCHOWN;
    case 190: return REPLIFS_SYS_FSETXATTR;
    case 199: return REPLIFS_SYS_FREMOVEXATTR;
    case 2: return REPLIFS_SYS_OPEN;
    case 257: return REPLIFS_SYS_OPENAT;
    case 437: return REPLIFS_SYS_OPENAT2;
    case 85: return REPLIFS_SYS_CREAT;
    case 3: return REPLIFS_SYS_CLOSE;
    case 26: return REPLIFS_SYS_MSYNC;
    case 11: return REPLIFS_SYS_MUNMAP;
  }
  return REPLIFS_SYS_NONE;
}

/* Calls after which cached verdicts are stale: a rename may move a
 * directory in or out of a tree; a removed directory's inode number may
 * name a new directory elsewhere. unlinkat_flags: its third argument where
 * the hook has it (raw), else -1 (any unlinkat counts). */
#define AT_REMOVEDIR_ 0x200
static __always_inline bool moves_or_removes_dir(long nr, long unlinkat_flags) {
  return nr == 82 || nr == 264 || nr == 316 || nr == 84 /* rmdir */ ||
         (nr == 263 && (unlinkat_flags & AT_REMOVEDIR_));
}

/* Two ways to hook the same calls (the loader attaches one set):
 * - "raw" (default): tp_btf on the raw sys_enter/sys_exit tracepoints. They
 *   fire for every syscall, so the id is switched on first; no perf record
 *   is built, which makes them cheaper than
 * - "tracepoints": one program each for entry and exit attached to every
 *   syscalls/sys_enter_X / sys_exit_X of the set (bpf_shim.cc lists them). */
SEC("tracepoint")
int shim_enter(struct trace_event_raw_sys_enter *ctx) {
  struct saved_call c = {};
  c.syscall = shim_syscall(BPF_CORE_READ(ctx, id));
  if (c.syscall == REPLIFS_SYS_NONE) return 0;
#pragma unroll
  for (int i = 0; i < 6; i++) c.args[i] = BPF_CORE_READ(ctx, args[i]);
  return on_enter(c);
}

SEC("tracepoint")
int shim_exit(struct trace_event_raw_sys_exit *ctx) {
  long nr = BPF_CORE_READ(ctx, id);
  if (moves_or_removes_dir(nr, -1)) __sync_fetch_and_add(&tree_gen, 1);
  return on_exit(shim_syscall(nr), BPF_CORE_READ(ctx, ret));
}

#define TS_COMPAT_ 0x0002
/* A 32-bit (compat) call: its number means another syscall in the 64-bit
 * table. The per-syscall tracepoints skip these too; fanotify backstops. */
static __always_inline bool compat_call(void) {
  struct task_struct *task = bpf_get_current_task_btf();
  return task->thread_info.status & TS_COMPAT_;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(shim_raw_enter, struct pt_regs *regs, long id) {
  struct saved_call c = {};
  c.syscall = shim_syscall(id);
  if (c.syscall == REPLIFS_SYS_NONE || compat_call()) return 0;
  /* The x86-64 syscall argument registers. */
  c.args[0] = regs->di;
  c.args[1] = regs->si;
  c.args[2] = regs->dx;
  c.args[3] = regs->r10;
  c.args[4] = regs->r8;
  c.args[5] = regs->r9;
  return on_enter(c);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(shim_raw_exit, struct pt_regs *regs, long ret) {
  long nr = regs->orig_ax;
  __u32 sc = shim_syscall(nr);
  /* Decided at entry, or not ours: no lookup in the per-thread table. */
  if (sc == REPLIFS_SYS_NONE || sc == REPLIFS_SYS_CLOSE || sc == REPLIFS_SYS_MSYNC || sc == REPLIFS_SYS_MUNMAP)
    return 0;
  if (compat_call()) return 0;
  if (moves_or_removes_dir(nr, regs->dx)) __sync_fetch_and_add(&tree_gen, 1);
  return on_exit(sc, ret);
}

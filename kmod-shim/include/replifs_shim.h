/* The kernel shim's contract: shared by the eBPF programs, the loadable
 * module and the daemon's shim reader (C and C++). Changing a layout here
 * changes all three; the reader checks `version`.
 *
 * The shim pre-sets a predetermined set of file-modifying system calls
 * (enum replifs_shim_syscall). For each call it decides at syscall exit
 * (arguments are saved per thread at entry, since exit only knows the return
 * value) whether the call succeeded and touched a protected tree, and if so
 * sends one record (struct replifs_shim_event) to the daemon.
 *
 * Protected trees are named by the device (major, minor as userspace sees
 * them in st_dev) and inode of their root directory. The daemon's own
 * process (tgid) is excluded: its I/O to the backing tree is the overlay's,
 * already journaled.
 */
#ifndef REPLIFS_SHIM_H
#define REPLIFS_SHIM_H

#if defined(__VMLINUX_H__) || defined(__KERNEL__)
/* BPF (vmlinux.h) and kernel builds already have __u32 and friends. */
#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/ioctl.h>
#endif
#else
#include <linux/types.h>
#include <linux/ioctl.h>
#endif

#define REPLIFS_SHIM_VERSION 1

/* Limits: a path deeper than MAX_DEPTH below its root, or a record whose
 * names exceed their fields, is sent with REPLIFS_SHIM_F_UNRESOLVED and the
 * reader asks for a rescan of the whole tree instead. */
#define REPLIFS_SHIM_MAX_ROOTS 8
#define REPLIFS_SHIM_MAX_DEPTH 24
#define REPLIFS_SHIM_NAME_MAX 256
#define REPLIFS_SHIM_FIELD_MAX 4096 /* each of the four name fields */
#define REPLIFS_SHIM_DATA_MAX (4 * REPLIFS_SHIM_FIELD_MAX)

/* The predetermined system calls. */
enum replifs_shim_syscall {
  REPLIFS_SYS_NONE = 0,
  /* data, by fd: offset/length where known */
  REPLIFS_SYS_WRITE,
  REPLIFS_SYS_PWRITE64,
  REPLIFS_SYS_WRITEV,
  REPLIFS_SYS_PWRITEV,
  REPLIFS_SYS_PWRITEV2,
  REPLIFS_SYS_FTRUNCATE,
  REPLIFS_SYS_FALLOCATE,
  REPLIFS_SYS_COPY_FILE_RANGE, /* destination fd */
  REPLIFS_SYS_SENDFILE,        /* out fd, when it is a file */
  REPLIFS_SYS_SPLICE,          /* fd_out, when it is a file */
  /* by name */
  REPLIFS_SYS_TRUNCATE,
  REPLIFS_SYS_RENAME,
  REPLIFS_SYS_RENAMEAT,
  REPLIFS_SYS_RENAMEAT2,
  REPLIFS_SYS_UNLINK,
  REPLIFS_SYS_UNLINKAT,
  REPLIFS_SYS_MKDIR,
  REPLIFS_SYS_MKDIRAT,
  REPLIFS_SYS_RMDIR,
  REPLIFS_SYS_LINK,
  REPLIFS_SYS_LINKAT,
  REPLIFS_SYS_SYMLINK,
  REPLIFS_SYS_SYMLINKAT,
  REPLIFS_SYS_CHMOD,
  REPLIFS_SYS_FCHMODAT,
  REPLIFS_SYS_CHOWN,
  REPLIFS_SYS_LCHOWN,
  REPLIFS_SYS_FCHOWNAT,
  REPLIFS_SYS_UTIMENSAT,
  REPLIFS_SYS_SETXATTR,
  REPLIFS_SYS_LSETXATTR,
  REPLIFS_SYS_REMOVEXATTR,
  REPLIFS_SYS_LREMOVEXATTR,
  /* attributes, by fd */
  REPLIFS_SYS_FCHMOD,
  REPLIFS_SYS_FCHOWN,
  REPLIFS_SYS_FSETXATTR,
  REPLIFS_SYS_FREMOVEXATTR,
  /* opens that create or truncate (resolved from the returned fd) */
  REPLIFS_SYS_OPEN,
  REPLIFS_SYS_OPENAT,
  REPLIFS_SYS_OPENAT2,
  REPLIFS_SYS_CREAT,
  /* a writable shared mapping being flushed or dropped */
  REPLIFS_SYS_MSYNC,
  REPLIFS_SYS_MUNMAP,
  REPLIFS_SYS_CLOSE,
  REPLIFS_SYS_COUNT
};

/* Record flags. */
#define REPLIFS_SHIM_F_UNRESOLVED 0x1  /* names incomplete: rescan the tree */
#define REPLIFS_SHIM_F_OVERFLOW 0x2    /* records were lost before this one: rescan the tree */
#define REPLIFS_SHIM_F_RANGE_KNOWN 0x4 /* offset/length are exact */
#define REPLIFS_SHIM_F_SIZE_KNOWN 0x8  /* new_size is exact */
/* A relative (or absolute) name whose starting directory lies outside every
 * protected root but on a protected device: that name's dir then runs up to
 * the filesystem's root, and the reader matches it against the protected
 * root's path inside that filesystem. */
#define REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT 0x10
#define REPLIFS_SHIM_F_NAME2_FROM_FS_ROOT 0x20
/* With FROM_FS_ROOT: the name started at a directory descriptor, not at the
 * cwd or root, so the writer's cwd says nothing about it; the reader matches
 * dir + tail against the root's path (dir empty: too deep to name, outside). */
#define REPLIFS_SHIM_F_NAME1_FROM_DIRFD 0x40
#define REPLIFS_SHIM_F_NAME2_FROM_DIRFD 0x80

/* One event. Variable-length: `size` bytes in all, the four name fields
 * packed right after the header in order name1_dir, name1_tail, name2_dir, name2_tail.
 *
 * A name is `dir` + `tail`:
 *  - dir: the components from the object (or the directory a relative name
 *    was resolved from) up to, not including, the protected root, LEAF FIRST,
 *    each terminated by a NUL (this is the order a d_parent walk yields);
 *  - tail: the name the process passed, relative to dir ('/'-separated, no
 *    NUL), or empty when dir names the object itself.
 * name2 is the new name of rename/link/symlink (symlink: name1 is the target
 * string in tail, unresolved). */
struct replifs_shim_event {
  __u16 version;
  __u16 syscall; /* enum replifs_shim_syscall */
  __u32 size;    /* header + data bytes */
  __u32 flags;   /* REPLIFS_SHIM_F_* */
  __u32 tgid;
  __u32 pid;
  __u32 root_index; /* index of the protected root the names are relative to */
  __u32 dev_major;  /* object's device, userspace numbering */
  __u32 dev_minor;
  __u64 ino;        /* object's inode (0 when unknown, e.g. after unlink) */
  __s64 ret;        /* the syscall's return value */
  __u64 offset;     /* data writes: first byte written */
  __u64 length;     /* data writes: bytes written */
  __u64 new_size;   /* truncate, ftruncate, fallocate, writes: i_size after the call */
  __u32 call_flags; /* rename flags, open flags, fallocate mode */
  __u16 name_len[4];
  __u64 time_ns;    /* CLOCK_MONOTONIC (bpf_ktime_get_ns / ktime_get_ns) */
  /* the name fields follow */
};

/* A protected root as the daemon registers it. */
struct replifs_shim_root {
  __u32 dev_major;
  __u32 dev_minor;
  __u64 ino;
};

/* Shared configuration: eBPF keeps it in a one-element array map
 * (`shim_config`), the module takes it by ioctl. */
struct replifs_shim_config {
  __u32 daemon_tgid; /* its I/O is not reported */
  __u32 nroots;
  struct replifs_shim_root roots[REPLIFS_SHIM_MAX_ROOTS];
};

/* Loadable module: /dev/replifs_shim. read() returns whole records (one or
 * more per call, never split); a record that does not fit the queue is
 * counted and the next record carries REPLIFS_SHIM_F_OVERFLOW. */
#define REPLIFS_SHIM_DEVICE "/dev/replifs_shim"
#define REPLIFS_SHIM_IOC_MAGIC 'r'
#define REPLIFS_SHIM_IOC_SET_CONFIG _IOW(REPLIFS_SHIM_IOC_MAGIC, 1, struct replifs_shim_config)
#define REPLIFS_SHIM_IOC_CLEAR _IO(REPLIFS_SHIM_IOC_MAGIC, 2) /* protection off */

/* The module's counters (ioctl STATS), as the eBPF programs keep them. */
struct replifs_shim_stats {
  __u64 sent;    /* records queued */
  __u64 dropped; /* records the queue had no room for */
};
#define REPLIFS_SHIM_IOC_STATS _IOR(REPLIFS_SHIM_IOC_MAGIC, 3, struct replifs_shim_stats)

#endif /* REPLIFS_SHIM_H */

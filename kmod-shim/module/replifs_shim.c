// SPDX-License-Identifier: GPL-2.0
/* The loadable-module implementation of the shim (contract:
 * ../include/replifs_shim.h), for kernels that allow modules.
 *
 * Hooks: one ftrace_ops per syscall entry function (__x64_sys_*), selected
 * by name with ftrace_set_filter and registered with
 * register_ftrace_function -- exported interfaces only, the supported
 * equivalent of replacing sys_call_table entries. The callback points the
 * saved instruction pointer at our wrapper, which calls the original entry
 * function (recursion is recognised by the caller being this module), then
 * decides on the return value. Protection off (ioctl CLEAR, or rmmod)
 * unregisters every ops: the original entries run untouched again.
 *
 * Channel: /dev/replifs_shim (misc device). read() returns whole records;
 * ioctl SET_CONFIG names the roots and the daemon's pid. */
#include <linux/dcache.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/fs_struct.h>
#include <linux/ftrace.h>
#include <linux/kdev_t.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmap_lock.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>

#include "replifs_shim.h"

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("replifs kernel shim: reports file-modifying syscalls in protected trees");

#define QUEUE_BYTES (1 << 20)
#define REC_MAX (sizeof(struct replifs_shim_event) + REPLIFS_SHIM_DATA_MAX)

/* ---- the record queue (byte ring of whole records) ---- */
static char *queue;
static size_t q_head, q_tail; /* bytes: head written, tail read; q_head - q_tail <= QUEUE_BYTES */
static DEFINE_SPINLOCK(q_lock);
static DECLARE_WAIT_QUEUE_HEAD(q_wait);
static u64 q_dropped, q_sent;
static bool q_overflow_pending;

static struct replifs_shim_config cfg;
static DEFINE_SPINLOCK(cfg_lock);
static bool active; /* hooks registered */
static DEFINE_MUTEX(hook_mutex);

static void enqueue(struct replifs_shim_event *ev) {
  unsigned long flags;
  size_t i;
  spin_lock_irqsave(&q_lock, flags);
  if (q_overflow_pending) ev->flags |= REPLIFS_SHIM_F_OVERFLOW;
  if (QUEUE_BYTES - (q_head - q_tail) < ev->size) {
    q_dropped++;
    q_overflow_pending = true;
    spin_unlock_irqrestore(&q_lock, flags);
    return;
  }
  q_overflow_pending = false;
  q_sent++;
  for (i = 0; i < ev->size; i++) queue[(q_head + i) % QUEUE_BYTES] = ((char *)ev)[i];
  q_head += ev->size;
  spin_unlock_irqrestore(&q_lock, flags);
  wake_up_interruptible(&q_wait);
}

/* ---- deciding ---- */
struct rec {
  struct replifs_shim_event h;
  char data[REPLIFS_SHIM_DATA_MAX + REPLIFS_SHIM_NAME_MAX];
};

static int root_on_dev(dev_t s_dev) {
  int i;
  for (i = 0; i < cfg.nroots && i < REPLIFS_SHIM_MAX_ROOTS; i++)
    if (cfg.roots[i].dev_major == MAJOR(s_dev) && cfg.roots[i].dev_minor == MINOR(s_dev)) return i;
  return -1;
}

static int root_at(struct dentry *d) {
  int i;
  dev_t s_dev = d->d_sb->s_dev;
  if (!d->d_inode) return -1;
  for (i = 0; i < cfg.nroots && i < REPLIFS_SHIM_MAX_ROOTS; i++)
    if (cfg.roots[i].ino == d->d_inode->i_ino && cfg.roots[i].dev_major == MAJOR(s_dev) &&
        cfg.roots[i].dev_minor == MINOR(s_dev))
      return i;
  return -1;
}

enum { WALK_ROOT, WALK_FS_ROOT, WALK_TOO_DEEP };

/* Names from d up to a protected root, leaf first, NUL-terminated. */
static int walk(struct rec *r, u32 *off, struct dentry *d, u32 *root_index) {
  int depth, ret = WALK_TOO_DEEP;
  u32 start = *off;
  rcu_read_lock();
  for (depth = 0; depth < REPLIFS_SHIM_MAX_DEPTH; depth++) {
    int idx = root_at(d);
    struct dentry *parent;
    size_t n;
    if (idx >= 0) {
      *root_index = idx;
      ret = WALK_ROOT;
      break;
    }
    parent = READ_ONCE(d->d_parent);
    if (parent == d) {
      ret = WALK_FS_ROOT;
      break;
    }
    n = min_t(size_t, READ_ONCE(d->d_name.len), REPLIFS_SHIM_NAME_MAX - 1);
    if (*off - start + n + 1 > REPLIFS_SHIM_FIELD_MAX) break;
    memcpy(&r->data[*off], d->d_name.name, n);
    r->data[*off + n] = 0;
    *off += n + 1;
    d = parent;
  }
  rcu_read_unlock();
  return ret;
}

static void begin(struct rec *r, u32 sc, long ret) {
  memset(&r->h, 0, sizeof(r->h));
  r->h.version = REPLIFS_SHIM_VERSION;
  r->h.syscall = sc;
  r->h.tgid = current->tgid;
  r->h.pid = current->pid;
  r->h.ret = ret;
  r->h.time_ns = ktime_get_ns();
}

static void send(struct rec *r, u32 off) {
  r->h.size = sizeof(r->h) + off;
  enqueue(&r->h);
}

/* Fills the object part of a record from a file; false if outside. */
static bool file_part(struct rec *r, u32 *off, struct file *f) {
  struct inode *inode = file_inode(f);
  u32 root = 0;
  int w = walk(r, off, f->f_path.dentry, &root);
  if (w == WALK_FS_ROOT) return false;
  if (w == WALK_TOO_DEEP) r->h.flags |= REPLIFS_SHIM_F_UNRESOLVED;
  r->h.root_index = root;
  r->h.name_len[0] = *off;
  r->h.dev_major = MAJOR(inode->i_sb->s_dev);
  r->h.dev_minor = MINOR(inode->i_sb->s_dev);
  r->h.ino = inode->i_ino;
  r->h.new_size = i_size_read(inode);
  r->h.flags |= REPLIFS_SHIM_F_SIZE_KNOWN;
  return true;
}

static void user_string(struct rec *r, u32 *off, const char __user *s, u16 *len) {
  long n = strncpy_from_user(&r->data[*off], s, REPLIFS_SHIM_FIELD_MAX - 1);
  if (n > 0) {
    *off += n;
    *len = n;
  }
}

#define AT_CWD -1
#define RAW -2
#define NONE -3

/* One name: base directory (dirfd, cwd, or root when absolute) walked to a
 * protected root, then the string as passed. False: certainly outside. */
static bool name_part(struct rec *r, u32 *off, int field, const unsigned long *a, int dirfd_i, int path_i) {
  const char __user *name;
  struct path base;
  char first = 0;
  int dirfd, root_index, w;
  u32 start = *off, root;
  if (path_i == NONE) return false;
  name = (const char __user *)a[path_i];
  if (dirfd_i == RAW) {
    user_string(r, off, name, &r->h.name_len[field + 1]);
    return false;
  }
  dirfd = dirfd_i >= 0 ? (int)a[dirfd_i] : AT_FDCWD;
  if (get_user(first, name)) return false;
  if (first == '/') {
    get_fs_root(current->fs, &base);
  } else if (dirfd == AT_FDCWD) {
    get_fs_pwd(current->fs, &base);
  } else {
    struct file *f = fget(dirfd);
    if (!f) return false;
    base = f->f_path;
    path_get(&base);
    fput(f);
  }
  root_index = root_on_dev(base.dentry->d_sb->s_dev);
  if (root_index < 0) {
    path_put(&base);
    return false;
  }
  root = root_index;
  w = walk(r, off, base.dentry, &root);
  path_put(&base);
  if (w == WALK_TOO_DEEP) r->h.flags |= REPLIFS_SHIM_F_UNRESOLVED;
  if (w == WALK_FS_ROOT) {
    r->h.flags |= field == 0 ? REPLIFS_SHIM_F_NAME1_FROM_FS_ROOT : REPLIFS_SHIM_F_NAME2_FROM_FS_ROOT;
    if (first != '/' && dirfd != AT_FDCWD)
      r->h.flags |= field == 0 ? REPLIFS_SHIM_F_NAME1_FROM_DIRFD : REPLIFS_SHIM_F_NAME2_FROM_DIRFD;
  }
  if (field == 0 || r->h.name_len[0] + r->h.name_len[1] == 0) r->h.root_index = root;
  r->h.name_len[field] = *off - start;
  user_string(r, off, name, &r->h.name_len[field + 1]);
  return true;
}

/* ---- the hooks ---- */
struct shape {
  signed char fd, dirfd1, path1, dirfd2, path2;
};

struct hook {
  const char *func;
  u32 sc;
  struct shape shape;
  void *wrapper;
  unsigned long orig; /* learnt at the first call */
  struct ftrace_ops ops;
  bool registered;
};

static void decide(struct hook *h, const unsigned long *a, long ret, loff_t pos_after, struct file *f);

/* The file behind a shared, writable mapping at addr on a protected device
 * (msync, munmap), with a reference; NULL otherwise. */
static struct file *mapped_file(unsigned long addr) {
  struct mm_struct *mm = current->mm;
  struct vm_area_struct *vma;
  struct file *f = NULL;
  if (!mm) return NULL;
  mmap_read_lock(mm);
  vma = find_vma(mm, addr);
  if (vma && vma->vm_start <= addr && vma->vm_file &&
      (vma->vm_flags & (VM_SHARED | VM_MAYWRITE)) == (VM_SHARED | VM_MAYWRITE) &&
      root_on_dev(file_inode(vma->vm_file)->i_sb->s_dev) >= 0)
    f = get_file(vma->vm_file);
  mmap_read_unlock(mm);
  return f;
}

static long call_hooked(struct hook *h, const struct pt_regs *regs) {
  typedef long (*sys_fn)(const struct pt_regs *);
  unsigned long a[6] = {regs->di, regs->si, regs->dx, regs->r10, regs->r8, regs->r9};
  struct file *f = NULL;
  long ret;
  u32 tgid = current->tgid;
  bool watch = READ_ONCE(cfg.nroots) > 0 && tgid != READ_ONCE(cfg.daemon_tgid);

  if (watch && h->sc == REPLIFS_SYS_CLOSE) {
    /* Stores through a writable shared mapping: name the file while the fd is valid. */
    struct file *cf = fget((int)a[0]);
    if (cf) {
      if (root_on_dev(file_inode(cf)->i_sb->s_dev) >= 0 && mapping_writably_mapped(cf->f_mapping))
        decide(h, a, 0, 0, cf);
      fput(cf);
    }
    return ((sys_fn)h->orig)(regs);
  }
  if (watch && (h->sc == REPLIFS_SYS_MSYNC || h->sc == REPLIFS_SYS_MUNMAP)) {
    /* Stores through the mapping reach the file: take it before munmap drops the mapping. */
    struct file *mf = mapped_file(a[0]);
    ret = ((sys_fn)h->orig)(regs);
    if (mf) {
      if (ret >= 0) decide(h, a, ret, 0, mf);
      fput(mf);
    }
    return ret;
  }
  if (watch && h->shape.fd != NONE) {
    f = fget((int)a[h->shape.fd]);
    if (f && root_on_dev(file_inode(f)->i_sb->s_dev) < 0) {
      fput(f);
      f = NULL;
    }
    if (!f) watch = false;
  }
  ret = ((sys_fn)h->orig)(regs);
  if (watch && ret >= 0) decide(h, a, ret, f ? READ_ONCE(f->f_pos) : 0, f);
  if (f) fput(f);
  return ret;
}

static void decide(struct hook *h, const unsigned long *a, long ret, loff_t pos, struct file *f) {
  struct rec *r;
  u32 off = 0, sc = h->sc;
  bool in1, in2;
  r = kmalloc(sizeof(*r), GFP_KERNEL);
  if (!r) {
    unsigned long flags;
    spin_lock_irqsave(&q_lock, flags);
    q_dropped++;
    q_overflow_pending = true;
    spin_unlock_irqrestore(&q_lock, flags);
    return;
  }
  begin(r, sc, ret);
  if (sc == REPLIFS_SYS_OPEN || sc == REPLIFS_SYS_OPENAT || sc == REPLIFS_SYS_OPENAT2 || sc == REPLIFS_SYS_CREAT) {
    u64 flags = sc == REPLIFS_SYS_OPEN ? a[1] : sc == REPLIFS_SYS_OPENAT ? a[2] : O_CREAT | O_TRUNC;
    struct file *nf;
    if (sc == REPLIFS_SYS_OPENAT2 && copy_from_user(&flags, (void __user *)a[2], sizeof(flags))) goto out;
    if (!(flags & (O_CREAT | O_TRUNC))) goto out;
    nf = fget((int)ret);
    if (!nf) goto out;
    if (root_on_dev(file_inode(nf)->i_sb->s_dev) >= 0 && file_part(r, &off, nf)) {
      r->h.call_flags = flags;
      send(r, off);
    }
    fput(nf);
    goto out;
  }
  if (f) {
    if (!file_part(r, &off, f)) goto out;
    switch (sc) {
      case REPLIFS_SYS_WRITE: case REPLIFS_SYS_WRITEV: case REPLIFS_SYS_SENDFILE:
        r->h.offset = pos - ret; r->h.length = ret; r->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
      case REPLIFS_SYS_PWRITE64: case REPLIFS_SYS_PWRITEV:
        r->h.offset = a[3]; r->h.length = ret; r->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
      case REPLIFS_SYS_PWRITEV2:
        r->h.offset = (long)a[3] == -1 ? pos - ret : a[3]; r->h.length = ret;
        r->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
      case REPLIFS_SYS_COPY_FILE_RANGE: case REPLIFS_SYS_SPLICE: {
        loff_t out = pos;
        if (a[3] && copy_from_user(&out, (void __user *)a[3], sizeof(out))) out = pos;
        r->h.offset = out - ret; r->h.length = ret; r->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
      }
      case REPLIFS_SYS_FTRUNCATE: r->h.new_size = a[1]; break;
      case REPLIFS_SYS_FALLOCATE:
        r->h.call_flags = a[1]; r->h.offset = a[2]; r->h.length = a[3];
        r->h.flags |= REPLIFS_SHIM_F_RANGE_KNOWN; break;
    }
    if ((sc == REPLIFS_SYS_SPLICE || sc == REPLIFS_SYS_SENDFILE) && !S_ISREG(file_inode(f)->i_mode)) goto out;
    if (ret == 0 && (r->h.flags & REPLIFS_SHIM_F_RANGE_KNOWN) && sc != REPLIFS_SYS_FALLOCATE) goto out;
    if (h->shape.path2 != NONE) name_part(r, &off, 2, a, h->shape.dirfd2, h->shape.path2);
    send(r, off);
    goto out;
  }
  in1 = name_part(r, &off, 0, a, h->shape.dirfd1, h->shape.path1);
  in2 = name_part(r, &off, 2, a, h->shape.dirfd2, h->shape.path2);
  if (!in1 && !in2) goto out;
  if (sc == REPLIFS_SYS_TRUNCATE) { r->h.new_size = a[1]; r->h.flags |= REPLIFS_SHIM_F_SIZE_KNOWN; }
  if (sc == REPLIFS_SYS_UNLINKAT) r->h.call_flags = a[2];
  if (sc == REPLIFS_SYS_RENAMEAT2) r->h.call_flags = a[4];
  send(r, off);
out:
  kfree(r);
}

#define FD(i) {i, NONE, NONE, NONE, NONE}
#define N1(d, p) {NONE, d, p, NONE, NONE}
#define N2(d1, p1, d2, p2) {NONE, d1, p1, d2, p2}
#define NOTHING {NONE, NONE, NONE, NONE, NONE}

#define HOOKS(X)                                                                     \
  X(write, WRITE, FD(0)) X(pwrite64, PWRITE64, FD(0)) X(writev, WRITEV, FD(0))        \
  X(pwritev, PWRITEV, FD(0)) X(pwritev2, PWRITEV2, FD(0)) X(ftruncate, FTRUNCATE, FD(0)) \
  X(fallocate, FALLOCATE, FD(0)) X(copy_file_range, COPY_FILE_RANGE, FD(2))           \
  X(sendfile64, SENDFILE, FD(0)) X(splice, SPLICE, FD(2))                             \
  X(truncate, TRUNCATE, N1(AT_CWD, 0)) X(rename, RENAME, N2(AT_CWD, 0, AT_CWD, 1))     \
  X(renameat, RENAMEAT, N2(0, 1, 2, 3)) X(renameat2, RENAMEAT2, N2(0, 1, 2, 3))        \
  X(unlink, UNLINK, N1(AT_CWD, 0)) X(unlinkat, UNLINKAT, N1(0, 1))                     \
  X(mkdir, MKDIR, N1(AT_CWD, 0)) X(mkdirat, MKDIRAT, N1(0, 1)) X(rmdir, RMDIR, N1(AT_CWD, 0)) \
  X(link, LINK, N2(AT_CWD, 0, AT_CWD, 1)) X(linkat, LINKAT, N2(0, 1, 2, 3))             \
  X(symlink, SYMLINK, N2(RAW, 0, AT_CWD, 1)) X(symlinkat, SYMLINKAT, N2(RAW, 0, 1, 2))  \
  X(chmod, CHMOD, N1(AT_CWD, 0)) X(fchmodat, FCHMODAT, N1(0, 1)) X(chown, CHOWN, N1(AT_CWD, 0)) \
  X(lchown, LCHOWN, N1(AT_CWD, 0)) X(fchownat, FCHOWNAT, N1(0, 1)) X(utimensat, UTIMENSAT, N1(0, 1)) \
  X(setxattr, SETXATTR, N2(AT_CWD, 0, RAW, 1)) X(lsetxattr, LSETXATTR, N2(AT_CWD, 0, RAW, 1)) \
  X(removexattr, REMOVEXATTR, N2(AT_CWD, 0, RAW, 1)) X(lremovexattr, LREMOVEXATTR, N2(AT_CWD, 0, RAW, 1)) \
  X(fchmod, FCHMOD, FD(0)) X(fchown, FCHOWN, FD(0))                                   \
  X(fsetxattr, FSETXATTR, {0, NONE, NONE, RAW, 1}) X(fremovexattr, FREMOVEXATTR, {0, NONE, NONE, RAW, 1}) \
  X(open, OPEN, NOTHING) X(openat, OPENAT, NOTHING) X(openat2, OPENAT2, NOTHING)       \
  X(creat, CREAT, NOTHING) X(close, CLOSE, NOTHING)                                   \
  X(msync, MSYNC, NOTHING) X(munmap, MUNMAP, NOTHING)

#define HENUM(name, SC, ...) H_##name,
enum { HOOKS(HENUM) H_COUNT };
static struct hook hooks[H_COUNT];
#define HWRAP(name, SC, ...) \
  static long wrap_##name(const struct pt_regs *regs) { return call_hooked(&hooks[H_##name], regs); }
HOOKS(HWRAP)
#define HENTRY(name, SC, ...) \
  [H_##name] = {.func = "__x64_sys_" #name, .sc = REPLIFS_SYS_##SC, .shape = __VA_ARGS__, .wrapper = wrap_##name},
static struct hook hooks[H_COUNT] = {HOOKS(HENTRY)};

static void notrace ftrace_cb(unsigned long ip, unsigned long parent_ip, struct ftrace_ops *ops,
                              struct ftrace_regs *fregs) {
  struct hook *h = container_of(ops, struct hook, ops);
  struct pt_regs *regs = ftrace_get_regs(fregs);
  if (!regs) return;
  if (!h->orig) WRITE_ONCE(h->orig, ip);
  /* Our wrapper calling the original: let it run. */
  if (within_module(parent_ip, THIS_MODULE)) return;
  regs->ip = (unsigned long)h->wrapper;
}

static void unhook_all(void) {
  int i;
  for (i = 0; i < H_COUNT; i++) {
    if (!hooks[i].registered) continue;
    unregister_ftrace_function(&hooks[i].ops);
    ftrace_free_filter(&hooks[i].ops);
    hooks[i].registered = false;
  }
  active = false;
}

static int hook_all(void) {
  int i, err;
  for (i = 0; i < H_COUNT; i++) {
    struct hook *h = &hooks[i];
    h->ops.func = ftrace_cb;
    h->ops.flags = FTRACE_OPS_FL_SAVE_REGS | FTRACE_OPS_FL_RECURSION | FTRACE_OPS_FL_IPMODIFY;
    err = ftrace_set_filter(&h->ops, (unsigned char *)h->func, strlen(h->func), 1);
    if (err) {
      pr_err("replifs_shim: cannot filter %s: %d\n", h->func, err);
      goto fail;
    }
    err = register_ftrace_function(&h->ops);
    if (err) {
      pr_err("replifs_shim: cannot hook %s: %d\n", h->func, err);
      ftrace_free_filter(&h->ops);
      goto fail;
    }
    h->registered = true;
  }
  active = true;
  return 0;
fail:
  unhook_all();
  return err;
}

/* ---- the device ---- */
static ssize_t dev_read(struct file *file, char __user *buf, size_t len, loff_t *ppos) {
  char *tmp;
  size_t copied = 0;
  unsigned long flags;
  int err;
  if (!(file->f_flags & O_NONBLOCK)) {
    err = wait_event_interruptible(q_wait, q_head != q_tail);
    if (err) return err;
  }
  tmp = kmalloc(min_t(size_t, len, QUEUE_BYTES), GFP_KERNEL);
  if (!tmp) return -ENOMEM;
  spin_lock_irqsave(&q_lock, flags);
  while (q_head != q_tail) {
    u32 size, i;
    for (i = 0; i < sizeof(size); i++)
      ((char *)&size)[i] = queue[(q_tail + offsetof(struct replifs_shim_event, size) + i) % QUEUE_BYTES];
    if (copied + size > min_t(size_t, len, QUEUE_BYTES)) break;
    for (i = 0; i < size; i++) tmp[copied + i] = queue[(q_tail + i) % QUEUE_BYTES];
    copied += size;
    q_tail += size;
  }
  spin_unlock_irqrestore(&q_lock, flags);
  if (copied == 0) {
    kfree(tmp);
    return q_head != q_tail ? -EINVAL : -EAGAIN; /* buffer smaller than one record */
  }
  if (copy_to_user(buf, tmp, copied)) copied = -EFAULT;
  kfree(tmp);
  return copied;
}

static __poll_t dev_poll(struct file *file, poll_table *wait) {
  poll_wait(file, &q_wait, wait);
  return q_head != q_tail ? EPOLLIN | EPOLLRDNORM : 0;
}

static long dev_ioctl(struct file *file, unsigned int cmd, unsigned long arg) {
  struct replifs_shim_config c;
  long err = 0;
  switch (cmd) {
    case REPLIFS_SHIM_IOC_SET_CONFIG:
      if (copy_from_user(&c, (void __user *)arg, sizeof(c))) return -EFAULT;
      if (c.nroots > REPLIFS_SHIM_MAX_ROOTS) return -EINVAL;
      mutex_lock(&hook_mutex);
      spin_lock(&cfg_lock);
      cfg = c;
      spin_unlock(&cfg_lock);
      if (!active && c.nroots > 0) err = hook_all();
      if (active && c.nroots == 0) unhook_all();
      mutex_unlock(&hook_mutex);
      return err;
    case REPLIFS_SHIM_IOC_STATS: {
      struct replifs_shim_stats stats;
      unsigned long flags;
      spin_lock_irqsave(&q_lock, flags);
      stats.sent = q_sent;
      stats.dropped = q_dropped;
      spin_unlock_irqrestore(&q_lock, flags);
      return copy_to_user((void __user *)arg, &stats, sizeof(stats)) ? -EFAULT : 0;
    }
    case REPLIFS_SHIM_IOC_CLEAR:
      mutex_lock(&hook_mutex);
      unhook_all();
      spin_lock(&cfg_lock);
      memset(&cfg, 0, sizeof(cfg));
      spin_unlock(&cfg_lock);
      mutex_unlock(&hook_mutex);
      return 0;
  }
  return -ENOTTY;
}

static const struct file_operations dev_fops = {
    .owner = THIS_MODULE,
    .read = dev_read,
    .poll = dev_poll,
    .unlocked_ioctl = dev_ioctl,
    .llseek = noop_llseek,
};

static struct miscdevice dev = {
    .minor = MISC_DYNAMIC_MINOR,
    .name = "replifs_shim",
    .fops = &dev_fops,
    .mode = 0600,
};

static int __init shim_init(void) {
  int err;
  queue = vmalloc(QUEUE_BYTES);
  if (!queue) return -ENOMEM;
  err = misc_register(&dev);
  if (err) vfree(queue);
  return err;
}

static void __exit shim_exit(void) {
  mutex_lock(&hook_mutex);
  unhook_all();
  mutex_unlock(&hook_mutex);
  misc_deregister(&dev);
  vfree(queue);
  pr_info("replifs_shim: unloaded, %llu records dropped\n", q_dropped);
}

module_init(shim_init);
module_exit(shim_exit);

#!/usr/bin/env python3
"""bench/delta: what one edit costs to back up, replifs against rsync and restic.

One command:  bench/delta/run [BUILD_DIR]   (root; needs /dev/fuse, rsync, restic)
One case:     DELTA_CASES=d bench/delta/run   (the initial sync always runs first);
              DELTA_PEERS=0 leaves rsync and restic out (quick profiling runs).

The same data for every tool: a fixed mixed corpus (the machine's own
/usr/share and /usr/lib files, in sorted order, interleaved with seeded
random blocks). replifs protects its own copy of the tree (edits go through
the mount); rsync (pushing to an rsync daemon on 127.0.0.1, one module with
--inplace and one without) and restic (to a local repository) read an
identical second copy. Page caches are dropped before each measured run.

Scenarios (issue 5):
  (e) initial sync of 1 GiB plus 10,000 small files
  (a) 4 KiB overwritten in the middle of the 1 GiB file (timed DELTA_A_REPEATS=5
      times at the same offset, the peers' bytes last; times are medians)
  (b) 1 MiB inserted in the middle of a 256 MiB file (tail rewritten in place)
  (c) 1 % of the 10,000 small files modified (100 bytes each, in place)
  (d) a 256 MiB file saved by temp+rename with 1 % of its bytes changed
  (r) remount of a tree of 100,000 unchanged files (replifs only)

Figures per tool:
  wire     replifs: serialized gRPC messages both ways (`replifs status`,
           "wire bytes"); rsync: "Total bytes sent" + "received" (--stats);
           restic: bytes added to the repository.
  read     bytes the sender read from disk (/proc/PID/io read_bytes of the
           replifs daemon; rusage inblock of rsync's and restic's process).
  cpu      sender CPU seconds (user + system).
  wall     replifs: end of the edit -> the daemon's acknowledgement time
           ("last acknowledged change ... at", the server has fsynced; the
           note gives the start of `replifs sync` -> that acknowledgement,
           which (a)'s 0.1 s target is about, and when `replifs sync`
           returned); (e): mount -> sync
           returned. rsync, restic: the run. rsync does not fsync.
Ratios are against the best peer of the same row, measured in the same run.
"""
import datetime, os, random, re, resource, shutil, signal, statistics, subprocess, sys, time

GiB, MiB, KiB = 1 << 30, 1 << 20, 1 << 10
BIG = int(os.environ.get("DELTA_BIG", GiB))
MID = int(os.environ.get("DELTA_MID", 256 * MiB))
SMALL_FILES = int(os.environ.get("DELTA_SMALL", 10000))
RECONCILE_FILES = int(os.environ.get("DELTA_RECONCILE", 100000))
# Which cases to report, e.g. DELTA_CASES=e or DELTA_CASES=d ("r": the
# remount). The initial sync runs always (every later case starts from it).
CASES = os.environ.get("DELTA_CASES", "eabcdr")
# (a) is timed this many times (median): a single 0.1 s figure is noise.
A_REPEATS = max(1, int(os.environ.get("DELTA_A_REPEATS", 5)))
# DELTA_PEERS=0: replifs alone (quick profiling runs; ratios print as 0).
WITH_PEERS = os.environ.get("DELTA_PEERS", "1") != "0"
SEED = 20261125


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


# ---------------------------------------------------------------- corpus

def corpus_files():
    """Regular files of /usr/share and /usr/lib in a fixed (sorted) order."""
    out = []
    for top in ("/usr/share", "/usr/lib"):
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                p = os.path.join(dirpath, name)
                try:
                    if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
                        out.append(p)
                except OSError:
                    pass
    return out


class Corpus:
    """A byte stream: corpus files, and 1 MiB of seeded random after every 3 MiB."""

    def __init__(self, files, seed):
        self.files, self.index, self.rng = files, 0, random.Random(seed)
        self.since_random = 0

    def next_piece(self, limit):
        if self.since_random >= 3 * MiB or not self.files:
            self.since_random = 0
            return self.rng.randbytes(min(limit, MiB))
        while True:
            p = self.files[self.index % len(self.files)]
            self.index += 1
            try:
                with open(p, "rb") as f:
                    data = f.read(min(limit, 4 * MiB))
            except OSError:
                continue
            if data:
                self.since_random += len(data)
                return data

    def write_file(self, path, size):
        with open(path, "wb") as f:
            left = size
            while left > 0:
                piece = self.next_piece(left)
                f.write(piece)
                left -= len(piece)


def make_small_files(dir, files, count, seed):
    """`count` files in 100 directories, each a corpus file's first <= 32 KiB
    (a tenth seeded random), so sizes and content are realistic."""
    rng = random.Random(seed)
    pool = [p for p in files if os.path.getsize(p) >= 256][::3]
    for i in range(count):
        d = os.path.join(dir, "d%02d" % (i % 100))
        os.makedirs(d, exist_ok=True)
        if i % 10 == 9 or not pool:
            data = rng.randbytes(rng.randint(256, 32 * KiB))
        else:
            with open(pool[(i * 7919) % len(pool)], "rb") as f:
                data = f.read(32 * KiB)
        with open(os.path.join(d, "f%05d" % i), "wb") as f:
            f.write(data)


# ---------------------------------------------------------------- edits (same for every copy)

# Each edit reads what it needs first and returns the writing step: the
# bench drops caches between the two, so the editor's own reads (served by
# the replifs daemon for the mount) do not count as the sender's.

def edit_a(tree, seed=SEED + 1):
    def write():
        rng = random.Random(seed)
        fd = os.open(os.path.join(tree, "big.bin"), os.O_WRONLY)
        os.pwrite(fd, rng.randbytes(4 * KiB), BIG // 2)
        os.close(fd)
        return 4 * KiB
    return write


def edit_b(tree):
    path = os.path.join(tree, "insert.bin")
    with open(path, "rb") as f:
        f.seek(MID // 2)
        tail = f.read()

    def write():
        rng = random.Random(SEED + 2)
        with open(path, "r+b") as f:
            f.seek(MID // 2)
            f.write(rng.randbytes(MiB))
            f.write(tail)
        return MiB
    return write


def changed_regions(size, seed):
    """1 % of `size` in 8 equal regions at seeded places, in order."""
    rng = random.Random(seed)
    each = size // 100 // 8
    slots = sorted(rng.sample(range(8, size // each - 8), 8))
    return [(s * each, each) for s in slots]


def edit_d(tree):
    path = os.path.join(tree, "saved.bin")
    with open(path, "rb") as src:
        data = bytearray(src.read())

    def write():
        rng = random.Random(SEED + 4)
        tmp = path + ".tmp"
        changed = 0
        with open(tmp, "wb") as dst:
            for offset, length in changed_regions(len(data), SEED + 4):
                data[offset:offset + length] = rng.randbytes(length)
                changed += length
            dst.write(data)
            dst.flush()
            os.fsync(dst.fileno())
        os.rename(tmp, path)
        return changed
    return write


def edit_c(tree):
    def write():
        rng = random.Random(SEED + 3)
        chosen = sorted(rng.sample(range(SMALL_FILES), SMALL_FILES // 100))
        for i in chosen:
            p = os.path.join(tree, "small", "d%02d" % (i % 100), "f%05d" % i)
            size = os.path.getsize(p)
            fd = os.open(p, os.O_WRONLY)
            os.pwrite(fd, rng.randbytes(100), max(0, size // 2 - 50))
            os.close(fd)
        return 100 * len(chosen)
    return write


# ---------------------------------------------------------------- tools

def run_measured(argv, env=None, cwd=None):
    """Runs argv; returns (stdout, wall s). CPU and reads: child_usage() around it."""
    start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    out, err = p.communicate()
    wall = time.monotonic() - start
    if p.returncode != 0:
        raise SystemExit("bench/delta: %s failed: %s" % (" ".join(argv), err.decode(errors="replace")[-2000:]))
    return out.decode(errors="replace"), wall


def child_usage():
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime, u.ru_inblock * 512


class Rsync:
    def __init__(self, root, inplace):
        self.name = "rsync --inplace" if inplace else "rsync"
        self.inplace = inplace
        self.module = "inplace" if inplace else "default"
        self.dest = os.path.join(root, "rsync-" + self.module)
        os.makedirs(self.dest)

    def backup(self, src, port):
        argv = ["rsync", "-a", "--delete", "--stats", "--no-whole-file"]
        if self.inplace:
            argv.append("--inplace")
        argv += [src + "/", "rsync://127.0.0.1:%d/%s/" % (port, self.module)]
        cpu0, read0 = child_usage()
        out, wall = run_measured(argv)
        cpu1, read1 = child_usage()
        sent = int(re.search(r"Total bytes sent: ([\d,]+)", out).group(1).replace(",", ""))
        recv = int(re.search(r"Total bytes received: ([\d,]+)", out).group(1).replace(",", ""))
        return {"wire": sent + recv, "read": read1 - read0, "cpu": cpu1 - cpu0, "wall": wall}


class Restic:
    name = "restic"

    def __init__(self, root):
        self.repo = os.path.join(root, "restic-repo")
        self.env = dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=self.repo,
                        XDG_CACHE_HOME=os.path.join(root, "restic-cache"))
        subprocess.run(["restic", "init"], env=self.env, check=True, capture_output=True)

    def repo_bytes(self):
        total = 0
        for dirpath, _, names in os.walk(self.repo):
            for n in names:
                total += os.path.getsize(os.path.join(dirpath, n))
        return total

    def backup(self, src, port=None):
        before = self.repo_bytes()
        cpu0, read0 = child_usage()
        # cwd = src and "." so every run names the same paths (the parent snapshot matches).
        _, wall = run_measured(["restic", "backup", "--quiet", "."], env=self.env, cwd=src)
        cpu1, read1 = child_usage()
        return {"wire": self.repo_bytes() - before, "read": read1 - read0, "cpu": cpu1 - cpu0, "wall": wall}


class Replifs:
    name = "replifs"

    def __init__(self, build, root):
        self.cli = os.path.join(build, "cli/replifs")
        self.server_bin = os.path.join(build, "replicator/server/replifs-server")
        self.store, self.state = os.path.join(root, "replifs-store"), os.path.join(root, "replifs-state")
        os.makedirs(self.store)
        os.makedirs(self.state)
        self.tokens = {}
        for repo in ("delta", "many"):
            r = subprocess.run([self.server_bin, "repo", "create", repo, "--store", self.store],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit("bench/delta: repo create failed: " + r.stderr.strip())
            self.tokens[repo] = os.path.join(root, "token-" + repo)
            with open(self.tokens[repo], "w") as f:
                f.write(r.stdout.strip() + "\n")
            os.chmod(self.tokens[repo], 0o600)
        self.log = open(os.path.join(root, "replifs-server.log"), "w")
        self.server = subprocess.Popen([self.server_bin, "--listen", "127.0.0.1:0", "--store", self.store],
                                       stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.addr = None
        for line in self.server.stdout:
            if "listening on" in line:
                self.addr = line.split("listening on")[1].split()[0]
                break
        if self.addr is None:
            raise SystemExit("bench/delta: replifs-server did not start (see replifs-server.log)")
        self.prot = None

    def cmd(self, *args, check=True):
        r = subprocess.run([self.cli, *args], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise SystemExit("bench/delta: replifs %s failed: %s" % (" ".join(args), r.stderr.strip()))
        return r

    def mount(self, prot, repo="delta", state=None):
        self.prot = prot
        self.cmd("mount", prot, "--server", self.addr, "--repo", repo, "--state", state or self.state,
                 "--token-file", self.tokens[repo])

    def umount(self):
        self.cmd("umount", self.prot)

    def status(self):
        out = self.cmd("status", self.prot).stdout
        wire = int(re.search(r"wire bytes: (\d+)", out).group(1))
        read = int(re.search(r"file bytes read: (\d+)", out).group(1))
        return out, wire, read

    def daemon_pid(self, state=None):
        with open(os.path.join(state or self.state, "daemon.pid")) as f:
            return int(f.read().split()[0])

    @staticmethod
    def proc_counters(pid):
        with open("/proc/%d/io" % pid) as f:
            io = dict(line.split(": ") for line in f.read().splitlines())
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return int(io["read_bytes"]), cpu

    def sync(self):
        self.cmd("sync", self.prot, "--timeout", "600")

    def measure(self, edit):
        """Prepares the edit, drops caches, writes it through the mount, then `replifs sync`."""
        pid = self.daemon_pid()
        write = edit(self.prot)
        self.sync()
        drop_caches()
        _, wire0, lread0 = self.status()
        read0, cpu0 = self.proc_counters(pid)
        changed = write()
        t_edit, t_edit_clock = time.monotonic(), time.time()
        t_sync_clock = time.time()  # `replifs sync` starts here (its process start-up counts)
        self.sync()
        wall = time.monotonic() - t_edit
        read1, cpu1 = self.proc_counters(pid)
        out, wire1, lread1 = self.status()
        # The daemon's own acknowledgement time: durable on the server,
        # without the `replifs sync` process's start-up.
        m = re.search(r"last acknowledged change: \d+ at (\S+)", out)
        acked = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp() if m else None
        return {"wire": wire1 - wire0, "read": read1 - read0, "cpu": cpu1 - cpu0,
                "wall": acked - t_edit_clock if acked else wall, "sync_wall": wall,
                "sync_to_ack": acked - t_sync_clock if acked else wall,
                "changed": changed, "chunked": lread1 - lread0}

    def stop(self):
        if self.prot:
            self.cmd("umount", self.prot, check=False)
        self.server.send_signal(signal.SIGTERM)
        self.server.wait(timeout=60)


def measure_a(rf):
    """(a) A_REPEATS times at the same offset, other bytes each time and the
    peers' edit last (so the trees still agree): times are the median of all
    runs, bytes those of the last. One run is noise on a shared machine."""
    runs = [rf.measure(lambda tree, i=i: edit_a(tree, SEED + 100 + i)) for i in range(A_REPEATS - 1)]
    runs.append(rf.measure(edit_a))
    out = dict(runs[-1])
    for key in ("wall", "sync_wall", "sync_to_ack"):
        out[key] = statistics.median(r[key] for r in runs)
    out["runs"] = len(runs)
    return out


def start_rsync_daemon(root, modules):
    conf = os.path.join(root, "rsyncd.conf")
    with open(conf, "w") as f:
        f.write("use chroot = no\nuid = root\ngid = root\nread only = no\naddress = 127.0.0.1\n")
        f.write("pid file = %s\n" % os.path.join(root, "rsyncd.pid"))
        for m in modules:
            f.write("[%s]\npath = %s\n" % (m.module, m.dest))
    port = 20000 + os.getpid() % 20000
    d = subprocess.Popen(["rsync", "--daemon", "--no-detach", "--config=" + conf, "--port=%d" % port],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "rsyncd.log"), "w"))
    time.sleep(0.5)
    if d.poll() is not None:
        raise SystemExit("bench/delta: rsync --daemon did not start (rsyncd.log)")
    return d, port


# ---------------------------------------------------------------- table

def fmt_bytes(n):
    if n >= 10 * MiB:
        return "%.0f MB" % (n / 1e6)
    if n >= MiB // 2:
        return "%.2f MB" % (n / 1e6)
    return "%.1f KB" % (n / 1e3)


def print_table(rows, targets):
    print("\n%-5s %-16s %11s %7s %11s %7s %8s %9s  %s" %
          ("case", "tool", "wire", "ratio", "read", "ratio", "cpu s", "wall s", "note"))
    for case, results in rows:
        peers = [r for n, r in results if n != "replifs"]
        # No peers (DELTA_PEERS=0): ratios print as 0.
        best_wire = (min(r["wire"] for r in peers) or 1) if peers else float("inf")
        best_read = (min(r["read"] for r in peers) or 1) if peers else float("inf")
        for name, r in results:
            note = ""
            if name == "replifs" and case in targets:
                note = targets[case](r)
                if "chunked" in r:
                    note = "chunked %s, sync start->durable %.3f s, sync returned %.2f s%s; %s" % (
                        fmt_bytes(r["chunked"]), r["sync_to_ack"], r["sync_wall"],
                        " (medians of %d)" % r["runs"] if "runs" in r else "", note)
            extra = ""
            if case == "e":
                extra = " (%.0f MB/s)" % (r["total"] / r["wall"] / 1e6)
            print("%-5s %-16s %11s %7.2f %11s %7.2f %8.2f %9.3f%s  %s" %
                  (case, name, fmt_bytes(r["wire"]), r["wire"] / best_wire, fmt_bytes(r["read"]),
                   r["read"] / best_read, r["cpu"], r["wall"], extra, note))
    print("ratio: against the best peer in the row's case (same run). rsync does not fsync; "
          "replifs's wall ends when the server has fsynced.")


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    root = os.environ.get("DELTA_ROOT", "/var/tmp/replifs-bench-delta")
    if os.path.exists(root):
        subprocess.run(["umount", "-l", os.path.join(root, "prot")], capture_output=True)
        subprocess.run(["umount", "-l", os.path.join(root, "many")], capture_output=True)
        shutil.rmtree(root)
    os.makedirs(root)
    prot, peer = os.path.join(root, "prot"), os.path.join(root, "peer")
    os.makedirs(prot)
    os.makedirs(peer)

    log("bench/delta: building the corpus (1 GiB + %d small files, then 2 x 256 MiB)" % SMALL_FILES)
    files = corpus_files()
    corpus = Corpus(files, SEED)
    corpus.write_file(os.path.join(peer, "big.bin"), BIG)
    make_small_files(os.path.join(peer, "small"), files, SMALL_FILES, SEED)
    extra = os.path.join(root, "extra")
    os.makedirs(extra)
    corpus.write_file(os.path.join(extra, "insert.bin"), MID)
    corpus.write_file(os.path.join(extra, "saved.bin"), MID)
    subprocess.run(["cp", "-a", peer + "/.", prot], check=True)
    total_e = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(peer) for n in ns)

    rsyncs = [Rsync(root, False), Rsync(root, True)]
    rsyncd, port = start_rsync_daemon(root, rsyncs)
    restic = Restic(root)
    rf = Replifs(build, root)
    peers = rsyncs + [restic] if WITH_PEERS else []
    rows = []
    try:
        # (e) initial sync.
        results = []
        drop_caches()
        t0 = time.monotonic()
        rf.mount(prot)
        pid = rf.daemon_pid()
        rf.sync()
        wall = time.monotonic() - t0
        read, cpu = rf.proc_counters(pid)
        _, wire, _ = rf.status()
        results.append(("replifs", {"wire": wire, "read": read, "cpu": cpu, "wall": wall}))
        for p in peers:
            drop_caches()
            results.append((p.name, p.backup(peer, port)))
        for _, r in results:
            r["total"] = total_e
        if "e" in CASES:
            rows.append(("e", results))
        log("bench/delta: (e) done")

        # Not measured: the two 256 MiB files join every copy.
        subprocess.run(["cp", os.path.join(extra, "insert.bin"), os.path.join(extra, "saved.bin"), prot],
                       check=True)
        subprocess.run(["cp", os.path.join(extra, "insert.bin"), os.path.join(extra, "saved.bin"), peer],
                       check=True)
        rf.sync()
        for p in peers:
            p.backup(peer, port)

        for case, edit in (("a", edit_a), ("b", edit_b), ("c", edit_c), ("d", edit_d)):
            if case not in CASES:
                continue
            if case == "a":
                results = [("replifs", measure_a(rf))]
            else:
                results = [("replifs", rf.measure(edit))]
            edit(peer)()
            for p in peers:
                drop_caches()
                results.append((p.name, p.backup(peer, port)))
            rows.append((case, results))
            log("bench/delta: (%s) done" % case)
        rf.umount()
        rf.prot = None

        # Content check: what the server holds is the peers' copy, byte for byte.
        restore = os.path.join(root, "restored")
        rf.cmd("restore", "--to", restore, "--server", rf.addr, "--repo", "delta", "--token-file", rf.tokens["delta"])
        diff = subprocess.run(["diff", "-r", "-q", restore, peer], capture_output=True, text=True)
        if diff.returncode != 0:
            print("bench/delta: RESTORED TREE DIFFERS from the peers' copy:\n" + diff.stdout[:2000])
            sys.exit(1)
        shutil.rmtree(restore)
    finally:
        rf.stop()
        rsyncd.terminate()
        rsyncd.wait()

    max_chunk = 256 * KiB
    targets = {
        "a": lambda r: "target <=256 KiB wire, <=1 MiB read, durable <=0.1 s after sync starts: %s" % (
            "MET" if r["wire"] <= 256 * KiB and r["read"] <= MiB and r["sync_to_ack"] <= 0.1 else "MISSED"),
        "b": lambda r: "target <=%s wire: %s" % (fmt_bytes(1.5 * r["changed"] + 2 * max_chunk),
                                                 "MET" if r["wire"] <= 1.5 * r["changed"] + 2 * max_chunk else "MISSED"),
        "c": lambda r: "target <=0.5 MB wire: %s" % ("MET" if r["wire"] <= 500_000 else "MISSED"),
        "d": lambda r: "target <=%s wire: %s" % (fmt_bytes(1.5 * r["changed"] + 2 * max_chunk),
                                                 "MET" if r["wire"] <= 1.5 * r["changed"] + 2 * max_chunk else "MISSED"),
        "e": lambda r: "target >=334 MB/s: %s" % ("MET" if r["total"] / r["wall"] >= 334e6 else "MISSED"),
    }
    print_table(rows, targets)
    sys.stdout.flush()
    if RECONCILE_FILES > 0 and "r" in CASES:
        try:
            print(bench_reconcile(build, root))
        except SystemExit as e:
            print("(r)   replifs remount of %d unchanged files: FAILED: %s" % (RECONCILE_FILES, e))


def bench_reconcile(build, root):
    """(r): remount of RECONCILE_FILES unchanged files: time to the end of the
    initial sync, files queued and bytes read (both must be 0)."""
    many = os.path.join(root, "many")
    for i in range(RECONCILE_FILES):
        d = os.path.join(many, "d%03d" % (i % 1000))
        if i < 1000:
            os.makedirs(d)
        # One content for all: a single chunk, so the first sync is catalog
        # work only; the remount still compares every file's identity.
        with open(os.path.join(d, "f%06d" % i), "wb") as f:
            f.write(b"unchanged file\n" * 4)
    os.makedirs(os.path.join(root, "r"))
    rf = Replifs(build, os.path.join(root, "r"))
    try:
        rf.mount(many, repo="many")
        rf.sync()
        rf.umount()
        drop_caches()
        t_mount = time.monotonic()
        rf.mount(many, repo="many")
        t0 = time.monotonic()
        while True:
            out, _, read = rf.status()
            if "initial sync: done" in out:
                break
            time.sleep(0.02)
        wall = time.monotonic() - t0
        rf.sync()
        out, _, read = rf.status()
        queued = int(re.search(r"initial sync: done \((\d+) paths scanned, (\d+) queued", out).group(2))
        scanned = int(re.search(r"initial sync: done \((\d+) paths scanned", out).group(1))
        return ("(r)   replifs remount of %d unchanged files: `replifs mount` %.2f s, then initial sync "
                "done in %.2f s (%d paths scanned, %d queued, %d file bytes read)" %
                (RECONCILE_FILES, t0 - t_mount, wall, scanned, queued, read))
    finally:
        rf.stop()


if __name__ == "__main__":
    main()

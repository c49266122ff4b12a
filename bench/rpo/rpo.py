#!/usr/bin/env python3
"""bench/rpo: time from close() of a written file to its commit on the target.

One command:  bench/rpo/run [BUILD_DIR]   (root; needs /dev/fuse, lsyncd, rsync)

For each setup, writes N small files (4 KiB, one every GAP ms) into a
protected directory and measures, per file, close() -> the moment it is
committed at the target:
  replifs: the server's catalog (store/catalog.sqlite, WAL, synchronous=FULL)
           holds a version of the path; a committed row is durable there.
  lsyncd:  rsync mode to a local target directory; the target file exists with
           the full size (lsyncd does not fsync: not durable, for scale only).
Each setup runs idle and during a sustained background write of large files.
Prints p50/p95/p99 in ms and the ratio to lsyncd delay=0 measured in the same run.
"""
import os, random, shutil, signal, sqlite3, statistics, subprocess, sys, tempfile, threading, time

N = int(os.environ.get("RPO_FILES", "200"))
GAP_MS = int(os.environ.get("RPO_GAP_MS", "20"))
SIZE = 4096
BIG = 32 << 20  # background: files of 32 MiB, rewritten in a loop

def pct(v, p):
    v = sorted(v)
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    return v[f] if f + 1 >= len(v) else v[f] + (v[f + 1] - v[f]) * (k - f)

class Background:
    """Sustained large-file writes into dir/bg (not measured)."""
    def __init__(self, dir):
        self.dir, self.stop, self.bytes = os.path.join(dir, "bg"), False, 0
        os.makedirs(self.dir, exist_ok=True)
        self.t = threading.Thread(target=self.run, daemon=True)
    def run(self):
        block = os.urandom(1 << 20)
        i = 0
        while not self.stop:
            with open(os.path.join(self.dir, "big%d.bin" % (i % 3)), "wb") as f:
                for _ in range(BIG >> 20):
                    if self.stop: break
                    f.write(block); self.bytes += len(block)
            i += 1
    def __enter__(self): self.t.start(); return self
    def __exit__(self, *a): self.stop = True; self.t.join()

def workload(dir, committed, prefix):
    """Writes N files; returns per-file latency in seconds (None if never seen)."""
    closes = {}
    sub = os.path.join(dir, prefix)
    os.makedirs(sub, exist_ok=True)
    for i in range(N):
        name = "f%03d" % i
        data = os.urandom(SIZE)
        with open(os.path.join(sub, name), "wb") as f:
            f.write(data)
        closes[name] = time.time()
        time.sleep(GAP_MS / 1000.0)
    deadline = time.time() + 60
    lat = {}
    while time.time() < deadline and len(lat) < N:
        for name, t in committed(prefix).items():
            if name in closes and name not in lat:
                lat[name] = t - closes[name]
        time.sleep(0.002)
    return [lat.get(n) for n in closes]

class Watcher(threading.Thread):
    """Polls a commit source every 2 ms, remembering when each name first appears."""
    def __init__(self, poll):
        super().__init__(daemon=True)
        self.poll, self.seen, self.stop, self.lock = poll, {}, False, threading.Lock()
    def run(self):
        while not self.stop:
            now = time.time()
            try:
                names = self.poll()
            except Exception:
                names = []
            with self.lock:
                for n in names:
                    self.seen.setdefault(n, now)
            time.sleep(0.002)
    def committed(self, prefix):
        with self.lock:
            return {n.split("/")[-1]: t for n, t in self.seen.items() if ("/" + prefix + "/") in ("/" + n)}

def measure_modes(dir, poll):
    """Runs the workload idle, then during background writes; latencies per mode."""
    out = {}
    for mode in ("idle", "busy"):
        w = Watcher(poll); w.start()
        try:
            if mode == "busy":
                with Background(dir):
                    time.sleep(1)
                    out[mode] = workload(dir, w.committed, mode)
            else:
                out[mode] = workload(dir, w.committed, mode)
        finally:
            w.stop = True; w.join()
    return out

def run_replifs(build, root, quiet_ms):
    server_bin = os.path.join(build, "replicator/server/replifs-server")
    cli = os.path.join(build, "cli/replifs")
    store, prot, state = (os.path.join(root, x) for x in ("store", "prot", "state"))
    for d in (store, prot, state): os.makedirs(d)
    # The operator's step: a repository and its token (printed once).
    token = os.path.join(root, "token")
    r = subprocess.run([server_bin, "repo", "create", "rpo", "--store", store], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("replifs-server repo create failed: " + r.stderr)
    with open(token, "w") as f:
        f.write(r.stdout)
    os.chmod(token, 0o600)
    log = open(os.path.join(root, "server.log"), "w")
    srv = subprocess.Popen([server_bin, "--listen", "127.0.0.1:0", "--store", store],
                           stdout=subprocess.PIPE, stderr=log, text=True)
    addr = None
    for line in srv.stdout:
        if "listening on" in line:
            addr = line.split("listening on")[1].split()[0]; break
    args = [cli, "mount", prot, "--server", addr, "--repo", "rpo", "--state", state, "--token-file", token]
    if quiet_ms is not None: args += ["--quiet-ms", str(quiet_ms)]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        srv.kill(); raise SystemExit("replifs mount failed: " + r.stderr)
    subprocess.run([cli, "sync", prot], capture_output=True)
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(store, "catalog.sqlite"), uri=True,
                         check_same_thread=False)
    def poll():
        return [bytes(p).decode(errors="replace") for (p,) in
                db.execute("SELECT path FROM versions WHERE deleted = 0 AND size = ?", (SIZE,))]
    try:
        return measure_modes(prot, poll)
    finally:
        db.close()
        subprocess.run([cli, "umount", prot], capture_output=True)
        srv.send_signal(signal.SIGTERM); srv.wait(timeout=30)

def run_lsyncd(root, delay):
    src, dst = os.path.join(root, "src"), os.path.join(root, "dst")
    os.makedirs(src); os.makedirs(dst)
    conf = os.path.join(root, "lsyncd.conf")
    delay_line = "" if delay is None else "delay = %d," % delay
    with open(conf, "w") as f:
        f.write('settings { nodaemon = true, statusInterval = 1, insist = true }\n'
                'sync { default.rsync, source = "%s", target = "%s", %s }\n' % (src, dst, delay_line))
    p = subprocess.Popen(["lsyncd", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    def poll():
        names = []
        for mode in ("idle", "busy"):
            d = os.path.join(dst, mode)
            try:
                for e in os.scandir(d):
                    if e.name.startswith("f") and e.stat().st_size == SIZE:
                        names.append(mode + "/" + e.name)
            except FileNotFoundError:
                pass
        return names
    try:
        return measure_modes(src, poll)
    finally:
        p.terminate(); p.wait(timeout=30)

def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    setups = [
        ("replifs default (quiet 200 ms, max 2 s)", lambda r: run_replifs(build, r, None)),
        ("replifs --quiet-ms 0", lambda r: run_replifs(build, r, 0)),
        ("lsyncd rsync delay=0", lambda r: run_lsyncd(r, 0)),
    ]
    if os.environ.get("RPO_LSYNCD_DEFAULT", "1") == "1":
        setups.append(("lsyncd rsync default delay", lambda r: run_lsyncd(r, None)))
    results = {}
    for name, fn in setups:
        root = tempfile.mkdtemp(prefix="replifs-rpo-")
        os.chmod(root, 0o755)
        try:
            print("running: %s ..." % name, file=sys.stderr, flush=True)
            results[name] = fn(root)
        finally:
            subprocess.run(["umount", "-l", os.path.join(root, "prot")], capture_output=True)
            shutil.rmtree(root, ignore_errors=True)
    base = results.get("lsyncd rsync delay=0")
    print("\nRPO: close() -> committed at the target, %d files of %d B, one every %d ms" % (N, SIZE, GAP_MS))
    print("%-42s %-5s %9s %9s %9s %6s %10s" % ("setup", "load", "p50 ms", "p95 ms", "p99 ms", "lost", "p50/lsyncd0"))
    for name, res in results.items():
        for mode in ("idle", "busy"):
            lat = [x * 1000 for x in res[mode] if x is not None]
            lost = sum(1 for x in res[mode] if x is None)
            if not lat:
                print("%-42s %-5s %9s" % (name, mode, "none committed")); continue
            ratio = ""
            if base:
                b = [x * 1000 for x in base[mode] if x is not None]
                if b: ratio = "%.2f" % (pct(lat, 50) / max(pct(b, 50), 0.001))
            print("%-42s %-5s %9.1f %9.1f %9.1f %6d %10s" % (name, mode, pct(lat, 50), pct(lat, 95),
                                                         pct(lat, 99), lost, ratio))

if __name__ == "__main__":
    main()

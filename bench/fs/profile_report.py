"""bench/fs/profile's report: FUSE requests of one connection per phase.

argv: name target major:minor trace.txt out.txt. trace.txt is `perf script -F
time,event,trace` of fuse:fuse_request_send/_end; out.txt holds the workload's
"mark PHASE START END" lines (else one phase spans everything) and "units N" (what
counts and times are divided by: files, MiB, writes; else 1).
"""
import collections
import re
import sys

name, target, dev, trace_path, out_path = sys.argv[1:6]
major, minor = (int(x) for x in dev.split(":"))
connection = (major << 20) | minor  # the kernel's internal dev_t

marks, units, rates = [], None, {}
for line in open(out_path):
    f = line.split()
    if len(f) == 4 and f[0] == "mark":
        marks.append((f[1], float(f[2]), float(f[3])))
    elif len(f) == 2 and f[0] == "units":
        units = float(f[1])
    elif len(f) == 2:
        rates[f[0]] = f[1]

# "comm pid time: event: fields"; comm may contain spaces.
send_re = re.compile(r"^\s*(.*?)\s+(?:\d+/)?(\d+)\s+([\d.]+):\s+fuse:fuse_request_send:\s+connection (\d+) req (\d+) opcode \d+ \((\w+)\)")
end_re = re.compile(r"^\s*(.*?)\s+\d+\s+([\d.]+):\s+fuse:fuse_request_end:\s+connection (\d+) req (\d+)")
pending = {}
done = []  # (send time, opcode, latency)
for line in open(trace_path):
    m = send_re.match(line)
    if m:
        if int(m.group(4)) == connection:
            pending[int(m.group(5))] = (float(m.group(3)), m.group(6), m.group(1), m.group(2))
        continue
    m = end_re.match(line)
    if m and int(m.group(3)) == connection:
        sent = pending.pop(int(m.group(4)), None)
        if sent:
            op = sent[1].replace("FUSE_", "")
            # Requests sent by other programs than the workload's are told apart.
            if sent[2] not in ("smallfiles", "fio", "bash", "kworker", "sync") and \
                    not sent[2].startswith("kworker"):
                op += "[" + sent[2] + " " + sent[3] + "]"
            done.append((sent[0], op, float(m.group(2)) - sent[0]))
if not marks:
    marks = [(name, float("-inf"), float("inf"))]
for phase, start, end in marks:
    ops = collections.defaultdict(list)
    for t, op, lat in done:
        if start <= t < end:
            ops[op].append(lat)
    per = units or 1.0
    wall = "" if end == float("inf") else f" wall {1e6 * (end - start) / per:.1f} us/unit,"
    rate = f" {rates[phase]}/s," if phase in rates else ""
    busy = sum(l for v in ops.values() for l in v)
    summary = ", ".join(
        f"{op} {len(v) / per:.2f} x {1e6 * sum(v) / len(v):.0f}us"
        for op, v in sorted(ops.items(), key=lambda kv: -len(kv[1])))
    print(f"{target:8} {phase:28}{rate}{wall} fuse {1e6 * busy / per:.1f} us/unit: {summary}")

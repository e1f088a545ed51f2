#!/usr/bin/env python3
"""Where the latency tail comes from, message by message.

usage: scripts/profile/tail.py OUT [STEP]

OUT is the work directory of a scripts/profile/w2api-profile.sh run with
GEN=indep: msglog.csv (per message: send time, and per instance the
deliveries and the largest latency), server-1.log and server-2.log (gctrace
lines with the wall-clock time they were printed), sample-1.jsonl and
sample-2.jsonl (per 100 ms: scheduling latencies, GC cycles and pauses).
STEP is the ladder step to look at (default: the last).

A message's fan-out window is [send time, send time + its largest latency].
For the slowest messages (the top 1 %, and every one over 2 × the median of
the per-message maxima) it tells which instance was late (one, or both: the
publish path before the fan-out), whether a GC cycle of that instance
overlapped the window, and the largest scheduling latency the instance's
runtime recorded in the 100 ms samples covering it; and, for comparison, how
often the same happens to messages that were not slow.
"""
import csv
import json
import os
import re
import statistics
import sys

GC_RE = re.compile(r"^(\d+\.\d+) gc (\d+) @([\d.]+)s \d+%: ([\d.]+)\+([\d.]+)\+([\d.]+) ms clock")


def gc_windows(path):
    """GC cycles as (start, end) wall-clock seconds: the line is printed at
    the end of the cycle, whose wall time is the sum of its three phases."""
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path):
        m = GC_RE.match(line)
        if m:
            end = float(m.group(1))
            dur = (float(m.group(4)) + float(m.group(5)) + float(m.group(6))) / 1000
            out.append((end - dur, end))
    return out


def samples(path):
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path):
        d = json.loads(line)
        out.append(d)
    return out


def overlaps(windows, a, b):
    return any(s <= b and e >= a for s, e in windows)


def max_sched(smp, a, b):
    """Largest scheduling latency (ms) in samples whose 100 ms interval
    touches [a, b]; also the largest GC pause."""
    ms, pause = 0.0, 0.0
    for d in smp:
        t = d["t"] / 1e9
        if t - 0.1 <= b and t >= a:
            ms = max(ms, d["maxSchedMs"])
            pause = max(pause, d["maxPauseMs"])
    return ms, pause


def main(out, step=None):
    rows = list(csv.DictReader(open(os.path.join(out, "msglog.csv"))))
    if step is None:
        step = max(int(r["step"]) for r in rows)
    rows = [r for r in rows if int(r["step"]) == int(step)]
    gcs = [gc_windows(os.path.join(out, f"server-{i}.log")) for i in (1, 2)]
    smp = [samples(os.path.join(out, f"sample-{i}.jsonl")) for i in (1, 2)]
    msgs = []
    for r in rows:
        sent = int(r["sent_unix_ns"]) / 1e9
        a, b = float(r["max_ms_a"]), float(r["max_ms_b"])
        msgs.append({"seq": int(r["seq"]), "sent": sent, "max": [a, b], "count": [int(r["count_a"]), int(r["count_b"])]})
    if not msgs:
        sys.exit("no messages in that step")
    maxima = sorted(max(m["max"]) for m in msgs)
    med = statistics.median(maxima)
    p99 = maxima[min(int(0.99 * len(maxima)), len(maxima) - 1)]
    thresh = min(p99, 2 * med)
    print(f"step {step}: {len(msgs)} messages; per-message largest latency: median {med:.1f} ms, "
          f"p90 {maxima[int(0.9 * len(maxima))]:.1f} ms, p99 {p99:.1f} ms, max {maxima[-1]:.1f} ms")
    print(f"slow = largest latency over {thresh:.1f} ms (min of p99 and 2 x median)\n")

    def classify(m):
        worst = max(m["max"])
        end = m["sent"] + worst / 1000
        late = [m["max"][i] > thresh for i in (0, 1)]
        gc = [overlaps(gcs[i], m["sent"], end) for i in (0, 1)]
        sched = [max_sched(smp[i], m["sent"], end) for i in (0, 1)]
        return late, gc, sched

    slow = [m for m in msgs if max(m["max"]) > thresh]
    fast = [m for m in msgs if max(m["max"]) <= thresh]

    def summary(group):
        n = len(group)
        if n == 0:
            return None
        both = one = gc_late = sched20 = sched5 = pause1 = 0
        for m in group:
            late, gc, sched = classify(m)
            if all(late):
                both += 1
            elif any(late):
                one += 1
            idx = [i for i in (0, 1) if late[i]] or [0, 1]
            if any(gc[i] for i in idx):
                gc_late += 1
            if any(sched[i][0] >= 20 for i in idx):
                sched20 += 1
            if any(sched[i][0] >= 5 for i in idx):
                sched5 += 1
            if any(sched[i][1] >= 1 for i in idx):
                pause1 += 1
        return n, both, one, gc_late, sched5, sched20, pause1

    print("| messages | n | late on both instances | on one | a GC cycle overlapped | sched latency >= 5 ms | >= 20 ms | GC pause >= 1 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, g in (("slow", slow), ("not slow", fast)):
        s = summary(g)
        if s:
            n = s[0]
            print(f"| {name} | {n} | " + " | ".join(f"{v} ({100 * v / n:.0f} %)" for v in s[1:]) + " |")
    print("\nslowest 15:")
    print("| seq | sent (s into step) | max ms A | max ms B | GC on A / B | sched max ms A / B | GC pause ms A / B |")
    print("| ---: | ---: | ---: | ---: | --- | --- | --- |")
    t0 = min(m["sent"] for m in msgs)
    for m in sorted(msgs, key=lambda m: -max(m["max"]))[:15]:
        late, gc, sched = classify(m)
        print(f"| {m['seq']} | {m['sent'] - t0:.2f} | {m['max'][0]:.1f} | {m['max'][1]:.1f} | "
              f"{'yes' if gc[0] else 'no'} / {'yes' if gc[1] else 'no'} | {sched[0][0]:.1f} / {sched[1][0]:.1f} | "
              f"{sched[0][1]:.2f} / {sched[1][1]:.2f} |")
    # How much of the time was covered by GC at all (the base rate).
    span = (max(m["sent"] for m in msgs) - t0) or 1
    for i in (0, 1):
        cover = sum(min(e, t0 + span) - max(s, t0) for s, e in gcs[i] if e >= t0 and s <= t0 + span)
        print(f"\ninstance {'AB'[i]}: {sum(1 for s, e in gcs[i] if e >= t0 and s <= t0 + span)} GC cycles in the step, "
              f"covering {100 * cover / span:.1f} % of its time", end="")
    print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)

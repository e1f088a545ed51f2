#!/usr/bin/env python3
"""Medians of several benchmark runs, as Markdown tables.

usage: scripts/bench-medians.py RUN_DIR [RUN_DIR ...]

Each RUN_DIR is the OUT directory of one scripts/bench-suite.sh run (it holds
<target>-W1.json, -W2.json and -W3.json) or of one scripts/bench-w2api.sh run
(<target>-W2API.json from `switchboard bench`, and <target>-W2API-indep.json
from the independent generator bench/indep when it ran), or of one
scripts/bench-transport.sh run (before-, after- and after-tls-W1/W2.json).
Every column of
every step is the median of that column over the runs, taken on its own;
warm-up steps are left out.
"""
import json
import os
import statistics
import sys

# The systems of bench-suite.sh and bench-w2api.sh runs, and the builds of
# bench-transport.sh runs (before/after the transport rewrite).
TARGETS = ("switchboard", "centrifugo", "before", "after", "after-tls")


def load(run, target, w):
    path = os.path.join(run, f"{target}-{w}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=3):
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


W2API_COLS = [
    ("accepted/s", lambda s: s.get("acceptedPerSec")),
    ("skipped", lambda s: s.get("missed", s.get("skipped"))),
    ("deliveries/s", lambda s: s["deliveredPerSec"]),
    ("lost", lambda s: s["lost"]),
    ("p50 ms", lambda s: s["latency"]["p50Ms"] if "latency" in s else s["P50"]),
    ("p90 ms", lambda s: s["latency"]["p90Ms"] if "latency" in s else s["P90"]),
    ("p99 ms", lambda s: s["latency"]["p99Ms"] if "latency" in s else s["P99"]),
    ("max ms", lambda s: s["latency"]["maxMs"] if "latency" in s else s["Max"]),
    ("publish p99 ms", lambda s: (s.get("publishLatency") or {}).get("p99Ms")),
    ("server cores", lambda s: s.get("serverCores")),
    ("deliveries/server core-s", lambda s: s.get("deliveriesPerCoreSecond")),
    ("incl. Redis", lambda s: s.get("deliveriesPerCoreSecondWithBroker")),
]


def w2api_table(runs, target, suffix):
    docs = [d for d in (load(r, target, "W2API" + suffix) for r in runs) if d]
    if not docs:
        return None
    # switchboard bench writes a Result; bench/indep a list of steps.
    step_lists = [d["steps"] if isinstance(d, dict) else d for d in docs]
    step_lists = [[s for s in steps if not s.get("warmup")] for steps in step_lists]
    rates = sorted({s["rate"] for steps in step_lists for s in steps})
    out = ["| rate msg/s | runs | " + " | ".join(c for c, _ in W2API_COLS) + " |",
           "| ---: | ---: |" + " ---: |" * len(W2API_COLS)]
    peaks, percore, percore_b = [], [], []
    for steps in step_lists:
        peaks.append(max((s["deliveredPerSec"] for s in steps), default=None))
        percore.append(max((s.get("deliveriesPerCoreSecond") or 0 for s in steps), default=None))
        percore_b.append(max((s.get("deliveriesPerCoreSecondWithBroker") or 0 for s in steps), default=None))
    for rate in rates:
        per = [next((s for s in steps if s["rate"] == rate), None) for steps in step_lists]
        per = [s for s in per if s]
        cells = [fmt(med([f(s) for s in per])) for _, f in W2API_COLS]
        out.append(f"| {rate:,} | {len(per)} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("per run: peak deliveries/s " + " / ".join(fmt(v) for v in peaks)
               + "; peak deliveries/server core-s " + " / ".join(fmt(v) for v in percore)
               + "; incl. Redis " + " / ".join(fmt(v) for v in percore_b)
               + f"; medians {fmt(med(peaks))}, {fmt(med(percore))}, {fmt(med(percore_b))}")
    return "\n".join(out)


def steps_table(runs, target, w):
    docs = [d for d in (load(r, target, w) for r in runs) if d]
    if not docs:
        return None
    rates = sorted({s["rate"] for d in docs for s in d["steps"] if not s.get("warmup")})
    cols = [
        ("deliveries/s", lambda s: s["deliveredPerSec"]),
        ("lost", lambda s: s["lost"]),
        ("p50 ms", lambda s: s["latency"]["p50Ms"]),
        ("p90 ms", lambda s: s["latency"]["p90Ms"]),
        ("p99 ms", lambda s: s["latency"]["p99Ms"]),
        ("max ms", lambda s: s["latency"]["maxMs"]),
        ("server cores", lambda s: s.get("serverCores")),
        ("deliveries/core-s", lambda s: s.get("deliveriesPerCoreSecond")),
        ("incl. broker", lambda s: s.get("deliveriesPerCoreSecondWithBroker")),
        ("bench cores", lambda s: s["benchCores"]),
        ("machine cores", lambda s: s["machineCores"]),
    ]
    out = ["| rate msg/s | runs | " + " | ".join(c for c, _ in cols) + " |",
           "| ---: | ---: |" + " ---: |" * len(cols)]
    for rate in rates:
        per = [next((s for s in d["steps"] if s["rate"] == rate and not s.get("warmup")), None) for d in docs]
        per = [s for s in per if s]
        cells = [fmt(med([f(s) for s in per])) for _, f in cols]
        out.append(f"| {rate:,} | {len(per)} | " + " | ".join(cells) + " |")
    summ = {k: [d["summary"].get(k) for d in docs] for k in ("peakDeliveredPerSec", "peakPerCoreSecond", "cleanRate")}
    out.append("")
    out.append("per run: peak deliveries/s " + " / ".join(fmt(v) for v in summ["peakDeliveredPerSec"])
               + "; peak deliveries/core-s " + " / ".join(fmt(v) for v in summ["peakPerCoreSecond"])
               + "; highest clean rate " + " / ".join(fmt(v) for v in summ["cleanRate"]) + " msg/s")
    return "\n".join(out)


def idle_line(runs, target):
    per, rates = [], []
    for r in runs:
        d = load(r, target, "W1")
        if not d:
            continue
        mem = d["memory"]
        per.append(sum(m["afterBytes"] - m["beforeBytes"] for m in mem) / sum(m["conns"] for m in mem) / 1024)
        rates.append(d["connect"]["perSecond"])
    if not per:
        return None
    return (f"{fmt(med(per))} KiB per connection (runs: " + " / ".join(f"{v:.1f}" for v in per)
            + f"), connect rate {fmt(med(rates))} conn/s")


def main(runs):
    for t in TARGETS:
        line = idle_line(runs, t)
        if line:
            print(f"W1 {t}: {line}\n")
    for w, name in (("W2", "fanout"), ("W3", "rooms")):
        for t in TARGETS:
            table = steps_table(runs, t, w)
            if table:
                print(f"{w} {name}, {t}, medians of {len(runs)} runs:\n\n{table}\n")
    for suffix, name in (("", "switchboard bench"), ("-indep", "bench/indep")):
        for t in TARGETS:
            table = w2api_table(runs, t, suffix)
            if table:
                print(f"W2-API, {t}, {name}, medians of {len(runs)} runs:\n\n{table}\n")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])

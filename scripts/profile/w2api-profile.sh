#!/usr/bin/env bash
# Profiles two `switchboard serve` instances under the W2-API workload (see
# scripts/bench-w2api.sh) at one steady rate: a profiling build of the server
# (scripts/profile/build.sh), GODEBUG=gctrace=1 with wall-clock timestamps,
# a 100 ms sampler of scheduling latencies and GC per instance, and, at
# PROFILE_AT seconds into the run, a CPU profile and then a runtime trace of
# instance 1, runtime/metrics and Redis INFO (commandstats, cpu) around them.
# Prints the generator's table, the top of the CPU profile, and tracestat's
# breakdown of API requests. Everything stays in OUT.
#
#   RATE=800 DUR=40s scripts/profile/w2api-profile.sh        # publishes starving
#   RATE=25 DUR=60s TRACE_SECONDS=10 scripts/profile/w2api-profile.sh   # the p99 tail
#
# Knobs: RATE (800), DUR (40s, after a 6 s warm-up at 10 msg/s), RECEIVER
# (scan), API_WORKERS (64), GEN (bench, or indep: the independent generator,
# which also writes msglog.csv, one line per message, for
# scripts/profile/tail.py), PROCS (1: publishers and receivers in one
# generator process; 2: receivers in two child processes), PROFILE_AT (14: seconds after the generator
# starts), CPU_SECONDS (8), TRACE_SECONDS (3), SERVE_ENV_STR (more
# environment for the instances, e.g. "GOGC=400"), OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbprof.XXXXXX)}
RATE=${RATE:-800}
DUR=${DUR:-40s}
RECEIVER=${RECEIVER:-scan}
API_WORKERS=${API_WORKERS:-64}
PROFILE_AT=${PROFILE_AT:-14}
CPU_SECONDS=${CPU_SECONDS:-8}
TRACE_SECONDS=${TRACE_SECONDS:-3}
read -r -a SERVE_ENV <<<"${SERVE_ENV_STR:-}"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
echo "w2api-profile: work directory $OUT" >&2
scripts/profile/build.sh "$OUT/switchboard-prof"
(cd scripts/profile/tracestat && go build -o "$OUT/tracestat" .)

stamp() { python3 -u -c 'import sys,time
for l in iter(sys.stdin.readline, ""): print(f"{time.time():.3f} {l}", end="", flush=True)'; }

start_redis
P1=$(freeport); P2=$(freeport); D1=$(freeport); D2=$(freeport)
i=0
for p in "$P1" "$P2"; do
	i=$((i + 1))
	d=$D1; [ $i = 2 ] && d=$D2
	SWITCHBOARD_DEBUG_LISTEN=127.0.0.1:$d SWITCHBOARD_DEBUG_SAMPLE=$OUT/sample-$i.jsonl GODEBUG=gctrace=1 \
		env "${SERVE_ENV[@]}" "$OUT/switchboard-prof" serve --listen "127.0.0.1:$p" --redis "redis://127.0.0.1:$REDIS_PORT" \
		--jwt-secret "$SECRET" --api-key "$APIKEY" --log-level error 2> >(stamp >"$OUT/server-$i.log") &
	PIDS+=($!)
done
S1=${PIDS[-2]}; S2=${PIDS[-1]}
waitport "$P1"; waitport "$P2"; sleep 1
echo "servers $S1 $S2 (debug 127.0.0.1:$D1, :$D2), redis $REDIS_PID on $REDIS_PORT" >&2

if [ "${GEN:-bench}" = indep ]; then
	go build -o "$OUT/indep" ./bench/indep
	"$OUT/indep" --url "ws://127.0.0.1:$P1/ws,ws://127.0.0.1:$P2/ws" --jwt-secret "$SECRET" --api-key "$APIKEY" \
		--members 2000 --workers "$API_WORKERS" --warmup 6s --ladder "$RATE" --step "$DUR" --server-pids "$S1,$S2" \
		--redis-pid "$REDIS_PID" --json "$OUT/indep.json" --msglog "$OUT/msglog.csv" >"$OUT/bench.md" 2>"$OUT/bench.err" &
else
	"$BIN" bench fanout --url "ws://127.0.0.1:$P1/ws,ws://127.0.0.1:$P2/ws" --jwt-secret "$SECRET" --api-key "$APIKEY" \
		--rooms 1 --members 2000 --payload 100 --receiver "$RECEIVER" --api-workers "$API_WORKERS" --warmup 6s \
		--ladder "$RATE" --duration "$DUR" --continuous --full-ladder --procs "${PROCS:-1}" --server-pids "$S1,$S2" \
		--broker-pids "$REDIS_PID" --json-out "$OUT/bench.json" --markdown >"$OUT/bench.md" 2>"$OUT/bench.err" &
fi
GEN=$!
sleep "$PROFILE_AT"
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
rcli CONFIG RESETSTAT >/dev/null
cat "/proc/$REDIS_PID/stat" >"$OUT/redis-stat-0"
curl -s "http://127.0.0.1:$D1/debug/metrics" >"$OUT/metrics-0.json"
curl -s -o "$OUT/allocs-0.pprof" "http://127.0.0.1:$D1/debug/pprof/allocs"
curl -s -o "$OUT/cpu.pprof" "http://127.0.0.1:$D1/debug/pprof/profile?seconds=$CPU_SECONDS"
curl -s -o "$OUT/allocs-1.pprof" "http://127.0.0.1:$D1/debug/pprof/allocs"
curl -s -o "$OUT/trace.out" "http://127.0.0.1:$D1/debug/pprof/trace?seconds=$TRACE_SECONDS"
curl -s "http://127.0.0.1:$D1/debug/metrics" >"$OUT/metrics-1.json"
cat "/proc/$REDIS_PID/stat" >"$OUT/redis-stat-1"
rcli INFO commandstats >"$OUT/redis-commandstats.txt"
rcli INFO cpu >"$OUT/redis-cpu.txt"
wait "$GEN" || true
# Closes by code and the write paths, to tell a slow-consumer close from a
# heartbeat timeout when the generator reports dropped connections.
for p in "$P1" "$P2"; do
	curl -s "http://127.0.0.1:$p/metrics" | grep -E '^switchboard_(session_closes|socket_writes|send_queue_.*overflows)' || true
done >"$OUT/server-metrics.txt"
cleanup

cat "$OUT/bench.md"
echo "--- server closes and writes (both instances) ---"
cat "$OUT/server-metrics.txt"
echo "--- CPU profile of instance 1 (top 25, flat) ---"
go tool pprof -top -nodecount=25 "$OUT/cpu.pprof" 2>/dev/null | sed -n '1,32p'
echo "--- allocations of instance 1 during the CPU profile (alloc_space, top 20 cumulative) ---"
go tool pprof -sample_index=alloc_space -top -cum -nodecount=20 -base "$OUT/allocs-0.pprof" "$OUT/allocs-1.pprof" 2>/dev/null | sed -n '5,30p'
echo "--- where API requests spend their time (instance 1, runtime trace) ---"
"$OUT/tracestat" "$OUT/trace.out"
echo "--- Redis, during the profile window ---"
grep -E 'cmdstat_(evalsha|eval|fcall|publish|set|hset|ping)' "$OUT/redis-commandstats.txt" || true
python3 - "$OUT" "$CPU_SECONDS" "$TRACE_SECONDS" <<'PY'
import json, sys
out, a, b = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def cpu(p):
    f = open(p).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / 100
print(f"redis-server CPU: {(cpu(out+'/redis-stat-1')-cpu(out+'/redis-stat-0'))/(a+b):.2f} cores")
m0, m1 = json.load(open(out+"/metrics-0.json")), json.load(open(out+"/metrics-1.json"))
h0, h1 = m0["/sched/latencies:seconds"], m1["/sched/latencies:seconds"]
counts = [c1 - c0 for c0, c1 in zip(h0["counts"], h1["counts"])]
total = sum(counts)
def q(p):
    s = 0
    for i, c in enumerate(counts):
        s += c
        if s >= p * total:
            return h1["buckets"][i + 1] * 1000
print(f"instance 1 scheduling latency over the window: {total} waits, p50 {q(.5):.3f} ms, p90 {q(.9):.3f} ms, p99 {q(.99):.3f} ms, p99.9 {q(.999):.3f} ms")
gc0, gc1 = m0["/cpu/classes/gc/total:cpu-seconds"], m1["/cpu/classes/gc/total:cpu-seconds"]
t0, t1 = m0["/cpu/classes/total:cpu-seconds"], m1["/cpu/classes/total:cpu-seconds"]
print(f"instance 1 GC: {m1['/gc/cycles/total:gc-cycles']-m0['/gc/cycles/total:gc-cycles']} cycles, GC CPU share (runtime estimate) {100*(gc1-gc0)/max(t1-t0,1e-9):.1f} %")
PY

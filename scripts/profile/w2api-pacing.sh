#!/usr/bin/env bash
# Shows when write pacing (transport/pace.go) is on during the W2-API ladder
# (scripts/bench-w2api.sh, Switchboard only): both instances'
# switchboard_write_pacing_seconds, deliveries and socket writes are sampled
# every 100 ms while `switchboard bench fanout` runs, and each step gets a
# line: the share of samples with pacing on, the longest interval seen, and
# the room messages per socket write.
#
#   scripts/profile/w2api-pacing.sh
#   LADDER=25 STEP=20s scripts/profile/w2api-pacing.sh
#
# Knobs: LADDER (25,100,200,400,800,1600), STEP (6s), WARMUP (6s),
# SERVE_FLAGS_STR (e.g. "--max-write-delay 0"), OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbpacing.XXXXXX)}
LADDER=${LADDER:-25,100,200,400,800,1600}
STEP=${STEP:-6s}
WARMUP=${WARMUP:-6s}
SERVE_ENV=()
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
echo "w2api-pacing: work directory $OUT" >&2
start_servers switchboard

# sample prints "time instance pacing delivered writes" for each instance.
sample() {
	local i=0 p
	for p in "$P1" "$P2"; do
		i=$((i + 1))
		curl -s "http://127.0.0.1:$p/metrics" | awk -v t="$(date +%s.%N)" -v i=$i '
			/^switchboard_write_pacing_seconds /{pace=$2}
			/^switchboard_messages_delivered_total /{del=$2}
			/^switchboard_socket_writes_total/{w+=$2}
			END{printf "%s %d %s %s %s\n", t, i, pace, del, w}'
	done
}
"$BIN" bench fanout --url "$URLS" "${AUTH[@]}" --rooms 1 --members 2000 --payload 100 --receiver scan \
	--api-workers 64 --warmup "$WARMUP" --warmup-rate 10 --ladder "$LADDER" --duration "$STEP" --continuous \
	--full-ladder --procs 1 --server-pids "$S1,$S2" --broker-pids "$REDIS_PID" --markdown >"$OUT/bench.md" 2>"$OUT/bench.err" &
GEN=$!
START=$(date +%s.%N)
while kill -0 "$GEN" 2>/dev/null; do
	sample >>"$OUT/samples.txt"
	sleep 0.1
done
wait "$GEN" || true
grep -v '^\[' "$OUT/bench.md"
python3 - "$OUT/samples.txt" "$START" "$WARMUP" "$STEP" "$LADDER" <<'PY'
import sys
path, start, warmup, step, ladder = sys.argv[1:]
dur = lambda s: float(s[:-2]) / 1000 if s.endswith("ms") else float(s[:-1])
start, warmup, step = float(start), dur(warmup), dur(step)
rates = ["warm-up"] + ladder.split(",")
rows = {}
for line in open(path):
    t, inst, pace, delivered, writes = line.split()
    t = float(t) - start
    k = 0 if t < warmup else 1 + int((t - warmup) // step)
    if k >= len(rates):
        continue
    rows.setdefault(k, []).append((inst, float(pace), float(delivered), float(writes)))
print("| rate msg/s | samples | pacing on | longest interval ms | messages per write |")
print("| ---: | ---: | ---: | ---: | ---: |")
for k in sorted(rows):
    r = rows[k]
    on = sum(1 for x in r if x[1] > 0)
    first, last = {}, {}
    for inst, _, d, w in r:
        first.setdefault(inst, (d, w))
        last[inst] = (d, w)
    d = sum(last[i][0] - first[i][0] for i in last)
    w = sum(last[i][1] - first[i][1] for i in last)
    mpw = f"{d / w:.1f}" if w else "-"
    print(f"| {rates[k]} | {len(r)} | {100 * on / len(r):.0f} % | {1000 * max(x[1] for x in r):.0f} | {mpw} |")
PY

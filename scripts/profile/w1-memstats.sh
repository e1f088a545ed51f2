#!/usr/bin/env bash
# Splits W1's resident memory per idle connection into what the Go runtime
# holds it for: two profiling instances (scripts/profile/build.sh) on one
# Redis, `switchboard bench idle` with CONNS connections held for AT + 65 s,
# and the runtime's MemStats of instance 1 (from /debug/pprof/heap?debug=1)
# before the connections, AT seconds after they start, and once more 60 s
# later. Prints the growth of each class per connection.
#
#   scripts/profile/w1-memstats.sh
#
# Knobs: CONNS (15000, over both instances), AT (12), TLS (1: wss://),
# SERVE_ENV_STR (more environment for the instances, e.g. "GOGC=100"), OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbmem.XXXXXX)}
CONNS=${CONNS:-15000}
AT=${AT:-12}
read -r -a SERVE_ENV <<<"${SERVE_ENV_STR:-}"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
echo "w1-memstats: work directory $OUT" >&2
scripts/profile/build.sh "$OUT/switchboard-prof"

start_redis
P1=$(freeport); P2=$(freeport); D1=$(freeport)
tls_args
for p in "$P1" "$P2"; do
	debug=()
	[ "$p" = "$P1" ] && debug=(SWITCHBOARD_DEBUG_LISTEN=127.0.0.1:$D1) # instance 1 is the one measured
	env "${debug[@]}" "${SERVE_ENV[@]}" "$OUT/switchboard-prof" serve --listen "127.0.0.1:$p" \
		--redis "redis://127.0.0.1:$REDIS_PORT" --jwt-secret "$SECRET" --api-key "$APIKEY" --log-level error "${TLS_FLAGS[@]}" &
	PIDS+=($!)
done
S1=${PIDS[-2]}; S2=${PIDS[-1]}
waitport "$P1"; waitport "$P2"; waitport "$D1"; sleep 1

# snap NAME saves instance 1's MemStats and VmRSS (bytes) as OUT/NAME.txt.
snap() {
	curl -fsS "http://127.0.0.1:$D1/debug/pprof/heap?debug=1" | sed -n 's/^# \([A-Za-z]*\) = \([0-9][0-9]*\).*/\1 \2/p' >"$OUT/$1.txt"
	echo "VmRSS $(($(awk '/^VmRSS/ {print $2}' "/proc/$S1/status") * 1024))" >>"$OUT/$1.txt"
}
snap before
"$BIN" bench idle --target switchboard --url "$SCHEME://127.0.0.1:$P1/ws,$SCHEME://127.0.0.1:$P2/ws" --jwt-secret "$SECRET" \
	--api-key "$APIKEY" --conns "$CONNS" --procs 2 --duration "$((AT + 65))s" --server-pids "$S1,$S2" >"$OUT/bench.txt" 2>&1 &
GEN=$!
sleep "$AT"; snap held
sleep 60; snap later
wait "$GEN"
grep -v "^\[" "$OUT/bench.txt"

python3 - "$OUT" "$((CONNS / 2))" <<'EOF'
import sys
out, conns = sys.argv[1], int(sys.argv[2])
def load(name):
    return {k: int(v) for k, v in (l.split() for l in open(f"{out}/{name}.txt"))}
b, h, l = load("before"), load("held"), load("later")
def classes(m):
    return {
        "RSS (VmRSS)": m["VmRSS"],
        "heap spans in use (live, garbage not yet collected, part-filled spans)": m["HeapInuse"],
        "heap freed, not returned to the OS": m["HeapIdle"] - m["HeapReleased"],
        "off-heap runtime structures (OtherSys: netpoll descriptors, ...)": m["OtherSys"],
        "GC metadata (GCSys)": m["GCSys"],
        "span structures (MSpan in use)": m["MSpan"],
        "goroutine stacks (Stack in use)": m["Stack"],
        "live and unswept heap objects (HeapAlloc)": m["HeapAlloc"],
    }
cb, ch, cl = classes(b), classes(h), classes(l)
print(f"\ninstance 1, {conns} connections, growth per connection since before the connections:")
print(f"{'':72} {'held':>9} {'60 s later':>11}")
for k in cb:
    print(f"{k:72} {(ch[k] - cb[k]) / conns / 1024:7.2f} KiB {(cl[k] - cb[k]) / conns / 1024:7.2f} KiB")
EOF

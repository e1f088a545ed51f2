#!/usr/bin/env bash
# Counts W1's live heap per idle connection exactly, by allocation site: one
# profiling instance (scripts/profile/build.sh) on a fresh Redis with every
# allocation recorded (SWITCHBOARD_DEBUG_MEMPROFILERATE=1), `switchboard
# bench idle` with CONNS connections, and a heap profile taken after two
# forced collections (?gc=1) before the connections and AT seconds after
# they start. Prints the live heap per connection and the allocation sites
# that hold it.
#
#   scripts/profile/w1-heap.sh
#   go tool pprof -sample_index=inuse_space -base OUT/before.pb.gz OUT/switchboard-prof OUT/held.pb.gz
#
# AT is past every session's first heartbeat ping (each comes within the
# 25 s interval after its hello), when the connections have settled into
# what they hold while idle.
#
# Knobs: CONNS (7500), AT (35), TOP (25 sites), TLS (1: wss://), OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbheap.XXXXXX)}
CONNS=${CONNS:-7500}
AT=${AT:-35}
TOP=${TOP:-25}
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
echo "w1-heap: work directory $OUT" >&2
scripts/profile/build.sh "$OUT/switchboard-prof"

start_redis
P1=$(freeport); D1=$(freeport)
tls_args
SWITCHBOARD_DEBUG_MEMPROFILERATE=1 SWITCHBOARD_DEBUG_LISTEN=127.0.0.1:$D1 "$OUT/switchboard-prof" serve \
	--listen "127.0.0.1:$P1" --redis "redis://127.0.0.1:$REDIS_PORT" --jwt-secret "$SECRET" \
	--api-key "$APIKEY" --log-level error "${TLS_FLAGS[@]}" &
PIDS+=($!)
S1=$!
waitport "$P1"; waitport "$D1"; sleep 1

# heap PROFILE saves a heap profile after two collections: buffers a sync.Pool
# held survive the first one (in its victim cache), and are not the
# connections' own.
heap() {
	curl -fsS -o /dev/null "http://127.0.0.1:$D1/debug/pprof/heap?gc=1"
	curl -fsS -o "$OUT/$1.pb.gz" "http://127.0.0.1:$D1/debug/pprof/heap?gc=1"
}
heap before
"$BIN" bench idle --target switchboard --url "$SCHEME://127.0.0.1:$P1/ws" --jwt-secret "$SECRET" \
	--api-key "$APIKEY" --conns "$CONNS" --procs 2 --duration "$((AT + 10))s" --server-pids "$S1" >"$OUT/bench.txt" 2>&1 &
GEN=$!
sleep "$AT"
heap held
wait "$GEN"
grep -v "^\[" "$OUT/bench.txt"

# The growth of the live heap, by the function that allocated it.
go tool pprof -sample_index=inuse_space -base "$OUT/before.pb.gz" -top -nodecount=200 \
	"$OUT/switchboard-prof" "$OUT/held.pb.gz" >"$OUT/top.txt" 2>/dev/null
python3 - "$OUT/top.txt" "$CONNS" "$TOP" <<'EOF'
import re, sys
path, conns, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
units = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3}
def size(s):
    m = re.fullmatch(r"(-?[\d.]+)([kMG]?B)", s)
    return float(m.group(1)) * units[m.group(2)]
total, rows = None, []
for line in open(path):
    m = re.search(r"of ([-\d.]+[kMG]?B) total", line)
    if m:
        total = size(m.group(1))
    f = line.split()
    if len(f) >= 6 and f[1].endswith("%") and re.fullmatch(r"-?[\d.]+[kMG]?B", f[0]):
        rows.append((size(f[0]), " ".join(f[5:])))
print(f"\n{conns} connections: live heap {total / conns / 1024:.2f} KiB per connection")
print("allocated by (flat), bytes per connection:")
for b, fn in sorted(rows, key=lambda r: -r[0])[:top]:
    print(f"  {b / conns:7.1f}  {fn}")
EOF

#!/usr/bin/env bash
# Where an instance's CPU goes, kernel included, during W2-API at one rate
# (scripts/bench-w2api.sh's setup with bench/indep): two instances on a fresh
# Redis, 2,000 receivers, RATE msg/s for 30 s after indep's warm-up. On
# instance 1, `perf stat` counts system calls and context switches for 10 s,
# then `perf record -g` samples 15 s. Prints the share of the kernel, of the
# write system call and, inside it, of the receiving side's TCP input (which
# loopback runs in the sender's system call), of the Go runtime's sysmon, and
# the top symbols.
#
#   RATE=25 scripts/profile/w2api-perf.sh
#   perf report -i OUT/perf.data --no-children --sort sym
#
# Needs perf (apt-get install linux-perf) and root. Knobs: RATE (25), OUT,
# SERVE_BIN (another build of the server), TARGET (switchboard; centrifugo
# with CENTRIFUGO naming its binary, to count the same for it).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbperf.XXXXXX)}
RATE=${RATE:-25}
TARGET=${TARGET:-switchboard}
SERVE_ENV=()
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
echo "w2api-perf: work directory $OUT" >&2
command -v perf >/dev/null || { echo "w2api-perf: needs perf (apt-get install linux-perf)" >&2; exit 1; }
go build -o "$OUT/indep" ./bench/indep
start_servers "$TARGET"
"$OUT/indep" --target "$TARGET" --url "$URLS" "${AUTH[@]}" --members 2000 --workers 64 \
	--warmup 6s --warmup-rate 10 --ladder "$RATE" --step 30s \
	--server-pids "$S1,$S2" --redis-pid "$REDIS_PID" >"$OUT/indep.txt" 2>&1 &
GEN=$!
sleep 9
perf stat -e 'syscalls:sys_enter_write,syscalls:sys_enter_nanosleep,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_pwait,context-switches' \
	-p "$S1" -- sleep 10 2>"$OUT/stat.txt"
perf record -F 2999 -g -o "$OUT/perf.data" -p "$S1" -- sleep 15 2>"$OUT/record.txt"
wait "$GEN"
grep -E "^\| $RATE " "$OUT/indep.txt" | head -1
echo
echo "instance 1, system calls and context switches a second (10 s):"
awk '/syscalls:|context-switches/ {printf "  %-32s %9.0f\n", $2, $1 / 10}' "$OUT/stat.txt"
echo
echo "instance 1, share of its CPU samples (15 s):"
perf report -i "$OUT/perf.data" --no-children --sort dso -g none 2>/dev/null | grep '%' | head -3 | sed 's/^/  /'
perf report -i "$OUT/perf.data" --children --sort sym -g none 2>/dev/null |
	grep -E '\] (ksys_write|tcp_sendmsg|net_rx_action|tcp_v4_rcv|runtime\.sysmon|__schedule)$' |
	awk '{printf "  %-8s with callees: %s\n", $1, $NF}'
echo
echo "top symbols (self):"
perf report -i "$OUT/perf.data" --no-children --sort sym -g none 2>/dev/null | grep '%' | head -15 | sed 's/^/  /'

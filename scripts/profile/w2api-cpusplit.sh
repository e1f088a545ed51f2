#!/usr/bin/env bash
# The user and kernel CPU of a delivery, for Switchboard and Centrifugo side
# by side, at one W2-API rate held for a long step (scripts/bench-w2api.sh's
# setup with bench/indep): two instances on a fresh Redis per system, 2,000
# receivers, a 6 s warm-up at 10 msg/s, then RATE msg/s for STEP. From the
# end of the warm-up (as indep reports it) it reads both instances' utime and
# stime from /proc every 5 s, and prints each system's p50 / p99 / max
# (indep's), its server cores every 5 s, and its user and system microseconds
# per delivery over the step.
#
#   CENTRIFUGO=/tmp/centrifugo/centrifugo scripts/profile/w2api-cpusplit.sh
#   SERVER_CPUS=0 GEN_CPUS=1 CENTRIFUGO=… scripts/profile/w2api-cpusplit.sh   # generator on a core of its own
#
# Knobs: RATE (25), STEP (30, seconds), RUNS (1: each run does both systems),
# SERVER_CPUS and GEN_CPUS (see scripts/bench-lib.sh), OUT, SERVE_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbsplit.XXXXXX)}
RATE=${RATE:-25}
STEP=${STEP:-30}
RUNS=${RUNS:-1}
SERVE_ENV=()
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
echo "w2api-cpusplit: work directory $OUT" >&2
go build -o "$OUT/indep" ./bench/indep
TARGETS=(switchboard)
if [ -n "${CENTRIFUGO:-}" ]; then TARGETS+=(centrifugo); fi
TICK=$(getconf CLK_TCK)

# ticks prints the user and system clock ticks of both instances.
ticks() { awk '{u += $14; s += $15} END {print u, s}' "/proc/$S1/stat" "/proc/$S2/stat"; }

echo "W2-API at $RATE msg/s for ${STEP}s, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)${SERVER_CPUS:+, servers and Redis on CPUs $SERVER_CPUS}${GEN_CPUS:+, generator on CPUs $GEN_CPUS}"
echo
echo "| run | system | deliveries/s | p50 ms | p99 ms | max ms | server cores, every 5 s | user µs / delivery | system µs / delivery |"
echo "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
for run in $(seq "$RUNS"); do
	for t in "${TARGETS[@]}"; do
		start_servers "$t"
		"${PIN_GEN[@]}" "$OUT/indep" --target "$t" --url "$URLS" "${AUTH[@]}" --members 2000 --workers 64 \
			--warmup 6s --warmup-rate 10 --ladder "$RATE" --step "${STEP}s" \
			--server-pids "$S1,$S2" --redis-pid "$REDIS_PID" >"$OUT/$t-$run.txt" 2>&1 &
		GEN=$!
		# indep names each step as it ends: the warm-up's line starts the window.
		until grep -q "^indep: step 0 " "$OUT/$t-$run.txt"; do
			kill -0 "$GEN" 2>/dev/null || { cat "$OUT/$t-$run.txt" >&2; exit 1; }
			sleep 0.05
		done
		read -r u0 s0 < <(ticks)
		ua=$u0 sa=$s0 series=()
		for _ in $(seq $((STEP / 5))); do
			sleep 5
			read -r ub sb < <(ticks)
			series+=("$(awk -v d=$((ub + sb - ua - sa)) -v t="$TICK" 'BEGIN {printf "%.2f", d / t / 5}')")
			ua=$ub sa=$sb
		done
		wait "$GEN"
		# indep's row for the rate: | rate | skipped | accepted/s | failed | deliveries/s | lost | p50 | p90 | p99 | max | …
		row=$(grep -E "^\| $RATE " "$OUT/$t-$run.txt" | head -1)
		read -r dps p50 p99 mx < <(awk -F'|' '{gsub(/ /, ""); print $6, $8, $10, $11}' <<<"$row")
		awk -v run="$run" -v t="$t" -v dps="$dps" -v p50="$p50" -v p99="$p99" -v mx="$mx" -v series="${series[*]}" \
			-v u=$((ua - u0)) -v s=$((sa - s0)) -v tick="$TICK" -v secs=$((STEP / 5 * 5)) 'BEGIN {
			n = dps * secs
			printf "| %s | %s | %d | %s | %s | %s | %s | %.1f | %.1f |\n", run, t, dps, p50, p99, mx, series, u / tick / n * 1e6, s / tick / n * 1e6
		}'
		cleanup
	done
done

#!/usr/bin/env bash
# The standard `switchboard bench` suite (issue 6): W1 idle, W2 fanout, W3 rooms
# against two Switchboard instances sharing one throwaway redis-server, and,
# when CENTRIFUGO names a Centrifugo v6 binary, the same workloads against two
# Centrifugo nodes sharing a Redis (config: bench/peers/centrifugo.json).
# Everything listens on 127.0.0.1 only. The Markdown tables replace the block
# between the bench-suite markers in BENCHMARKS.md (appended when missing).
#
#   make bench                                         # Switchboard only
#   CENTRIFUGO=/tmp/centrifugo/centrifugo make bench
#
# Knobs (environment): STEP (ladder step length, default 5s), W1_CONNS (15000),
# W2_LADDER (10,25,50,100,200,400,800), W3_CONNS (10000), W3_LADDER
# (500,1000,2000,4000,8000,16000), PROCS (2), OUT (work directory), NO_WRITE=1 (print
# the tables, leave BENCHMARKS.md alone). Each result is also kept as JSON in
# OUT (<target>-W1.json …), for medians over several runs.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbbench.XXXXXX)}
STEP=${STEP:-5s}
PROCS=${PROCS:-2}
W1_CONNS=${W1_CONNS:-15000}
W2_LADDER=${W2_LADDER:-10,25,50,100,200,400,800}
W3_CONNS=${W3_CONNS:-10000}
W3_LADDER=${W3_LADDER:-1000,2000,4000,8000,12000,16000,20000}
SERVE_ENV=()
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
echo "bench-suite: work directory $OUT" >&2

# run W TARGET runs workload W (W1, W2 or W3) against TARGET on fresh servers.
run() {
	local w=$1 t=$2 md=$OUT/$2.md
	start_servers "$t"
	case $w in
	W1)
		echo "\$ switchboard bench idle --target $t --url $URLS ${AUTH[*]} --conns $W1_CONNS --procs $PROCS --duration 5s --server-pids <servers>" >>"$md.cmds"
		"$BIN" bench idle --target "$t" --url "$URLS" "${AUTH[@]}" --conns "$W1_CONNS" --procs "$PROCS" \
			--duration 5s --server-pids "$S1,$S2" --label "W1 $t" --json-out "$OUT/$t-W1.json" --markdown >>"$md"
		;;
	W2)
		echo "\$ switchboard bench fanout --target $t --url $URLS ${AUTH[*]} --rooms 1 --members 2000 --ladder $W2_LADDER --payload 100 --procs $PROCS --duration $STEP --server-pids <servers> --broker-pids <redis>" >>"$md.cmds"
		"$BIN" bench fanout --target "$t" --url "$URLS" "${AUTH[@]}" --rooms 1 --members 2000 --ladder "$W2_LADDER" \
			--payload 100 --procs "$PROCS" --duration "$STEP" --server-pids "$S1,$S2" --broker-pids "$REDIS_PID" --label "W2 $t" \
			--json-out "$OUT/$t-W2.json" --markdown >>"$md"
		;;
	W3)
		echo "\$ switchboard bench rooms --target $t --url $URLS ${AUTH[*]} --conns $W3_CONNS --ladder $W3_LADDER --payload 100 --procs $PROCS --duration $STEP --server-pids <servers> --broker-pids <redis>" >>"$md.cmds"
		"$BIN" bench rooms --target "$t" --url "$URLS" "${AUTH[@]}" --conns "$W3_CONNS" --ladder "$W3_LADDER" \
			--payload 100 --procs "$PROCS" --duration "$STEP" --server-pids "$S1,$S2" --broker-pids "$REDIS_PID" --label "W3 $t" \
			--json-out "$OUT/$t-W3.json" --markdown >>"$md"
		;;
	esac
	cleanup
}

TARGETS=(switchboard)
if [ -n "${CENTRIFUGO:-}" ]; then
	TARGETS+=(centrifugo)
fi
for t in "${TARGETS[@]}"; do : >"$OUT/$t.md"; : >"$OUT/$t.md.cmds"; done
# Workload by workload, the targets back to back, so that both see the
# same machine (other work on it shows in the "machine cores" column).
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for w in W1 W2 W3; do
	for t in "${TARGETS[@]}"; do run "$w" "$t"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . ':!BENCHMARKS.md' 2>/dev/null || COMMIT="$COMMIT+uncommitted changes"

BLOCK=$OUT/block.md
{
	echo "<!-- bench-suite:begin (written by scripts/bench-suite.sh; do not edit by hand) -->"
	echo
	echo "Latest \`make bench\` run, $(date -u +%Y-%m-%d), commit $COMMIT, $(nproc) cores, steps of $STEP,"
	echo "one run each; load average $LOAD_BEFORE before, $LOAD_AFTER after:"
	echo
	for t in "${TARGETS[@]}"; do
		echo '```'
		cat "$OUT/$t.md.cmds"
		echo '```'
		echo
		cat "$OUT/$t.md"
	done
	echo "<!-- bench-suite:end -->"
} >"$BLOCK"

if [ -n "${NO_WRITE:-}" ]; then
	cat "$BLOCK"
	exit 0
fi
if grep -q '<!-- bench-suite:begin' BENCHMARKS.md; then
	awk -v block="$BLOCK" '
		/<!-- bench-suite:begin/ { while ((getline line < block) > 0) print line; skip = 1; next }
		/<!-- bench-suite:end -->/ { skip = 0; next }
		!skip { print }
	' BENCHMARKS.md >"$OUT/BENCHMARKS.md"
	cp "$OUT/BENCHMARKS.md" BENCHMARKS.md
else
	{ echo; cat "$BLOCK"; } >>BENCHMARKS.md
fi
echo "bench-suite: BENCHMARKS.md updated" >&2

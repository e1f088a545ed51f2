#!/usr/bin/env bash
# Before/after table of the transport rewrite (issue 11): the same load
# generator (this checkout's `switchboard bench`) against two instances of
# the server built from BEFORE (default c33ea3a, the last commit before
# package transport) and of this checkout, on plain TCP, and this checkout
# over TLS (wss://; the server before had no TLS). Workload by workload, the
# builds back to back, fresh instances and a fresh redis-server per run:
#
#   W1  idle: W1_CONNS connections (each in its inbox and one shared room),
#       server RSS after − before per connection
#   W2  fan-out: one room of 2,000 members, API publishes, W2_LADDER
#
#   OUT=/tmp/trA scripts/bench-transport.sh      # and B, C
#   scripts/bench-medians.py /tmp/trA /tmp/trB /tmp/trC
#
# Knobs (environment): BEFORE (commit), W1_CONNS (15000), W2_LADDER
# (10,25,50,100,200,400,800), STEP (5s), PROCS (2), OUT (work directory).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbtransport.XXXXXX)}
BEFORE=${BEFORE:-c33ea3a}
STEP=${STEP:-5s}
PROCS=${PROCS:-2}
W1_CONNS=${W1_CONNS:-15000}
W2_LADDER=${W2_LADDER:-10,25,50,100,200,400,800}
SERVE_ENV=()
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
AFTER_BIN=$BIN
echo "bench-transport: work directory $OUT" >&2

BEFORE_BIN=$OUT/switchboard-before
if [ ! -x "$BEFORE_BIN" ]; then
	src=$(mktemp -d /tmp/sbbefore.XXXXXX)
	git archive "$BEFORE" | tar -x -C "$src"
	(cd "$src" && go build -o "$BEFORE_BIN" ./cmd/switchboard)
	rm -rf "$src"
fi

# run W BUILD runs workload W against two instances of BUILD (before,
# after or after-tls) and keeps the result as $OUT/<BUILD>-<W>.json.
run() {
	local w=$1 build=$2
	SERVE_BIN=$AFTER_BIN
	TLS=
	case $build in
	before) SERVE_BIN=$BEFORE_BIN ;;
	after-tls) TLS=1 ;;
	esac
	start_servers switchboard
	case $w in
	W1)
		"$BIN" bench idle --target switchboard --url "$URLS" "${AUTH[@]}" --conns "$W1_CONNS" --procs "$PROCS" \
			--duration 5s --server-pids "$S1,$S2" --label "W1 $build" --json-out "$OUT/$build-W1.json" --markdown >>"$OUT/$build.md"
		;;
	W2)
		"$BIN" bench fanout --target switchboard --url "$URLS" "${AUTH[@]}" --rooms 1 --members 2000 --ladder "$W2_LADDER" \
			--payload 100 --procs "$PROCS" --duration "$STEP" --server-pids "$S1,$S2" --broker-pids "$REDIS_PID" \
			--label "W2 $build" --json-out "$OUT/$build-W2.json" --markdown >>"$OUT/$build.md"
		;;
	esac
	cleanup
}

BUILDS=(before after after-tls)
for b in "${BUILDS[@]}"; do : >"$OUT/$b.md"; done
echo "bench-transport: before $BEFORE, after $(git rev-parse --short HEAD), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for w in W1 W2; do
	for b in "${BUILDS[@]}"; do run "$w" "$b"; done
done
for b in "${BUILDS[@]}"; do
	echo "## $b"
	cat "$OUT/$b.md"
done

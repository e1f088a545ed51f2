#!/usr/bin/env bash
# W2-API (issue 15): the fan-out workload as an independent load generator
# runs it. Two instances on one throwaway redis-server; one room of 2,000
# members (1,000 per instance) whose connections ask for batch mode and read
# with gorilla/websocket's ReadMessage, split frames on newlines and scan each
# object for its send time (RECEIVER=scan; decode does a full JSON decode of
# each object, as a browser does); POST /api/publish with a 100-byte payload
# from 64 concurrent workers round-robin over both instances; a publish that
# no worker can take when it is due is skipped; a 6 s warm-up at 10 msg/s,
# then 25, 100, 200, 400, 800, 1,600 msg/s for 6 s each, back to back.
# Then the same against two Centrifugo nodes when CENTRIFUGO names the binary
# (fresh instances and a fresh Redis per run, one system after the other).
# Prints Markdown; keeps each result as JSON in OUT for scripts/bench-medians.py.
#
#   CENTRIFUGO=/tmp/centrifugo/centrifugo OUT=/tmp/w2a scripts/bench-w2api.sh
#   for r in A B C; do CENTRIFUGO=… OUT=/tmp/w2$r scripts/bench-w2api.sh; done
#   scripts/bench-medians.py /tmp/w2A /tmp/w2B /tmp/w2C
#
# Knobs (environment): LADDER (25,100,200,400,800,1600), STEP (6s), WARMUP (6s),
# WARMUP_RATE (10), RECEIVER (scan), API_WORKERS (64), PROCS (1: receivers and
# publishers in one generator process), SATURATE=1 (keep doubling the rate
# after the ladder until deliveries/s stop growing or publishes are skipped),
# INDEP=1 (also run bench/indep, the independent generator, against fresh
# instances of each system; with PROCS above 1 its publishers run in a
# process of their own too), SERVE_ENV_STR (environment for the Switchboard
# instances, e.g. "GODEBUG=gctrace=1"), CENTRIFUGO_ENV_STR (the same for the
# Centrifugo nodes), SERVE_FLAGS_STR (more serve flags for them, e.g.
# "--max-write-delay 0"), SERVER_CPUS and GEN_CPUS (pin the servers with
# their Redis, and the generator, to CPUs of their own: SERVER_CPUS=0
# GEN_CPUS=1), OUT (work directory).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbw2api.XXXXXX)}
LADDER=${LADDER:-25,100,200,400,800,1600}
STEP=${STEP:-6s}
WARMUP=${WARMUP:-6s}
WARMUP_RATE=${WARMUP_RATE:-10}
RECEIVER=${RECEIVER:-scan}
API_WORKERS=${API_WORKERS:-64}
PROCS=${PROCS:-1}
read -r -a SERVE_ENV <<<"${SERVE_ENV_STR:-}"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
echo "bench-w2api: work directory $OUT" >&2
EXTRA=()
if [ -n "${SATURATE:-}" ]; then EXTRA+=(--saturate); fi
INDEP_FLAGS=()
if [ -n "${INDEP:-}" ]; then
	go build -o "$OUT/indep" ./bench/indep
	# With receivers in other processes, indep's publishers get one of their own too.
	if [ "$PROCS" -gt 1 ]; then INDEP_FLAGS+=(--publishers-apart); fi
fi

TARGETS=(switchboard)
if [ -n "${CENTRIFUGO:-}" ]; then TARGETS+=(centrifugo); fi
MD=$OUT/w2api.md
: >"$MD"
{
	echo "W2-API, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores,"
	echo "load average $(cut -d' ' -f1-3 /proc/loadavg) before${SERVER_CPUS:+, servers and Redis on CPUs $SERVER_CPUS}${GEN_CPUS:+, generator on CPUs $GEN_CPUS}:"
	echo
	echo '```'
	echo "\$ switchboard bench fanout --target <t> --url <2 instances> --jwt-secret … --api-key … --rooms 1 --members 2000 --payload 100" \
		"--receiver $RECEIVER --api-workers $API_WORKERS --warmup $WARMUP --warmup-rate $WARMUP_RATE --ladder $LADDER --duration $STEP" \
		"--continuous --full-ladder ${EXTRA[*]} --procs $PROCS --server-pids <servers> --broker-pids <redis>"
	echo '```'
	echo
} >>"$MD"
for t in "${TARGETS[@]}"; do
	start_servers "$t"
	"${PIN_GEN[@]}" "$BIN" bench fanout --target "$t" --url "$URLS" "${AUTH[@]}" --rooms 1 --members 2000 --payload 100 \
		--receiver "$RECEIVER" --api-workers "$API_WORKERS" --warmup "$WARMUP" --warmup-rate "$WARMUP_RATE" \
		--ladder "$LADDER" --duration "$STEP" --continuous --full-ladder "${EXTRA[@]}" --procs "$PROCS" \
		--server-pids "$S1,$S2" --broker-pids "$REDIS_PID" --label "W2-API $t" \
		--json-out "$OUT/$t-W2API.json" --markdown >>"$MD"
	cleanup
	if [ -n "${INDEP:-}" ]; then
		start_servers "$t"
		"${PIN_GEN[@]}" "$OUT/indep" --target "$t" --url "$URLS" "${AUTH[@]}" --members 2000 --workers "$API_WORKERS" \
			--warmup "$WARMUP" --warmup-rate "$WARMUP_RATE" --ladder "$LADDER" --step "$STEP" \
			--server-pids "$S1,$S2" --redis-pid "$REDIS_PID" --json "$OUT/$t-W2API-indep.json" "${INDEP_FLAGS[@]}" >>"$MD"
		echo >>"$MD"
		cleanup
	fi
done
cat "$MD"

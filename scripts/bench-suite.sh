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
SECRET=switchboard-bench-secret-0123456789
APIKEY=switchboard-bench-api-key
CF_CONFIG=$ROOT/bench/peers/centrifugo.json
CF_SECRET=$(sed -n 's/.*"hmac_secret_key": *"\([^"]*\)".*/\1/p' "$CF_CONFIG")
CF_APIKEY=$(sed -n 's/.*"http_api": *{"key": *"\([^"]*\)".*/\1/p' "$CF_CONFIG")

command -v redis-server >/dev/null || { echo "bench-suite: redis-server is required (make deps)" >&2; exit 1; }
mkdir -p "$OUT"
BIN=$OUT/switchboard
go build -o "$BIN" ./cmd/switchboard
echo "bench-suite: work directory $OUT" >&2

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
trap cleanup EXIT

# freeport prints a loopback TCP port nobody listens on, below the ephemeral
# range: the benchmark's own client sockets take ports from that range.
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
freeport() {
	local p
	while :; do
		p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
}

# waitport waits until something listens on port $1.
waitport() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "bench-suite: nothing listens on port $1" >&2
	return 1
}

start_redis() {
	REDIS_PORT=$(freeport)
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
	REDIS_PID=$!
	PIDS+=("$REDIS_PID")
	waitport "$REDIS_PORT"
}

# start_servers TARGET starts two instances of TARGET on one new Redis.
start_servers() {
	start_redis
	P1=$(freeport)
	P2=$(freeport)
	while [ "$P2" = "$P1" ]; do P2=$(freeport); done
	if [ "$1" = switchboard ]; then
		for p in "$P1" "$P2"; do
			"$BIN" serve --listen "127.0.0.1:$p" --redis "redis://127.0.0.1:$REDIS_PORT" \
				--jwt-secret "$SECRET" --api-key "$APIKEY" --log-level error >>"$OUT/servers.log" 2>&1 &
			PIDS+=($!)
		done
		URLS="ws://127.0.0.1:$P1/ws,ws://127.0.0.1:$P2/ws"
		AUTH=(--jwt-secret "$SECRET" --api-key "$APIKEY")
	else
		for p in "$P1" "$P2"; do
			CENTRIFUGO_ENGINE_REDIS_ADDRESS="redis://127.0.0.1:$REDIS_PORT" \
				"$CENTRIFUGO" -c "$CF_CONFIG" --http_server.port "$p" >>"$OUT/servers.log" 2>&1 &
			PIDS+=($!)
		done
		URLS="ws://127.0.0.1:$P1/connection/websocket,ws://127.0.0.1:$P2/connection/websocket"
		AUTH=(--jwt-secret "$CF_SECRET" --api-key "$CF_APIKEY")
	fi
	S1=${PIDS[-2]}
	S2=${PIDS[-1]}
	waitport "$P1"
	waitport "$P2"
	sleep 1
}

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
		echo "\$ switchboard bench fanout --target $t --url $URLS ${AUTH[*]} --rooms 1 --members 2000 --ladder $W2_LADDER --payload 100 --procs $PROCS --duration $STEP --server-pids <servers>,<redis>" >>"$md.cmds"
		"$BIN" bench fanout --target "$t" --url "$URLS" "${AUTH[@]}" --rooms 1 --members 2000 --ladder "$W2_LADDER" \
			--payload 100 --procs "$PROCS" --duration "$STEP" --server-pids "$S1,$S2,$REDIS_PID" --label "W2 $t" \
			--json-out "$OUT/$t-W2.json" --markdown >>"$md"
		;;
	W3)
		echo "\$ switchboard bench rooms --target $t --url $URLS ${AUTH[*]} --conns $W3_CONNS --ladder $W3_LADDER --payload 100 --procs $PROCS --duration $STEP --server-pids <servers>,<redis>" >>"$md.cmds"
		"$BIN" bench rooms --target "$t" --url "$URLS" "${AUTH[@]}" --conns "$W3_CONNS" --ladder "$W3_LADDER" \
			--payload 100 --procs "$PROCS" --duration "$STEP" --server-pids "$S1,$S2,$REDIS_PID" --label "W3 $t" \
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

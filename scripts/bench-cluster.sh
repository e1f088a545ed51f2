#!/usr/bin/env bash
# Switchboard on a Redis Cluster (issue 13), measured with `switchboard bench`:
#
#   1. W3 rooms (thousands of two-member rooms, members on different instances)
#      against two instances on a cluster of three masters with a replica each,
#      with the commands each master served (INFO stats total_commands_processed
#      and INFO commandstats evalsha, before and after) and its CPU time, to show
#      how evenly the rooms spread over the shards;
#   2. W3 beside it on one redis-server, and W2 fanout (one room of 2,000
#      members) on a cluster and on one redis-server;
#   3. the delivery stall while a master (cluster) and the primary (Sentinel)
#      are killed with SIGKILL under publishers: the process tests
#      TestProcess_ClusterFailover and TestProcess_SentinelFailover, RUNS times
#      each, which report the takeover time and the longest pause in delivery.
#
# Everything listens on 127.0.0.1 only. Results go to $OUT/cluster.md (printed at
# the end). Not part of make test: make bench-cluster.
#
# Knobs (environment): STEP (step length, default 5s), PROCS (2), W3_CONNS
# (10000), W3_LADDER (1000,2000,4000,8000,16000), W2_LADDER (10,25,50,100,200,400,800),
# RUNS (3), OUT (work directory), SKIP_FAILOVER=1.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbcluster.XXXXXX)}
STEP=${STEP:-5s}
PROCS=${PROCS:-2}
W3_CONNS=${W3_CONNS:-10000}
W3_LADDER=${W3_LADDER:-1000,2000,4000,8000,16000}
W2_LADDER=${W2_LADDER:-10,25,50,100,200,400,800}
RUNS=${RUNS:-3}
SECRET=switchboard-bench-secret-0123456789
APIKEY=switchboard-bench-api-key

for c in redis-server redis-cli; do
	command -v "$c" >/dev/null || { echo "bench-cluster: $c is required (make deps)" >&2; exit 1; }
done
mkdir -p "$OUT"
BIN=$OUT/switchboard
go build -o "$BIN" ./cmd/switchboard
echo "bench-cluster: work directory $OUT" >&2
MD=$OUT/cluster.md
: >"$MD"

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}
trap cleanup EXIT

# freeport sets PORT to a loopback TCP port nobody listens on and this script
# has not handed out yet, below the ephemeral range (the benchmark's client
# sockets take ports from that range).
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
TAKEN=" "
freeport() {
	while :; do
		PORT=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
		case $TAKEN in *" $PORT "*) continue ;; esac
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
			TAKEN="$TAKEN$PORT "
			return
		fi
	done
}

waitport() {
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "bench-cluster: nothing listens on port $1" >&2
	return 1
}

# start_cluster starts six cluster-enabled redis-servers and makes them three
# masters with a replica each; CLUSTER_PORTS, CLUSTER_PIDS and SEEDS describe it.
CLUSTERS=0
start_cluster() {
	CLUSTER_PORTS=()
	CLUSTER_PIDS=()
	CLUSTERS=$((CLUSTERS + 1))
	local addrs=()
	for i in 1 2 3 4 5 6; do
		local p bus dir
		freeport
		p=$PORT
		freeport
		bus=$PORT
		dir=$OUT/cluster$CLUSTERS/node$i
		mkdir -p "$dir"
		redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
			--cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$bus" \
			--repl-diskless-sync-delay 0 --logfile "$dir/redis.log" &
		PIDS+=($!)
		CLUSTER_PIDS+=($!)
		CLUSTER_PORTS+=("$p")
		addrs+=("127.0.0.1:$p")
	done
	for p in "${CLUSTER_PORTS[@]}"; do waitport "$p"; done
	redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$OUT/cluster-create.log"
	for _ in $(seq 300); do
		local ok=1
		for p in "${CLUSTER_PORTS[@]}"; do
			redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ok=0
			if redis-cli -p "$p" info replication | grep -q 'role:slave'; then
				redis-cli -p "$p" info replication | grep -q 'master_link_status:up' || ok=0
			fi
		done
		[ $ok = 1 ] && break
		sleep 0.2
	done
	SEEDS=$(printf '127.0.0.1:%s,' "${CLUSTER_PORTS[@]}")
	SEEDS=${SEEDS%,}
}

# masters prints the ports of the cluster's masters.
masters() {
	for p in "${CLUSTER_PORTS[@]}"; do
		redis-cli -p "$p" info replication | grep -q 'role:master' && echo "$p"
	done
}

# pidof_port prints the pid of the redis-server on port $1.
pidof_port() { redis-cli -p "$1" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p'; }

# stats prints "commands evalsha cpu-seconds" of the redis-server on port $1.
stats() {
	local info
	info=$(redis-cli -p "$1" info all | tr -d '\r')
	local total evalsha cpu
	total=$(sed -n 's/^total_commands_processed:\([0-9]*\)/\1/p' <<<"$info")
	evalsha=$(sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p' <<<"$info")
	cpu=$(awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.2f", s}' <<<"$info")
	echo "${total:-0} ${evalsha:-0} $cpu"
}

# start_instances FLAGS... starts two instances with the Redis flags given.
start_instances() {
	freeport
	P1=$PORT
	freeport
	P2=$PORT
	for p in "$P1" "$P2"; do
		"$BIN" serve --listen "127.0.0.1:$p" "$@" --jwt-secret "$SECRET" --api-key "$APIKEY" \
			--log-level "${LOG_LEVEL:-error}" >>"$OUT/servers.log" 2>&1 &
		PIDS+=($!)
	done
	S1=${PIDS[-2]}
	S2=${PIDS[-1]}
	waitport "$P1"
	waitport "$P2"
	sleep 1
	URLS="ws://127.0.0.1:$P1/ws,ws://127.0.0.1:$P2/ws"
}

# per_master LABEL SECONDS runs after a workload: a table of what each master
# served since the snapshot taken before it (BEFORE_<port>).
per_master() {
	local label=$1 secs=$2
	{
		echo
		echo "Per master during $label ($secs s from the first connection to the end of the last step):"
		echo
		echo "| master | commands | commands/s | scripts (evalsha) | CPU s | CPU share |"
		echo "| --- | ---: | ---: | ---: | ---: | ---: |"
		local all_cpu=0
		for p in $(masters); do
			read -r t0 e0 c0 <<<"${BEFORE[$p]}"
			read -r t1 e1 c1 <<<"$(stats "$p")"
			all_cpu=$(awk -v a="$all_cpu" -v b="$c1" -v c="$c0" 'BEGIN {print a + b - c}')
			ROW[$p]="$((t1 - t0)) $((e1 - e0)) $(awk -v b="$c1" -v c="$c0" 'BEGIN {printf "%.2f", b - c}')"
		done
		for p in $(masters); do
			read -r dt de dc <<<"${ROW[$p]}"
			awk -v p="$p" -v dt="$dt" -v de="$de" -v dc="$dc" -v s="$secs" -v all="$all_cpu" \
				'BEGIN {printf "| 127.0.0.1:%s | %d | %.0f | %d | %.2f | %.0f %% |\n", p, dt, dt / s, de, dc, (all > 0 ? 100 * dc / all : 0)}'
		done
	} >>"$MD"
}

declare -A BEFORE ROW
snapshot() { for p in $(masters); do BEFORE[$p]=$(stats "$p"); done; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . 2>/dev/null || COMMIT="$COMMIT+uncommitted changes"
{
	echo "Run $(date -u +%Y-%m-%dT%H:%MZ), commit $COMMIT, $(nproc) cores, steps of $STEP, load average $LOAD_BEFORE before."
	echo "Cluster: 3 masters + 3 replicas (redis-cli --cluster create --cluster-replicas 1), no persistence;"
	echo "two instances: \`switchboard serve --redis <the six nodes> --redis-cluster --jwt-secret … --api-key …\`."
} >>"$MD"

# 1. W3 on the cluster, with the spread over the masters.
start_cluster
REDIS_PIDS=$(printf '%s,' "${CLUSTER_PIDS[@]}")
REDIS_PIDS=${REDIS_PIDS%,}
start_instances --redis "$SEEDS" --redis-cluster
snapshot
began=$(date +%s.%N)
{
	echo
	echo '```'
	echo "\$ switchboard bench rooms --url $URLS --jwt-secret … --api-key … --conns $W3_CONNS --ladder $W3_LADDER --payload 100 --procs $PROCS --duration $STEP --server-pids <instances>,<6 redis-servers>"
	echo '```'
} >>"$MD"
"$BIN" bench rooms --target switchboard --url "$URLS" --jwt-secret "$SECRET" --api-key "$APIKEY" \
	--conns "$W3_CONNS" --ladder "$W3_LADDER" --payload 100 --procs "$PROCS" --duration "$STEP" \
	--server-pids "$S1,$S2,$REDIS_PIDS" --label "W3 cluster" --json-out "$OUT/cluster-W3.json" --markdown >>"$MD"
per_master "W3" "$(awk -v b="$began" -v e="$(date +%s.%N)" 'BEGIN {printf "%.0f", e - b}')"

# 2. W3 on one Redis, W2 on the cluster, then on one Redis.
cleanup
start_single() {
	freeport
	REDIS_PORT=$PORT
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
	PIDS+=($!)
	REDIS_PID=$!
	waitport "$REDIS_PORT"
	start_instances --redis "redis://127.0.0.1:$REDIS_PORT"
}
start_single
{
	echo
	echo "W3 beside it on one redis-server:"
	echo
	echo '```'
	echo "\$ switchboard bench rooms --url $URLS --jwt-secret … --api-key … --conns $W3_CONNS --ladder $W3_LADDER --payload 100 --procs $PROCS --duration $STEP --server-pids <instances>,<redis-server>"
	echo '```'
} >>"$MD"
"$BIN" bench rooms --target switchboard --url "$URLS" --jwt-secret "$SECRET" --api-key "$APIKEY" \
	--conns "$W3_CONNS" --ladder "$W3_LADDER" --payload 100 --procs "$PROCS" --duration "$STEP" \
	--server-pids "$S1,$S2,$REDIS_PID" --label "W3 one Redis" --json-out "$OUT/single-W3.json" --markdown >>"$MD"
cleanup
start_cluster
REDIS_PIDS=$(printf '%s,' "${CLUSTER_PIDS[@]}")
REDIS_PIDS=${REDIS_PIDS%,}
start_instances --redis "$SEEDS" --redis-cluster
snapshot
began=$(date +%s.%N)
{
	echo
	echo '```'
	echo "\$ switchboard bench fanout --url $URLS --jwt-secret … --api-key … --rooms 1 --members 2000 --ladder $W2_LADDER --payload 100 --procs $PROCS --duration $STEP --server-pids <instances>,<6 redis-servers>"
	echo '```'
} >>"$MD"
"$BIN" bench fanout --target switchboard --url "$URLS" --jwt-secret "$SECRET" --api-key "$APIKEY" \
	--rooms 1 --members 2000 --ladder "$W2_LADDER" --payload 100 --procs "$PROCS" --duration "$STEP" \
	--server-pids "$S1,$S2,$REDIS_PIDS" --label "W2 cluster" --json-out "$OUT/cluster-W2.json" --markdown >>"$MD"
per_master "W2 (one room: one shard carries it)" "$(awk -v b="$began" -v e="$(date +%s.%N)" 'BEGIN {printf "%.0f", e - b}')"
cleanup

start_single
{
	echo
	echo "W2 beside it on one redis-server:"
	echo
	echo '```'
	echo "\$ switchboard bench fanout --url $URLS --jwt-secret … --api-key … --rooms 1 --members 2000 --ladder $W2_LADDER --payload 100 --procs $PROCS --duration $STEP --server-pids <instances>,<redis-server>"
	echo '```'
} >>"$MD"
"$BIN" bench fanout --target switchboard --url "$URLS" --jwt-secret "$SECRET" --api-key "$APIKEY" \
	--rooms 1 --members 2000 --ladder "$W2_LADDER" --payload 100 --procs "$PROCS" --duration "$STEP" \
	--server-pids "$S1,$S2,$REDIS_PID" --label "W2 one Redis" --json-out "$OUT/single-W2.json" --markdown >>"$MD"
cleanup

# 3. Failover stalls.
if [ -z "${SKIP_FAILOVER:-}" ]; then
	{
		echo
		echo "Failover stalls ($RUNS runs each; cluster-node-timeout 1000 ms, Sentinel down-after-milliseconds 1000;"
		echo "3 instances, 30 rooms, API publishers at 50 msg/s per room; the pause is the longest gap between"
		echo "two messages of a room at one member, counted from the kill):"
		echo
		echo '```'
		for t in Cluster Sentinel; do
			echo "\$ go test -count=$RUNS -run 'TestProcess_${t}Failover\$' -v ./cmd/switchboard"
			(cd "$ROOT" && SWITCHBOARD_TEST_REDIS=required go test -count="$RUNS" -run "TestProcess_${t}Failover\$" -v ./cmd/switchboard 2>&1 |
				grep -E '^(--- |ok|FAIL)|takeover after' | sed 's/^ *//')
		done
		echo '```'
	} >>"$MD"
fi
echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)." >>"$MD"
cat "$MD"

# Shared by scripts/bench-suite.sh and scripts/bench-w2api.sh (sourced, not
# run): build the binary, start throwaway redis-server and server processes
# on free loopback ports, and stop them again. Expects ROOT and OUT.

SECRET=switchboard-bench-secret-0123456789
APIKEY=switchboard-bench-api-key
CF_CONFIG=$ROOT/bench/peers/centrifugo.json
CF_SECRET=$(sed -n 's/.*"hmac_secret_key": *"\([^"]*\)".*/\1/p' "$CF_CONFIG")
CF_APIKEY=$(sed -n 's/.*"http_api": *{"key": *"\([^"]*\)".*/\1/p' "$CF_CONFIG")

command -v redis-server >/dev/null || { echo "bench: redis-server is required (make deps)" >&2; exit 1; }
mkdir -p "$OUT"
BIN=$OUT/switchboard
go build -o "$BIN" ./cmd/switchboard
# SERVE_BIN runs another build of the server (an older commit, for a
# before/after table) under the same load generator.
SERVE_BIN=${SERVE_BIN:-$BIN}

# SERVER_CPUS and GEN_CPUS (taskset lists, e.g. 0 and 1) pin the server side
# (the instances and their Redis) and the load generator to CPUs of their
# own, as if the generator ran on another machine; PIN_SERVER and PIN_GEN are
# the command prefixes that do it. Go sizes GOMAXPROCS from the CPUs a
# process may use, so a pinned Go server sees only those.
PIN_SERVER=()
PIN_GEN=()
if [ -n "${SERVER_CPUS:-}" ]; then PIN_SERVER=(taskset -c "$SERVER_CPUS"); fi
if [ -n "${GEN_CPUS:-}" ]; then PIN_GEN=(taskset -c "$GEN_CPUS"); fi

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
	echo "bench: nothing listens on port $1" >&2
	return 1
}

# tls_pair writes a self-signed ECDSA certificate for 127.0.0.1 to OUT once
# (TLS=1: the Switchboard instances serve wss:// and https://; the load
# generator does not verify loopback certificates).
tls_pair() {
	[ -f "$OUT/tls.crt" ] && return
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
		-addext subjectAltName=IP:127.0.0.1 -keyout "$OUT/tls.key" -out "$OUT/tls.crt" 2>/dev/null
}

# tls_args sets TLS_FLAGS (the serve flags) and SCHEME (ws or wss) for
# Switchboard instances, by TLS.
tls_args() {
	TLS_FLAGS=()
	SCHEME=ws
	if [ -n "${TLS:-}" ]; then
		tls_pair
		TLS_FLAGS=(--tls-cert "$OUT/tls.crt" --tls-key "$OUT/tls.key")
		SCHEME=wss
	fi
}

start_redis() {
	REDIS_PORT=$(freeport)
	"${PIN_SERVER[@]}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
	REDIS_PID=$!
	PIDS+=("$REDIS_PID")
	waitport "$REDIS_PORT"
}

# start_servers TARGET starts two instances of TARGET on one new Redis and
# sets URLS, AUTH (the bench flags that authenticate), S1, S2 (the server
# pids) and REDIS_PID. SERVE_ENV (an array of NAME=value) is added to the
# environment of Switchboard instances, e.g. GODEBUG=gctrace=1, and
# SERVE_FLAGS_STR (words) to their flags, e.g. "--max-write-delay 0".
start_servers() {
	local SERVE_FLAGS
	read -r -a SERVE_FLAGS <<<"${SERVE_FLAGS_STR:-}"
	start_redis
	P1=$(freeport)
	P2=$(freeport)
	while [ "$P2" = "$P1" ]; do P2=$(freeport); done
	if [ "$1" = switchboard ]; then
		tls_args
		for p in "$P1" "$P2"; do
			"${PIN_SERVER[@]}" env "${SERVE_ENV[@]}" "$SERVE_BIN" serve --listen "127.0.0.1:$p" --redis "redis://127.0.0.1:$REDIS_PORT" \
				--jwt-secret "$SECRET" --api-key "$APIKEY" --log-level error "${TLS_FLAGS[@]}" "${SERVE_FLAGS[@]}" >>"$OUT/servers.log" 2>&1 &
			PIDS+=($!)
		done
		URLS="$SCHEME://127.0.0.1:$P1/ws,$SCHEME://127.0.0.1:$P2/ws"
		AUTH=(--jwt-secret "$SECRET" --api-key "$APIKEY")
	else
		# CENTRIFUGO_ENV_STR is more environment for the Centrifugo nodes, as
		# SERVE_ENV_STR is for Switchboard's (e.g. GOMAXPROCS=1 for both).
		local CF_ENV
		read -r -a CF_ENV <<<"${CENTRIFUGO_ENV_STR:-}"
		for p in "$P1" "$P2"; do
			"${PIN_SERVER[@]}" env "${CF_ENV[@]}" CENTRIFUGO_ENGINE_REDIS_ADDRESS="redis://127.0.0.1:$REDIS_PORT" \
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

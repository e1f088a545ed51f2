#!/usr/bin/env bash
# Splits W2-API's latencies (scripts/bench-w2api.sh) on the wire: bench/indep
# drives two instances along a rate ladder after its warm-up while tcpdump
# records, on loopback, the TCP segments on the instances' ports that start an
# HTTP request ("POST") or answer ("HTTP"), and with FRAMES=1 also every
# segment an instance sends that starts a WebSocket text frame (0x81).
#
# - Publishes: per keep-alive connection, a request's segment and the next
#   answer's segment bound the time the server had it (kernel receive to
#   kernel send, the server's own scheduling included). indep's "answered"
#   column is the same request seen from the generator, so the difference is
#   the generator's wait for its own reader goroutine.
# - Deliveries (FRAMES=1): each frame's first message carries its send time
#   ("snd", the generator's clock, which is the kernel's); frame time minus
#   send time is when the server put the delivery on the wire. indep's
#   p50/p99 are the same deliveries as its receivers read them, so the
#   difference is the receiving side. Per message, the first frame splits the
#   server's part into the way to the fan-out and the fan-out itself. At
#   higher rates the capture is large and perturbs the run: FRAMES=1 is for
#   LADDER=25 or 100.
#
#   scripts/profile/w2api-wire.sh                  # publishes, 25..800 msg/s
#   FRAMES=1 LADDER=25 STEP=30s scripts/profile/w2api-wire.sh
#   TARGET=centrifugo CENTRIFUGO=/tmp/centrifugo/centrifugo scripts/profile/w2api-wire.sh
#
# Knobs: LADDER (25,100,200,400,800), STEP (6s), WARMUP (6s), FRAMES, TARGET
# (switchboard), SERVE_ENV_STR and CENTRIFUGO_ENV_STR (environment for the
# instances, e.g. GOMAXPROCS=1), OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$(mktemp -d /tmp/sbwire.XXXXXX)}
LADDER=${LADDER:-25,100,200,400,800}
STEP=${STEP:-6s}
WARMUP=${WARMUP:-6s}
TARGET=${TARGET:-switchboard}
read -r -a SERVE_ENV <<<"${SERVE_ENV_STR:-}"
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
echo "w2api-wire: work directory $OUT" >&2
command -v tcpdump >/dev/null || { echo "w2api-wire: needs tcpdump (apt-get install tcpdump)" >&2; exit 1; }
go build -o "$OUT/indep" ./bench/indep

start_servers "$TARGET"
# The first bytes of the TCP payload: "POST", "HTTP", or a final text frame.
PAYLOAD='tcp[((tcp[12:1] & 0xf0) >> 2):4]'
FILTER="$PAYLOAD = 0x504f5354 or $PAYLOAD = 0x48545450"
SNAP=96
if [ -n "${FRAMES:-}" ]; then
	FILTER="$FILTER or ((src port $P1 or src port $P2) and tcp[((tcp[12:1] & 0xf0) >> 2)] = 0x81)"
	SNAP=320
fi
tcpdump -i lo -nn -s "$SNAP" -B 262144 -w "$OUT/api.pcap" "tcp and (port $P1 or port $P2) and ($FILTER)" 2>"$OUT/tcpdump.err" &
DUMP=$!
PIDS+=($DUMP)
sleep 1
"$OUT/indep" --target "$TARGET" --url "$URLS" "${AUTH[@]}" --members 2000 --workers 64 \
	--warmup "$WARMUP" --warmup-rate 10 --ladder "$LADDER" --step "$STEP" \
	--server-pids "$S1,$S2" --redis-pid "$REDIS_PID" --json "$OUT/indep.json" | tee "$OUT/indep.txt"
sleep 1
kill -INT "$DUMP"
wait "$DUMP" || true
cat "$OUT/tcpdump.err" >&2
python3 - "$OUT/api.pcap" "$P1" "$P2" "$WARMUP" "$STEP" "$LADDER" <<'PY'
import re, struct, sys
path, p1, p2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
warm, step = (float(a.rstrip("s")) for a in sys.argv[4:6])
rates = sys.argv[6].split(",")
servers = (p1, p2)
msg = re.compile(rb'"stp":(\d+),"n":(\d+),"snd":(\d+)')
pending, pairs = {}, []
frames = {}  # (step, seq) -> [send ns, per instance: first, last frame time, count]
with open(path, "rb") as f:
    head = f.read(24)
    nano = head[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    while True:
        h = f.read(16)
        if len(h) < 16:
            break
        sec, frac, incl, _ = struct.unpack("<IIII", h)
        pkt = f.read(incl)
        t = sec + frac / (1e9 if nano else 1e6)
        ip = pkt[14:]
        tcp = ip[(ip[0] & 0x0F) * 4:]
        sport, dport = struct.unpack(">HH", tcp[:4])
        payload = tcp[(tcp[12] >> 4) * 4:]
        if not payload:
            continue
        if payload[:4] == b"POST" and dport in servers:
            pending[sport] = t
        elif payload[:4] == b"HTTP" and sport in servers:
            if dport in pending:
                pairs.append((pending.pop(dport), t))
        elif payload[0] == 0x81 and sport in servers:
            m = msg.search(payload)
            if not m:
                continue
            key = (int(m.group(1)), int(m.group(2)))
            e = frames.get(key)
            if e is None:
                e = frames[key] = [int(m.group(3)) / 1e9, [None, None, 0], [None, None, 0]]
            s = e[1 + servers.index(sport)]
            s[0] = t if s[0] is None else min(s[0], t)
            s[1] = t if s[1] is None else max(s[1], t)
            s[2] += 1
            e.append(t - e[0])  # this delivery's latency on the wire

def qs(d):
    d.sort()
    q = lambda p: d[min(len(d) - 1, int(p * len(d)))]
    return f"{q(.5):.1f} | {q(.9):.1f} | {q(.99):.1f} | {d[-1]:.1f}"

if pairs:
    # indep starts the ladder right after the warm-up, steps back to back.
    start = min(a for a, _ in pairs)
    steps = [[] for _ in rates]
    for a, b in pairs:
        k = int((a - start - warm) // step)
        if 0 <= k < len(rates):
            steps[k].append((b - a) * 1000)
    print("\nOn the wire: the server's time per publish, request segment in to answer segment out (ms):\n")
    print("| rate msg/s | requests | p50 | p90 | p99 | max |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r, d in zip(rates, steps):
        if d:
            print(f"| {r} | {len(d)} | {qs(d)} |")
if frames:
    print("\nOn the wire: deliveries, from the publish's send time to the frame leaving the server (ms); per message,")
    print("the first frame on either instance, and each instance's spread from its first frame to its last:\n")
    print("| rate msg/s | messages | frames | delivery p50 | p90 | p99 | max | first frame p50 | p90 | p99 | max | spread p50 | p90 | p99 | max |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, r in enumerate(rates):
        es = [e for (st, _), e in frames.items() if st == k + 1]
        if not es:
            continue
        lat = [x * 1000 for e in es for x in e[3:]]
        first = [(min(s[0] for s in e[1:3] if s[0] is not None) - e[0]) * 1000 for e in es]
        spread = [(s[1] - s[0]) * 1000 for e in es for s in e[1:3] if s[0] is not None]
        print(f"| {r} | {len(es)} | {len(lat)} | {qs(lat)} | {qs(first)} | {qs(spread)} |")
PY

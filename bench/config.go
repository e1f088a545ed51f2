package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Workload names a benchmark.
type Workload string

// The workloads of `switchboard bench`.
const (
	// Idle opens connections, each in its inbox and one shared room, and
	// measures the connect rate and server memory per connection.
	Idle Workload = "idle"
	// Fanout publishes into rooms of many members and measures deliveries,
	// loss and latency per step of a rate ladder.
	Fanout Workload = "fanout"
	// Rooms runs many small rooms whose members sit on different instances
	// and all publish.
	Rooms Workload = "rooms"
)

// Target names the server protocol the load generator speaks.
type Target string

// The supported targets.
const (
	// Switchboard speaks PROTOCOL.md.
	Switchboard Target = "switchboard"
	// Centrifugo speaks Centrifugo v6's JSON client protocol and HTTP API.
	Centrifugo Target = "centrifugo"
)

// Receiver modes: how much work a receiving client does per message.
const (
	// ReceivePooled reads each frame into a pooled buffer and finds the
	// payloads with a byte search: the cheapest receiver, so that the
	// generator leaves the most CPU to the servers.
	ReceivePooled = "pooled"
	// ReceiveScan reads each frame with gorilla/websocket's ReadMessage (a
	// new buffer per frame), splits it on newlines and scans each object
	// for its payload, without decoding JSON: the receiver of issue 15's
	// independent generator.
	ReceiveScan = "scan"
	// ReceiveDecode reads each frame with ReadMessage and fully decodes
	// every object into generic JSON values, as a browser's JSON.parse
	// does, before it reads the payload.
	ReceiveDecode = "decode"
)

// Publish modes.
const (
	// PublishAPI publishes through the servers' HTTP API.
	PublishAPI = "api"
	// PublishWS publishes with client frames on WebSocket connections.
	PublishWS = "ws"
)

// Defaults of Config fields.
const (
	DefaultConns       = 1000
	DefaultRooms       = 1
	DefaultMembers     = 100
	DefaultRate        = 10
	DefaultDuration    = 5 * time.Second
	DefaultDrain       = 2 * time.Second
	DefaultMaxDrain    = 15 * time.Second
	DefaultPayload     = 100
	DefaultDialTimeout = 10 * time.Second
	DefaultConcurrency = 200
	DefaultTokenTTL    = 24 * time.Hour
	DefaultAPIWorkers  = 64
	DefaultWarmupRate  = 10
	// MaxClimbSteps bounds the steps that Saturate adds after the ladder.
	MaxClimbSteps = 10
)

// Config describes one benchmark run. The zero value of each field means
// its documented default; Run validates it.
type Config struct {
	// Workload is idle, fanout or rooms.
	Workload Workload
	// Target is the server's protocol. Default: switchboard.
	Target Target
	// URLs are the WebSocket URLs of the instances, ws://host:port[/path],
	// all on loopback. A URL without a path gets the target's endpoint
	// (/ws for Switchboard, /connection/websocket for Centrifugo).
	URLs []string
	// APIs are the HTTP base URLs of the instances, for API publishing and
	// /metrics. Default: derived from URLs (same host and port, http).
	APIs []string
	// APIKey authorizes API publishing (Switchboard: Bearer; Centrifugo:
	// X-API-Key).
	APIKey string
	// Token is sent by every connection; JWTSecret, when set, mints an
	// HS256 token per user instead. Neither: Switchboard dev mode
	// (hello.user), or an anonymous Centrifugo connection.
	Token     string
	JWTSecret string
	// TokenTTL is the lifetime of minted tokens. Default: 24h.
	TokenTTL time.Duration

	// Conns is the number of connections of idle, and of rooms when Rooms
	// is not given. Default: 1000.
	Conns int
	// Rooms is the number of rooms (fanout and rooms). Default: 1 for
	// fanout, Conns/Members for rooms.
	Rooms int
	// Members is the number of members per room. Default: 100 for fanout,
	// 2 for rooms.
	Members int
	// Ladder lists the publish rates in messages per second over all rooms
	// (fanout) or over all members (rooms), one step each. Default: [10].
	Ladder []float64
	// Duration is the length of each ladder step, and how long idle holds
	// its connections before it measures. Default: 5s.
	Duration time.Duration
	// Drain is how long to wait after a step for messages in flight before
	// counting loss; the wait goes on while deliveries keep arriving, up
	// to MaxDrain (a late message is not a lost one). Defaults: 2s, 15s.
	Drain    time.Duration
	MaxDrain time.Duration
	// PayloadBytes is the size of each message's data, a JSON string
	// holding the step, sequence number, send time and padding. Default:
	// 100, the smallest is 64.
	PayloadBytes int
	// Publish is "api" or "ws". Default: api for fanout, ws for rooms
	// (whose members are the publishers).
	Publish string
	// Batch asks Switchboard for batch mode (several messages per frame).
	// Centrifugo always may batch.
	Batch bool
	// Receiver is how receiving clients read their frames: pooled, scan or
	// decode (see the Receive constants). Default: pooled.
	Receiver string
	// APIWorkers is how many HTTP requests the API publisher keeps in
	// flight at most, each from a worker of its own. Default: 64.
	APIWorkers int
	// APIQueue is how many publishes may wait for a free API worker. With
	// 0 a publish that finds no idle worker when it is due is skipped: it
	// could not be handed over on time, so a server whose API answers
	// slowly shows as skipped publishes, not as a quietly lower rate.
	// Default: 0.
	APIQueue int
	// Warmup runs a first step of this length at WarmupRate before the
	// ladder; it is reported but left out of the summary. Default: none.
	Warmup time.Duration
	// WarmupRate is the publish rate of the warm-up. Default: 10.
	WarmupRate float64
	// Continuous runs the steps back to back, as a user's load generator
	// does, instead of draining after each: per-step deliveries/s and CPU
	// are then measured over the step's wall-clock window (whatever
	// arrived, from any step), while loss and latency still belong to the
	// messages published in the step, counted after one drain at the end.
	Continuous bool
	// Saturate keeps climbing after the ladder, doubling the rate, until
	// the machine is saturated: a step delivers less than 5 % more than
	// the best step before it, or skips more than 1 % of its publishes (at
	// most MaxClimbSteps more steps).
	Saturate bool

	// Procs spreads connections over this many child processes of
	// ChildCommand. Default: 1 (all in this process).
	Procs int
	// ChildCommand runs a child: the program and its arguments. The child
	// must call RunChild with its standard input and output.
	ChildCommand []string
	// ChildEnv is added to a child's environment.
	ChildEnv []string
	// SrcIPs are loopback source addresses to bind client sockets to, in
	// turn, to get past the ephemeral port limit of one address.
	SrcIPs []netip.Addr
	// DialTimeout bounds each connection's dial and handshake. Default:
	// 10s.
	DialTimeout time.Duration
	// Concurrency is how many connections each process opens at once.
	// Default: 200.
	Concurrency int

	// ServerPIDs are processes (servers, Redis) whose CPU time is read from
	// /proc for each step, to compute deliveries per server core-second.
	// With idle and a single ServerPID per URL, VmRSS is read from /proc
	// when /metrics has no process_resident_memory_bytes.
	ServerPIDs []int
	// BrokerPIDs are the broker's processes (Redis): their CPU time is
	// reported apart, and deliveries per core-second are given over the
	// servers alone and over servers and broker together.
	BrokerPIDs []int
	// FullLadder runs every step even after one that overloaded the
	// server (p99 over 5 s or over 20 % lost), whose backlog then spills
	// into the next step.
	FullLadder bool
	// Label is shown in reports, e.g. "switchboard 2×+redis".
	Label string
	// JSON prints the result as JSON instead of a table; Markdown prints
	// Markdown tables.
	JSON     bool
	Markdown bool
	// Quiet suppresses the progress line.
	Quiet bool
}

// withDefaults returns c with defaults filled in and checks it.
func (c Config) withDefaults() (Config, error) {
	switch c.Workload {
	case Idle, Fanout, Rooms:
	case "":
		return c, errors.New("bench: workload: want idle, fanout or rooms")
	default:
		return c, fmt.Errorf("bench: workload %q: want idle, fanout or rooms", c.Workload)
	}
	switch c.Target {
	case "":
		c.Target = Switchboard
	case Switchboard, Centrifugo:
	default:
		return c, fmt.Errorf("bench: target %q: want switchboard or centrifugo", c.Target)
	}
	if len(c.URLs) == 0 {
		return c, errors.New("bench: url: at least one WebSocket URL is required")
	}
	urls := make([]string, len(c.URLs))
	for i, u := range c.URLs {
		n, err := normalizeWS(u, c.Target)
		if err != nil {
			return c, fmt.Errorf("bench: url %q: %w", u, err)
		}
		urls[i] = n
	}
	c.URLs = urls
	if len(c.APIs) == 0 {
		for _, u := range c.URLs {
			c.APIs = append(c.APIs, apiFromWS(u))
		}
	} else {
		apis := make([]string, len(c.APIs))
		for i, a := range c.APIs {
			n, err := normalizeHTTP(a)
			if err != nil {
				return c, fmt.Errorf("bench: api %q: %w", a, err)
			}
			apis[i] = n
		}
		c.APIs = apis
	}
	for _, ip := range c.SrcIPs {
		if !ip.IsLoopback() {
			return c, fmt.Errorf("bench: src-ips: %s is not a loopback address", ip)
		}
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.Members < 0 || c.Rooms < 0 || c.Conns < 0 {
		return c, errors.New("bench: conns, rooms and members must not be negative")
	}
	switch c.Workload {
	case Idle:
		if c.Conns == 0 {
			c.Conns = DefaultConns
		}
	case Fanout:
		if c.Rooms == 0 {
			c.Rooms = DefaultRooms
		}
		if c.Members == 0 {
			c.Members = DefaultMembers
		}
		c.Conns = c.Rooms * c.Members
		if c.Publish == "" {
			c.Publish = PublishAPI
		}
	case Rooms:
		if c.Members == 0 {
			c.Members = 2
		}
		if c.Members < 2 {
			return c, errors.New("bench: members: rooms needs at least 2 members per room")
		}
		if c.Rooms == 0 {
			if c.Conns == 0 {
				c.Conns = DefaultConns
			}
			c.Rooms = c.Conns / c.Members
		}
		if c.Rooms == 0 {
			return c, errors.New("bench: rooms: conns/members is zero")
		}
		c.Conns = c.Rooms * c.Members
		if c.Publish == "" {
			c.Publish = PublishWS
		}
		if c.Publish != PublishWS {
			return c, errors.New("bench: publish: the rooms workload publishes from its members (ws)")
		}
	}
	switch c.Publish {
	case "", PublishAPI, PublishWS:
	default:
		return c, fmt.Errorf("bench: publish %q: want api or ws", c.Publish)
	}
	if len(c.Ladder) == 0 {
		c.Ladder = []float64{DefaultRate}
	}
	for _, r := range c.Ladder {
		if r <= 0 {
			return c, fmt.Errorf("bench: rate %v: must be positive", r)
		}
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Drain <= 0 {
		c.Drain = DefaultDrain
	}
	if c.MaxDrain <= 0 {
		c.MaxDrain = DefaultMaxDrain
	}
	c.MaxDrain = max(c.MaxDrain, c.Drain)
	if c.PayloadBytes == 0 {
		c.PayloadBytes = DefaultPayload
	}
	if c.PayloadBytes < minPayload {
		return c, fmt.Errorf("bench: payload: at least %d bytes (it carries a timestamp and a sequence number)", minPayload)
	}
	switch c.Receiver {
	case "":
		c.Receiver = ReceivePooled
	case ReceivePooled, ReceiveScan, ReceiveDecode:
	default:
		return c, fmt.Errorf("bench: receiver %q: want pooled, scan or decode", c.Receiver)
	}
	if c.APIWorkers < 0 || c.APIQueue < 0 {
		return c, errors.New("bench: api-workers and api-queue must not be negative")
	}
	if c.APIWorkers == 0 {
		c.APIWorkers = DefaultAPIWorkers
	}
	if c.Warmup < 0 {
		return c, errors.New("bench: warmup must not be negative")
	}
	if c.WarmupRate < 0 {
		return c, errors.New("bench: warmup-rate must be positive")
	}
	if c.Warmup > 0 && c.WarmupRate == 0 {
		c.WarmupRate = DefaultWarmupRate
	}
	if c.Workload == Idle && (c.Warmup > 0 || c.Continuous || c.Saturate) {
		return c, errors.New("bench: warmup, continuous and saturate apply to fanout and rooms, not idle")
	}
	if c.Procs <= 0 {
		c.Procs = 1
	}
	if c.Procs > 1 && len(c.ChildCommand) == 0 {
		return c, errors.New("bench: procs: no command to start child processes with")
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Label == "" {
		c.Label = string(c.Target)
	}
	return c, nil
}

// normalizeWS checks that u is a ws:// URL on a loopback host and gives it
// the target's endpoint path when it has none.
func normalizeWS(u string, target Target) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	switch p.Scheme {
	case "ws", "wss":
	default:
		return "", errors.New("want a ws:// or wss:// URL")
	}
	if err := checkLoopback(p.Host); err != nil {
		return "", err
	}
	if p.Path == "" || p.Path == "/" {
		p.Path = "/ws"
		if target == Centrifugo {
			p.Path = "/connection/websocket"
		}
	}
	return p.String(), nil
}

// normalizeHTTP checks that u is an http:// URL on a loopback host and
// trims it to scheme and host.
func normalizeHTTP(u string) (string, error) {
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	if p.Scheme != "http" && p.Scheme != "https" {
		return "", errors.New("want an http:// or https:// URL")
	}
	if err := checkLoopback(p.Host); err != nil {
		return "", err
	}
	return p.Scheme + "://" + p.Host, nil
}

// apiFromWS is the HTTP base URL of the instance at ws URL u (https for
// wss).
func apiFromWS(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	if p.Scheme == "wss" {
		return "https://" + p.Host
	}
	return "http://" + p.Host
}

// loopbackTLS is the TLS configuration of the load generator's clients.
// Certificates are not verified: every target is on this machine
// (checkLoopback), where a benchmark's server has a certificate of its own
// making.
func loopbackTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // loopback targets only
}

// errNotLoopback refuses targets off this machine.
var errNotLoopback = errors.New("not a loopback address: switchboard bench only loads servers on this machine (127.0.0.0/8, ::1, localhost)")

// checkLoopback accepts host[:port] only when host is localhost or a
// loopback IP address.
func checkLoopback(hostport string) error {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "" {
		return errors.New("no host")
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("host %q: %w", host, errNotLoopback)
	}
	return nil
}

// ParseSrcIPs parses a list of loopback source addresses: comma-separated
// addresses or ranges "127.0.0.1-127.0.0.8" (inclusive, IPv4).
func ParseSrcIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("%q: not an IP address", lo)
		}
		last := first
		if isRange {
			if last, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil {
				return nil, fmt.Errorf("%q: not an IP address", hi)
			}
			if !first.Is4() || !last.Is4() {
				return nil, fmt.Errorf("%q: ranges are IPv4 only", part)
			}
			if last.Less(first) {
				return nil, fmt.Errorf("%q: the range ends before it starts", part)
			}
		}
		for ip := first; ; ip = ip.Next() {
			if !ip.IsLoopback() {
				return nil, fmt.Errorf("%s: %w", ip, errNotLoopback)
			}
			out = append(out, ip)
			if len(out) > 1<<16 {
				return nil, errors.New("more than 65536 source addresses")
			}
			if ip == last {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no address")
	}
	return out, nil
}

// ParseLadder parses comma-separated positive rates, in messages per second.
func ParseLadder(s string) ([]float64, error) {
	var out []float64
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		r, err := strconv.ParseFloat(part, 64)
		if err != nil || r <= 0 || r > 1e7 {
			return nil, fmt.Errorf("%q: want a positive rate in messages per second", part)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, errors.New("no rate")
	}
	return out, nil
}

// ParsePIDs parses comma-separated process ids.
func ParsePIDs(s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want a process id", part)
		}
		out = append(out, n)
	}
	return out, nil
}

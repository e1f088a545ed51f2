package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/admission"
)

// serveFlags are the flags of `switchboard serve` (PROTOCOL.md, "Command
// line").
type serveFlags struct {
	listen         string
	advertise      addressValue
	redis          string
	redisCluster   bool
	redisSentinel  string
	redisPrefix    string
	instanceID     string
	jwtSecret      string
	jwtPublicKey   string
	apiKey         string
	dev            bool
	allowedOrigins listValue
	noDirect       bool
	historySize    int
	historyTTL     time.Duration
	idempotencyTTL time.Duration
	maxFrame       sizeValue
	maxRooms       int
	rate           float64
	burst          int
	sendQueue      sizeValue
	helloTimeout   time.Duration
	heartbeat      time.Duration
	drainTimeout   time.Duration
	drainSpread    time.Duration
	logLevel       string
	logFormat      string
	// Transport: TLS and the instance's ceiling on queued bytes.
	tlsCert        string
	tlsKey         string
	maxQueuedBytes sizeValue
	maxWriteDelay  time.Duration
	ioURing        bool
	// HTTP limits and the admin listener.
	maxHeaderBytes sizeValue
	headerTimeout  time.Duration
	idleTimeout    time.Duration
	maxBody        sizeValue
	adminListen    string
	historyMax     sizeValue
	// Admission (docs/operations.md, "Admission").
	maxConns        int
	maxConnsPerIP   int
	maxConnsPerUser int
	trustedProxies  listValue
	proxies         admission.Proxies // trustedProxies, parsed by check
	acceptRate      float64
	acceptBurst     int
	acceptQueue     int
}

// serveAbout opens the usage of serve.
const serveAbout = `usage: switchboard serve [flags]

Runs one instance: WebSocket sessions at /ws, the HTTP API under /api,
/healthz, /readyz and /metrics, all on --listen, or with --admin-listen the
API, /metrics and /debug/pprof/ on that address. Every flag can also be set
with the environment variable shown beside it (REDIS_URL too, for --redis);
a flag on the command line wins. A malformed value stops the process at
start with one line naming the flag.
`

func parseServeFlags(args []string, env lookupEnv) (*serveFlags, error) {
	return parseServeFlagsTo(args, env, os.Stderr)
}

// parseServeFlagsTo is parseServeFlags with -h printing to help.
func parseServeFlagsTo(args []string, env lookupEnv, help io.Writer) (*serveFlags, error) {
	f := &serveFlags{maxFrame: 65536, sendQueue: 1 << 20, maxQueuedBytes: 1 << 30,
		maxHeaderBytes: switchboard.DefaultMaxHeaderBytes, maxBody: switchboard.DefaultMaxBodyBytes, historyMax: 256 << 20}
	fs := newFlagSet("serve", env)
	fs.help = help
	fs.about = serveAbout
	fs.showEnv = true
	fs.StringVar(&f.listen, "listen", ":8080", "address for WebSocket, API, health and metrics")
	fs.Var(&f.advertise, "advertise", "host:port others reach this instance at, shown in GET /api/instances (default: the --listen address, or for a wildcard one an interface address of this machine and the bound port)")
	fs.StringVar(&f.redis, "redis", "", "redis://host:port/db; empty runs the embedded memory broker")
	fs.alias["REDIS_URL"] = "redis"
	fs.BoolVar(&f.redisCluster, "redis-cluster", false, "--redis lists seed nodes of a Redis Cluster; use sharded pub/sub")
	fs.StringVar(&f.redisSentinel, "redis-sentinel", "", "name of the primary that the sentinels listed in --redis monitor")
	fs.StringVar(&f.redisPrefix, "redis-prefix", "sb", "prefix of every Redis key and channel")
	fs.StringVar(&f.instanceID, "instance-id", "", "this instance's id (default: random)")
	fs.StringVar(&f.jwtSecret, "jwt-secret", "", "HS256 secret for tokens")
	fs.StringVar(&f.jwtPublicKey, "jwt-public-key", "", "PEM file with the RS256/ES256 public key for tokens")
	fs.StringVar(&f.apiKey, "api-key", "", "HTTP API key; empty disables the API (except in --dev)")
	fs.BoolVar(&f.dev, "dev", false, "development mode: hello.user without token, API without key, any Origin, demo page")
	fs.Var(&f.allowedOrigins, "allowed-origins", "comma-separated Origins accepted on upgrade; * for any (default: same host)")
	fs.BoolVar(&f.noDirect, "no-direct", false, "forbid direct messages (send) between users")
	fs.IntVar(&f.historySize, "history-size", 100, "messages kept per room")
	fs.DurationVar(&f.historyTTL, "history-ttl", 5*time.Minute, "how long history lives after a room's last publish")
	fs.DurationVar(&f.idempotencyTTL, "idempotency-ttl", 5*time.Minute, "how long a publish key is remembered")
	fs.Var(&f.maxFrame, "max-frame", "largest client frame in bytes, e.g. 65536 or 64KiB")
	fs.IntVar(&f.maxRooms, "max-rooms", 128, "rooms one session may join")
	fs.Float64Var(&f.rate, "rate", 50, "client frames per second per session")
	fs.IntVar(&f.burst, "burst", 100, "burst of client frames per session")
	fs.Var(&f.sendQueue, "send-queue", "bytes queued per session before it is a slow consumer, e.g. 512KiB (default 1MiB)")
	fs.DurationVar(&f.helloTimeout, "hello-timeout", 5*time.Second, "time a new connection has to send hello")
	fs.DurationVar(&f.heartbeat, "heartbeat", 25*time.Second, "WebSocket ping interval")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 10*time.Second, "longest wait for sessions during a drain")
	fs.DurationVar(&f.drainSpread, "drain-spread", 2*time.Second, "window over which drained clients reconnect")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate chain: serve https:// and wss:// (with --tls-key; reloaded on SIGHUP)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.Var(&f.maxQueuedBytes, "max-queued-bytes", "ceiling on bytes queued for all sessions together, e.g. 1GiB; 0 for none (default 1GiB)")
	fs.DurationVar(&f.maxWriteDelay, "max-write-delay", switchboard.DefaultMaxWriteDelay, "longest a session's next write is held back while the instance's writers are saturated, to send more in one write; 0 never holds writes back")
	fs.BoolVar(&f.ioURing, "io-uring", true, "on Linux, send a fan-out's writes a chunk of sockets per io_uring submission where the kernel allows it; false: one write(2) per socket")
	fs.Var(&f.maxHeaderBytes, "max-header-bytes", "largest request head (request line and headers); larger gets 431 (default 8KiB)")
	fs.DurationVar(&f.headerTimeout, "header-timeout", switchboard.DefaultHeaderTimeout, "time a client has to send a request's head")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", switchboard.DefaultIdleTimeout, "time a keep-alive HTTP connection may wait for its next request")
	fs.Var(&f.maxBody, "max-body", "largest HTTP API request body; larger gets 413 (default 1MiB)")
	fs.StringVar(&f.adminListen, "admin-listen", "", "address for the API, /metrics and /debug/pprof/, then not on --listen (default: all on --listen)")
	fs.Var(&f.historyMax, "history-max-bytes", "bytes of history of all rooms together in the embedded broker, e.g. 256MiB; the oldest messages go first (default 256MiB; Redis: use its maxmemory)")
	// Admission control: one block, documented in docs/operations.md.
	fs.IntVar(&f.maxConns, "max-conns", 0, "most WebSocket connections open at once, past it 503; 0 derives it from the open-file limit (the limit less a tenth, at least 128 kept), -1 for none")
	fs.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", 0, "most connections open at once from one client address, past it 503; 0 for none")
	fs.IntVar(&f.maxConnsPerUser, "max-conns-per-user", 0, "most sessions of one user on this instance, past it close 4029 at hello; 0 for none")
	fs.Var(&f.trustedProxies, "trusted-proxies", "comma-separated IPs and CIDRs of proxies whose X-Forwarded-For (client address) and X-Forwarded-Host (Origin check) are believed")
	fs.Float64Var(&f.acceptRate, "accept-rate", switchboard.DefaultAcceptRate, "new sessions per second admitted at hello, resuming ones first; 0 for no limit")
	fs.IntVar(&f.acceptBurst, "accept-burst", 0, "hellos admitted at once after a quiet time (default: --accept-rate)")
	fs.IntVar(&f.acceptQueue, "accept-queue", 0, "most hellos waiting for --accept-rate; past it close 4029 (default: --accept-rate × --hello-timeout)")
	if err := fs.parse(args); err != nil {
		return nil, err
	}
	return f, f.check()
}

// check validates values the flag package accepts but Switchboard does not.
func (f *serveFlags) check() error {
	bad := func(name, why string) error { return &flagError{flag: name, err: errors.New(why)} }
	positive := map[string]time.Duration{
		"history-ttl": f.historyTTL, "idempotency-ttl": f.idempotencyTTL, "hello-timeout": f.helloTimeout,
		"heartbeat": f.heartbeat, "drain-timeout": f.drainTimeout,
	}
	for _, name := range []string{"history-ttl", "idempotency-ttl", "hello-timeout", "heartbeat", "drain-timeout"} {
		if positive[name] <= 0 {
			return bad(name, "must be a positive duration such as 5s or 2m")
		}
	}
	switch {
	case f.drainSpread < 0:
		return bad("drain-spread", "must not be negative")
	case f.historySize <= 0:
		return bad("history-size", "must be a positive number")
	case f.maxRooms <= 0:
		return bad("max-rooms", "must be a positive number")
	case f.rate <= 0:
		return bad("rate", "must be a positive number")
	case f.burst <= 0:
		return bad("burst", "must be a positive number")
	case f.maxFrame < 256:
		return bad("max-frame", "must be at least 256 bytes")
	case f.historyMax < sizeValue(f.maxFrame):
		return bad("history-max-bytes", "must be at least --max-frame")
	case f.sendQueue < sizeValue(f.maxFrame):
		return bad("send-queue", "must be at least --max-frame")
	case f.maxWriteDelay != 0 && (f.maxWriteDelay < time.Millisecond || f.maxWriteDelay > time.Second):
		return bad("max-write-delay", "must be 0 or between 1ms and 1s")
	case f.logLevel != "debug" && f.logLevel != "info" && f.logLevel != "warn" && f.logLevel != "error":
		return bad("log-level", "must be debug, info, warn or error")
	case f.logFormat != "text" && f.logFormat != "json":
		return bad("log-format", "must be text or json")
	case f.jwtSecret != "" && len(f.jwtSecret) < 16:
		return bad("jwt-secret", "must be at least 16 bytes long")
	case !f.dev && f.jwtSecret == "" && f.jwtPublicKey == "":
		return bad("jwt-secret", "set --jwt-secret or --jwt-public-key (or run with --dev)")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		if f.tlsCert == "" {
			return bad("tls-cert", "--tls-key needs --tls-cert")
		}
		return bad("tls-key", "--tls-cert needs --tls-key")
	}
	if err := f.checkRedis(); err != nil {
		return err
	}
	if err := f.checkAdmission(); err != nil {
		return err
	}
	if strings.ContainsAny(f.redisPrefix, "{}") || f.redisPrefix == "" {
		return bad("redis-prefix", "must be non-empty and hold no '{' or '}'")
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return bad("listen", "want host:port or :port")
	}
	return f.checkHTTP()
}

// checkHTTP checks the HTTP limits and --admin-listen.
func (f *serveFlags) checkHTTP() error {
	bad := func(name, why string) error { return &flagError{flag: name, err: errors.New(why)} }
	switch {
	case f.maxHeaderBytes < switchboard.MinMaxHeaderBytes || f.maxHeaderBytes > 1<<20:
		return bad("max-header-bytes", fmt.Sprintf("must be from %d bytes (more than 4KiB) to 1MiB", switchboard.MinMaxHeaderBytes))
	case f.headerTimeout <= 0:
		return bad("header-timeout", "must be a positive duration such as 5s")
	case f.idleTimeout <= 0:
		return bad("idle-timeout", "must be a positive duration such as 60s")
	}
	if f.adminListen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(f.adminListen); err != nil {
		return bad("admin-listen", "want host:port or :port")
	}
	if _, port, _ := net.SplitHostPort(f.adminListen); f.adminListen == f.listen && port != "0" {
		return bad("admin-listen", "must differ from --listen")
	}
	return nil
}

// checkAdmission checks the admission flags and parses --trusted-proxies.
func (f *serveFlags) checkAdmission() error {
	bad := func(name, why string) error { return &flagError{flag: name, err: errors.New(why)} }
	switch {
	case f.maxConns < -1:
		return bad("max-conns", "must be a positive number, 0 (from the open-file limit) or -1 (none)")
	case f.maxConnsPerIP < 0:
		return bad("max-conns-per-ip", "must be a positive number or 0 (none)")
	case f.maxConnsPerUser < 0:
		return bad("max-conns-per-user", "must be a positive number or 0 (none)")
	case f.acceptRate < 0 || math.IsInf(f.acceptRate, 0) || math.IsNaN(f.acceptRate):
		return bad("accept-rate", "must be a positive number or 0 (no limit)")
	case f.acceptBurst < 0:
		return bad("accept-burst", "must be a positive number")
	case f.acceptQueue < 0:
		return bad("accept-queue", "must be a positive number")
	}
	ps, err := admission.ParseProxies(strings.Join(f.trustedProxies, ","))
	if err != nil {
		return &flagError{flag: "trusted-proxies", err: err}
	}
	f.proxies = ps
	return nil
}

// checkRedis checks --redis and the flags that say what it lists: one URL,
// or with --redis-cluster or --redis-sentinel a comma-separated list of
// URLs or bare host:port addresses.
func (f *serveFlags) checkRedis() error {
	bad := func(name, why string) error { return &flagError{flag: name, err: errors.New(why)} }
	switch {
	case f.redisCluster && f.redisSentinel != "":
		return bad("redis-sentinel", "does not go with --redis-cluster")
	case f.redisCluster && f.redis == "":
		return bad("redis-cluster", "needs --redis with the seed nodes")
	case f.redisSentinel != "" && f.redis == "":
		return bad("redis-sentinel", "needs --redis with the sentinel addresses")
	case f.redis == "":
		return nil
	}
	list := f.redisCluster || f.redisSentinel != ""
	addrs := strings.Split(f.redis, ",")
	if len(addrs) > 1 && !list {
		return bad("redis", "lists several addresses: add --redis-cluster (seed nodes) or --redis-sentinel MASTER (sentinels)")
	}
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if list && !strings.Contains(a, "://") {
			a = "redis://" + a // bare host:port
		}
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") || (u.Scheme != "unix" && u.Host == "") {
			if list {
				return bad("redis", fmt.Sprintf("%q: want a comma-separated list of redis://host:port URLs or host:port addresses", a))
			}
			return bad("redis", "want a URL such as redis://localhost:6379/0")
		}
	}
	return nil
}

// addressValue is a host:port flag that others can connect to (see
// checkAdvertise).
type addressValue string

func (v *addressValue) String() string { return string(*v) }

func (v *addressValue) Set(s string) error {
	if err := checkAdvertise(s); err != nil {
		return err
	}
	*v = addressValue(s)
	return nil
}

// checkAdvertise accepts a host:port that others can connect to: a host
// name or an IP address that is not a wildcard, and a port from 1 to 65535.
func checkAdvertise(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return errors.New("want host:port, such as 10.0.0.5:8080 or sb-1.internal:8080")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("want a port from 1 to 65535")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		switch ip = ip.Unmap(); {
		case ip.IsUnspecified():
			return errors.New("a wildcard address cannot be reached; name an address of this machine")
		case ip.Zone() != "", ip.IsMulticast():
			return errors.New("want a unicast address without a zone")
		}
		return nil
	}
	if !validHostname(host) {
		return errors.New("want a host name or an IP address before the port")
	}
	return nil
}

// validHostname reports whether host is a DNS name: dot-separated labels of
// 1-63 letters, digits, '-' (not at either end) and '_', at most 253
// characters, the last label not all digits (that would be a malformed IP
// address).
func validHostname(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return false
	}
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

func (f *serveFlags) logger(w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(f.logLevel))
	opts := &slog.HandlerOptions{Level: level}
	if f.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// config turns the flags into an instance Config, reading key files.
func (f *serveFlags) config(log *slog.Logger) (switchboard.Config, error) {
	cfg := switchboard.Config{
		HistorySize: f.historySize, HistoryTTL: f.historyTTL, IdempotencyTTL: f.idempotencyTTL,
		InstanceID: f.instanceID, Address: string(f.advertise), JWTSecret: []byte(f.jwtSecret), APIKey: f.apiKey, Dev: f.dev,
		AllowedOrigins: f.allowedOrigins, NoDirect: f.noDirect,
		MaxFrameBytes: int64(f.maxFrame), MaxRooms: f.maxRooms, Rate: f.rate, Burst: f.burst,
		SendQueueBytes: int(f.sendQueue), HelloTimeout: f.helloTimeout, Heartbeat: f.heartbeat,
		DrainTimeout: f.drainTimeout, DrainSpread: f.drainSpread, Logger: log,
		TLSCertFile: f.tlsCert, TLSKeyFile: f.tlsKey, MaxQueuedBytes: int64(f.maxQueuedBytes),
		MaxWriteDelay: writeDelay(f.maxWriteDelay), NoIOUring: !f.ioURing,
		MaxConns: f.maxConns, MaxConnsPerIP: f.maxConnsPerIP, MaxConnsPerUser: f.maxConnsPerUser,
		TrustedProxies: f.proxies, AcceptRate: f.acceptRate, AcceptBurst: f.acceptBurst, AcceptQueue: f.acceptQueue,
		MaxHeaderBytes: int(f.maxHeaderBytes), HeaderTimeout: f.headerTimeout, IdleTimeout: f.idleTimeout,
		MaxBodyBytes:    int64(f.maxBody),
		HistoryMaxBytes: int64(f.historyMax),
	}
	if f.acceptRate == 0 {
		cfg.AcceptRate = -1 // the flag's 0 is "no limit"; Config's 0 is the default
	}
	if f.jwtPublicKey != "" {
		pem, err := os.ReadFile(f.jwtPublicKey)
		if err != nil {
			return cfg, &flagError{flag: "jwt-public-key", err: err}
		}
		cfg.JWTPublicKeyPEM = pem
	}
	if f.tlsCert != "" {
		if _, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey); err != nil {
			return cfg, &flagError{flag: "tls-cert", err: err}
		}
	}
	cfg.Redis, cfg.RedisPrefix, cfg.RedisCluster, cfg.RedisSentinel = f.redis, f.redisPrefix, f.redisCluster, f.redisSentinel
	return cfg, nil
}

// defaultGCPercent is the garbage collector's GOGC unless the environment
// sets one. A server of idle connections holds a large, steady live heap
// and allocates little per message, so collecting at 50 % growth rather
// than Go's 100 % saves about 1 KiB per idle connection for little CPU
// (docs/operations.md has the numbers).
const defaultGCPercent = 50

func serve(args []string, env lookupEnv, stdout, stderr io.Writer) error {
	f, err := parseServeFlagsTo(args, env, stdout)
	if err != nil {
		return err
	}
	log := f.logger(stderr)
	cfg, err := f.config(log)
	if err != nil {
		return err
	}
	if f.adminListen != "" {
		// Bound before the main listener, so that a busy admin port
		// stops the process before it takes any traffic.
		adminLn, err := net.Listen("tcp", f.adminListen)
		if err != nil {
			return &flagError{flag: "admin-listen", err: err}
		}
		defer adminLn.Close() // Serve closes it too; this covers an early return
		cfg.AdminListener = adminLn
	}
	inst, err := switchboard.New(cfg)
	if err != nil {
		return err
	}
	if _, set := env("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	if f.dev {
		log.Warn(strings.Repeat("!", 12) + " DEV MODE: anyone can connect as any user without a token, the API needs no key and every Origin is accepted. Never run this in production. " + strings.Repeat("!", 12))
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return &flagError{flag: "listen", err: err}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(signals)
	go func() {
		sig, ok := <-signals
		if !ok {
			return
		}
		log.Info("draining on signal", "signal", sig.String())
		cancel()
		if sig, ok = <-signals; ok {
			log.Warn("second signal during drain: exiting now", "signal", sig.String())
			os.Exit(1)
		}
	}()
	if f.tlsCert != "" {
		reloads := make(chan os.Signal, 1)
		signal.Notify(reloads, syscall.SIGHUP)
		defer signal.Stop(reloads)
		go func() {
			for range reloads {
				if err := inst.ReloadTLS(); err != nil {
					log.Error("TLS reload failed; the previous certificate stays in use", "err", err)
					continue
				}
				log.Info("TLS certificate reloaded", "cert", f.tlsCert)
			}
		}()
	}
	if err := inst.Serve(ctx, ln); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// writeDelay maps --max-write-delay to the Config field, where 0 means the
// default and a negative value never delays.
func writeDelay(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

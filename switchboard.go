// Package switchboard wires one Switchboard instance together: the broker,
// the hub, the HTTP API and the http.Server, and the order in which they
// stop. Tests start whole instances with it on 127.0.0.1:0, in-process;
// cmd/switchboard turns flags into its Config.
package switchboard

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/switchboard-rt/switchboard/admission"
	"github.com/switchboard-rt/switchboard/api"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/broker/redis"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/demo"
	"github.com/switchboard-rt/switchboard/transport"
)

// Version is the release of this build, set with -ldflags at link time.
var Version = "dev"

// Defaults of Config fields not owned by the hub.
const (
	DefaultHistorySize    = 100
	DefaultHistoryTTL     = 5 * time.Minute
	DefaultIdempotencyTTL = 5 * time.Minute
	DefaultDrainTimeout   = 10 * time.Second

	// DefaultMaxHeaderBytes bounds a request's head: 8 KiB.
	DefaultMaxHeaderBytes = 8 << 10
	// DefaultHeaderTimeout bounds the time a client has to send a
	// request's head.
	DefaultHeaderTimeout = 5 * time.Second
	// DefaultIdleTimeout bounds the time a keep-alive connection waits
	// for its next request.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMaxBodyBytes bounds an API request's body: 1 MiB.
	DefaultMaxBodyBytes = api.DefaultMaxBodyBytes
	// MinMaxHeaderBytes is the smallest MaxHeaderBytes accepted: net/http
	// reads 4 KiB past the limit it is given (see MaxHeaderBytes), so a
	// bound must be above that.
	MinMaxHeaderBytes = headerSlack + 1
	// DefaultAcceptRate is the sessions per second admitted at hello
	// unless Config.AcceptRate says otherwise (docs/operations.md,
	// "Admission").
	DefaultAcceptRate = 5000
	// DefaultMaxWriteDelay is Config.MaxWriteDelay's default.
	DefaultMaxWriteDelay = transport.DefaultMaxWriteDelay
)

// headerSlack is what net/http adds to http.Server.MaxHeaderBytes before it
// stops reading a request's head (its "bufio slop"). The instance gives it
// MaxHeaderBytes minus this, so that the bound is the one configured.
const headerSlack = 4096

// redisConnectTimeout bounds the first connection to Redis at start.
const redisConnectTimeout = 10 * time.Second

// Config configures an Instance. The zero value of each field means its
// default; the defaults are those of PROTOCOL.md's flag table.
type Config struct {
	// Broker is the bus to use; the caller keeps it and closes it after
	// Serve returns. Default: a Redis broker when Redis is set, otherwise an
	// embedded memory broker, with the history settings below, owned and
	// closed by the instance.
	Broker broker.Broker
	// Redis is the URL of the Redis server shared by the instances,
	// redis://host:port/db. Empty runs the embedded memory broker.
	Redis string
	// RedisPrefix starts every Redis key and channel. Default: "sb".
	RedisPrefix string
	// RedisCluster says that Redis lists the seed nodes of a Redis Cluster
	// (comma-separated URLs or host:port addresses).
	RedisCluster bool
	// RedisSentinel names the primary that the sentinels listed in Redis
	// (comma-separated URLs or host:port addresses) monitor.
	RedisSentinel string
	// HistorySize is how many messages each room keeps. Default: 100.
	HistorySize int
	// HistoryTTL is how long a room's history lives after its last
	// publish. Default: 5m.
	HistoryTTL time.Duration
	// HistoryMaxBytes bounds the history of all rooms together in the
	// embedded memory broker; over it the oldest messages of any room are
	// trimmed first. Redis is bounded by its own maxmemory instead.
	// Default: 256 MiB.
	HistoryMaxBytes int64
	// IdempotencyTTL is how long a publish key is remembered. Default: 5m.
	IdempotencyTTL time.Duration

	// InstanceID names the instance. Default: random.
	InstanceID string
	// Address is the address other parties reach this instance at,
	// host:port, shown in the instance registry (GET /api/instances).
	// Default: the listener's address when it names a host; for a wildcard
	// listener (:8080, 0.0.0.0:8080, [::]:8080), an address of one of the
	// machine's network interfaces (a private IPv4 address first) with the
	// bound port, or 127.0.0.1 and the port when there is none.
	Address string
	// JWTSecret verifies HS256 tokens.
	JWTSecret []byte
	// JWTPublicKeyPEM verifies RS256 and ES256 tokens.
	JWTPublicKeyPEM []byte
	// APIKey guards the HTTP API; empty disables it except in Dev mode.
	APIKey string
	// Dev admits hello.user without a token, the API without a key, and
	// any Origin.
	Dev bool
	// AllowedOrigins lists accepted Origins; "*" accepts any. Default: the
	// request's own host.
	AllowedOrigins []string
	// NoDirect forbids direct messages between users.
	NoDirect bool

	// MaxFrameBytes, MaxRooms, Rate, Burst, SendQueueBytes, HelloTimeout,
	// Heartbeat and DrainSpread are passed to the hub (see hub.Config).
	MaxFrameBytes  int64
	MaxRooms       int
	Rate           float64
	Burst          int
	SendQueueBytes int
	HelloTimeout   time.Duration
	Heartbeat      time.Duration
	DrainSpread    time.Duration
	// DrainTimeout bounds how long a drain waits for sessions. Default: 10s.
	DrainTimeout time.Duration

	// TLSCertFile and TLSKeyFile, when set, make the instance serve HTTPS
	// and wss:// itself: PEM files of the certificate chain and its key.
	// ReloadTLS reads them again.
	TLSCertFile string
	TLSKeyFile  string
	// MaxQueuedBytes is the instance's ceiling on frames queued for all its
	// sessions (see hub.Config). Default: no ceiling.
	MaxQueuedBytes int64
	// MaxWriteDelay is the longest a saturated instance holds back a
	// session's next write to send more in it (see hub.Config). Default:
	// 64ms; negative: never.
	MaxWriteDelay time.Duration
	// NoIOUring makes the instance write each socket with its own
	// write(2). By default, on Linux where the kernel allows it, the
	// writes of a fan-out go out a chunk of sockets per io_uring
	// submission.
	NoIOUring bool

	// HTTP limits (PROTOCOL.md is silent; docs/operations.md, "HTTP
	// limits"). They apply to the listener given to Serve and to
	// AdminListener.

	// MaxHeaderBytes bounds a request's head: the request line, every
	// header line and the blank line that ends them, line ends included.
	// A longer head, a WebSocket upgrade's too, is answered 431 Request
	// Header Fields Too Large and its connection closed. At least
	// MinMaxHeaderBytes. Default: 8 KiB.
	MaxHeaderBytes int
	// HeaderTimeout bounds the time from the start of a request (for a
	// connection's first request, from the accept; over TLS, the
	// handshake included) until its head is read; a client that has not
	// sent a whole head by then is disconnected without an answer.
	// Default: 5s.
	HeaderTimeout time.Duration
	// IdleTimeout bounds the time a keep-alive connection waits for its
	// next request before it is closed. WebSocket sessions are not
	// affected: their liveness is Heartbeat's business. Default: 60s.
	IdleTimeout time.Duration
	// MaxBodyBytes bounds an HTTP API request's body. A request that
	// declares a larger Content-Length is answered 413 too_large before
	// any of its body is read; a chunked one is cut off at the bound with
	// the same answer. Default: 1 MiB.
	MaxBodyBytes int64
	// AdminListener, when set, receives /metrics, /debug/pprof/ and the
	// HTTP API (/api/...), which are then not served on the listener
	// given to Serve; /healthz and /readyz are on both. Serve serves it
	// and closes it when it stops. Nil serves everything on Serve's
	// listener, with pprof only in Dev mode.
	AdminListener net.Listener
	// Admission limits (docs/operations.md, "Admission"; hub.Config has
	// the answers).
	//
	// MaxConns is the most WebSocket connections open at once. Default
	// (0): derived from the open-file limit (see DefaultMaxConns);
	// negative: no ceiling.
	MaxConns int
	// MaxConnsPerIP is the most connections open at once from one client
	// address. Default (0): no ceiling.
	MaxConnsPerIP int
	// MaxConnsPerUser is the most sessions one user may have on this
	// instance. Default (0): no ceiling.
	MaxConnsPerUser int
	// TrustedProxies are the peers whose X-Forwarded-For and
	// X-Forwarded-Host are believed. Default: none.
	TrustedProxies admission.Proxies
	// AcceptRate is the sessions per second admitted at hello, resuming
	// sessions first. Default (0): DefaultAcceptRate; negative: no limit.
	AcceptRate float64
	// AcceptBurst is how many hellos pass at once after a quiet time.
	// Default: AcceptRate.
	AcceptBurst int
	// AcceptQueue bounds the hellos waiting for the accept rate. Default:
	// AcceptRate × HelloTimeout.
	AcceptQueue int

	// Logger receives every component's logs; nil discards them.
	Logger *slog.Logger
}

// Instance is one running Switchboard server.
type Instance struct {
	cfg    Config
	broker broker.Broker
	// ownsBroker is set when the instance created its broker and so
	// closes it when it stops; a broker from Config stays open.
	ownsBroker bool
	hub        *hub.Hub
	api        *api.Server
	cert       *certificate // nil without TLS
	registry   *prometheus.Registry
	mux        *http.ServeMux // the listener given to Serve
	admin      *http.ServeMux // Config.AdminListener; nil without one
	log        *slog.Logger
}

// New builds an instance from cfg. It does not listen yet; see Serve.
func New(cfg Config) (*Instance, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HistorySize == 0 {
		cfg.HistorySize = DefaultHistorySize
	}
	if cfg.HistoryTTL == 0 {
		cfg.HistoryTTL = DefaultHistoryTTL
	}
	if cfg.IdempotencyTTL == 0 {
		cfg.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.HistoryMaxBytes == 0 {
		cfg.HistoryMaxBytes = memory.DefaultHistoryMaxBytes
	}
	if cfg.HistorySize < 0 || cfg.HistoryTTL < 0 || cfg.IdempotencyTTL < 0 || cfg.DrainTimeout < 0 || cfg.HistoryMaxBytes < 0 {
		return nil, errors.New("switchboard: history, idempotency and drain settings must be positive")
	}
	if err := cfg.httpLimits(); err != nil {
		return nil, err
	}

	cert, err := newCertificate(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, err
	}

	var verifier hub.Verifier
	if len(cfg.JWTSecret) > 0 || len(cfg.JWTPublicKeyPEM) > 0 {
		v, err := auth.NewVerifier(auth.VerifierConfig{
			Secret: cfg.JWTSecret, PublicKeyPEM: cfg.JWTPublicKeyPEM, RequireExp: !cfg.Dev,
		})
		if err != nil {
			return nil, fmt.Errorf("switchboard: token verification: %w", err)
		}
		verifier = v
	} else if !cfg.Dev {
		return nil, errors.New("switchboard: set a JWT secret or public key, or run in dev mode")
	}

	if cfg.InstanceID == "" {
		cfg.InstanceID = "i_" + rand.Text()[:12]
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b := cfg.Broker
	ownsBroker := b == nil
	switch {
	case b != nil:
	case cfg.Redis != "":
		ctx, cancel := context.WithTimeout(context.Background(), redisConnectTimeout)
		defer cancel()
		rb, err := redis.New(ctx, redis.Config{
			URL: cfg.Redis, Cluster: cfg.RedisCluster, SentinelMaster: cfg.RedisSentinel,
			Prefix: cfg.RedisPrefix, InstanceID: cfg.InstanceID,
			HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, IdempotencyTTL: cfg.IdempotencyTTL,
			// An instance that misses three registry heartbeats is gone.
			PresenceTTL: 3 * hub.RegistryInterval(cfg.Heartbeat),
			Registerer:  reg,
			Logger:      cfg.Logger, // the broker adds its instance itself
		})
		if err != nil {
			return nil, fmt.Errorf("switchboard: connect to Redis: %w", err)
		}
		b = rb
	default:
		mb := memory.New(memory.Config{
			HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, IdempotencyTTL: cfg.IdempotencyTTL,
			HistoryMaxBytes: cfg.HistoryMaxBytes,
		})
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_history_bytes",
			Help: "Bytes the embedded broker's history holds over all rooms (bounded by --history-max-bytes)."},
			func() float64 { return float64(mb.HistoryBytes()) }))
		b = mb
	}

	maxConns := cfg.MaxConns
	switch {
	case maxConns == 0:
		maxConns = DefaultMaxConns(openFileLimit())
	case maxConns < 0:
		maxConns = 0
	}
	acceptRate := cfg.AcceptRate
	switch {
	case acceptRate == 0:
		acceptRate = DefaultAcceptRate
	case acceptRate < 0:
		acceptRate = 0
	}
	h, err := hub.New(hub.Config{
		Broker: b, Verifier: verifier, Dev: cfg.Dev, InstanceID: cfg.InstanceID, Address: cfg.Address,
		AllowedOrigins: cfg.AllowedOrigins, MaxFrameBytes: cfg.MaxFrameBytes, MaxRooms: cfg.MaxRooms,
		Rate: cfg.Rate, Burst: cfg.Burst, SendQueueBytes: cfg.SendQueueBytes, MaxQueuedBytes: cfg.MaxQueuedBytes,
		MaxWriteDelay: cfg.MaxWriteDelay, NoIOUring: cfg.NoIOUring,
		HelloTimeout: cfg.HelloTimeout, Heartbeat: cfg.Heartbeat, DrainSpread: cfg.DrainSpread,
		HistorySize: cfg.HistorySize, NoDirect: cfg.NoDirect,
		MaxConns: maxConns, MaxConnsPerIP: cfg.MaxConnsPerIP, MaxConnsPerUser: cfg.MaxConnsPerUser,
		TrustedProxies: cfg.TrustedProxies, AcceptRate: acceptRate, AcceptBurst: cfg.AcceptBurst, AcceptQueue: cfg.AcceptQueue,
		Metrics: hub.NewMetrics(reg), TransportMetrics: transport.NewMetrics(reg), Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("switchboard: %w", err)
	}
	h.RegisterGauges(reg)
	cfg.Logger.Debug("admission", "max_conns", maxConns, "max_conns_per_ip", cfg.MaxConnsPerIP,
		"max_conns_per_user", cfg.MaxConnsPerUser, "accept_rate", acceptRate, "trusted_proxies", len(cfg.TrustedProxies))

	inst := &Instance{cfg: cfg, broker: b, ownsBroker: ownsBroker, hub: h, cert: cert, registry: reg, mux: http.NewServeMux(), log: cfg.Logger}
	ready, _ := b.(broker.Checker) // the memory broker is always ready
	inst.api, err = api.New(api.Config{
		Hub: apiHub{h}, Broker: ready, APIKey: cfg.APIKey, Dev: cfg.Dev, MaxBodyBytes: cfg.MaxBodyBytes,
		Registerer: reg, Gatherer: reg, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("switchboard: %w", err)
	}
	inst.mux.Handle("GET /ws", h)
	if cfg.Dev {
		for _, path := range demo.Paths {
			inst.mux.Handle("GET "+path, demo.Handler())
		}
	}
	if cfg.AdminListener == nil {
		// Everything on the one listener, as before --admin-listen;
		// profiles only for development and benchmarks.
		if cfg.Dev {
			handleProfiles(inst.mux)
		}
		inst.mux.Handle("/", inst.api)
		return inst, nil
	}
	inst.mux.Handle("GET /healthz", inst.api)
	inst.mux.Handle("GET /readyz", inst.api)
	inst.mux.HandleFunc("/api/", notOnThisListener)
	inst.admin = http.NewServeMux()
	handleProfiles(inst.admin)
	inst.admin.Handle("/", inst.api)
	return inst, nil
}

// handleProfiles serves the runtime profiles of net/http/pprof on mux:
// the index and named profiles (heap, goroutine, ...), CPU profiles and
// execution traces, and symbol lookups. Not /debug/pprof/cmdline: the
// command line may hold --jwt-secret or --api-key.
func handleProfiles(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/cmdline", http.NotFound)
}

// notOnThisListener answers API requests on the public listener of an
// instance with an admin listener: 404 not_found, as package api words its
// errors.
func notOnThisListener(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"error":{"code":"not_found","message":"the HTTP API is not served on this address; it is on the admin listener (--admin-listen)"}}` + "\n"))
}

// httpLimits fills in the defaults of the HTTP limits and checks them.
func (cfg *Config) httpLimits() error {
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	switch {
	case cfg.MaxHeaderBytes < MinMaxHeaderBytes:
		return fmt.Errorf("switchboard: MaxHeaderBytes is %d, want at least %d", cfg.MaxHeaderBytes, MinMaxHeaderBytes)
	case cfg.HeaderTimeout < 0, cfg.IdleTimeout < 0:
		return errors.New("switchboard: HeaderTimeout and IdleTimeout must be positive")
	case cfg.MaxBodyBytes < 0:
		return errors.New("switchboard: MaxBodyBytes must be positive")
	}
	return nil
}

// httpServer returns a server of h with the configured HTTP limits.
func (i *Instance) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    i.cfg.MaxHeaderBytes - headerSlack,
		ReadHeaderTimeout: i.cfg.HeaderTimeout,
		IdleTimeout:       i.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(i.log.Handler(), slog.LevelDebug),
	}
}

// DefaultMaxConns is the default ceiling on WebSocket connections for a
// process allowed fileLimit open files: the limit less a tenth of it (at
// least 128) kept for everything else the process opens (Redis and API
// connections, the listener, files), so that a full instance answers 503
// rather than fail accept(2) with EMFILE. It is 0 (no ceiling) when the
// limit is unknown or unlimited, and at least 1.
func DefaultMaxConns(fileLimit uint64) int {
	if fileLimit == 0 || fileLimit > 1<<40 {
		return 0
	}
	spare := max(128, fileLimit/10)
	if fileLimit <= 2*spare {
		return int(max(1, fileLimit/2))
	}
	return int(fileLimit - spare)
}

// apiHub hands the hub to package api, which does not import package hub:
// it reports a user's status in api's own type.
type apiHub struct{ *hub.Hub }

func (a apiHub) UserStatus(ctx context.Context, user string) (api.UserStatus, error) {
	st, err := a.Hub.UserStatus(ctx, user)
	return api.UserStatus{Sessions: st.Sessions, Instances: st.Instances}, err
}

// logWrites says once at start how the instance writes its sockets.
func (i *Instance) logWrites() {
	if i.cfg.NoIOUring {
		i.log.Info("socket writes", "io_uring", false, "reason", "turned off (--io-uring=false)")
		return
	}
	if err := transport.IOUring(); err != nil {
		i.log.Info("socket writes", "io_uring", false, "reason", err.Error())
		return
	}
	i.log.Info("socket writes", "io_uring", true)
}

// Hub returns the instance's hub.
func (i *Instance) Hub() *hub.Hub { return i.hub }

// Handler returns the instance's HTTP handler: /ws, health checks and,
// without an admin listener, the API and metrics.
func (i *Instance) Handler() http.Handler { return i.mux }

// AdminHandler returns the handler of the admin listener: the API, metrics,
// profiles and health checks; nil without Config.AdminListener.
func (i *Instance) AdminHandler() http.Handler {
	if i.admin == nil {
		return nil
	}
	return i.admin
}

// Serve serves on ln until ctx ends, then drains (PROTOCOL.md, "Graceful
// drain"): readiness turns off, new WebSocket sessions are refused, every
// session is told to reconnect and closed with 4001, and after the sessions
// are gone or the drain timeout passed the HTTP server and the broker are
// closed. It returns nil after a clean drain. With Config.AdminListener it
// serves that too, with the same TLS, until the drain ends.
func (i *Instance) Serve(ctx context.Context, ln net.Listener) error {
	srv := i.httpServer(i.mux)
	var adminSrv *http.Server
	adminLn := i.cfg.AdminListener
	if adminLn != nil {
		adminSrv = i.httpServer(i.admin)
	}
	advertised := i.cfg.Address
	if advertised == "" {
		advertised = advertisedAddress(ln.Addr())
		i.hub.SetAddress(advertised)
	}
	if i.cert != nil {
		ln = tls.NewListener(ln, i.cert.config())
		if adminLn != nil {
			adminLn = tls.NewListener(adminLn, i.cert.config())
		}
	}
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	i.hub.Register(runCtx)
	hubDone := make(chan error, 1)
	go func() { hubDone <- i.hub.Run(runCtx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ln) }()
	adminDone := make(chan error, 1)
	i.logWrites()
	if adminSrv != nil {
		go func() { adminDone <- adminSrv.Serve(adminLn) }()
		i.log.Info("serving", "instance", i.hub.InstanceID(), "listen", ln.Addr().String(), "advertise", advertised, "admin", adminLn.Addr().String())
	} else {
		i.log.Info("serving", "instance", i.hub.InstanceID(), "listen", ln.Addr().String(), "advertise", advertised)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-serveDone:
		i.log.Error("http server stopped", "err", serveErr)
	case serveErr = <-adminDone:
		i.log.Error("admin http server stopped", "err", serveErr)
	}

	// From now on every answer closes its connection: a proxy that keeps
	// connections to this instance alive would otherwise send a request
	// on one that Shutdown closes under it, and a POST caught that way is
	// not retried elsewhere (nginx answers 502).
	srv.SetKeepAlivesEnabled(false)
	if adminSrv != nil {
		adminSrv.SetKeepAlivesEnabled(false)
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), i.cfg.DrainTimeout)
	defer cancel()
	drainErr := i.hub.Drain(drainCtx)
	shutCtx, cancelShut := context.WithTimeout(context.Background(), time.Second)
	defer cancelShut()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
	}
	if adminSrv != nil {
		// The API and metrics stay up through the drain, and go with it.
		if err := adminSrv.Shutdown(shutCtx); err != nil {
			_ = adminSrv.Close()
		}
	}
	stopRun()
	<-hubDone
	if i.ownsBroker {
		closeCtx, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelClose()
		if err := i.broker.Close(closeCtx); err != nil {
			i.log.Warn("close broker", "err", err)
		}
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	if drainErr != nil {
		i.log.Warn("drain ended with sessions still open", "err", drainErr)
	}
	return nil
}

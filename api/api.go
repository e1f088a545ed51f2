// Package api serves the HTTP side of an instance: the server API for
// backends (publish, send, broadcast, presence, history, users, instances),
// health and readiness checks, and Prometheus metrics.
//
// The API lives under /api/ (PROTOCOL.md, "HTTP API"; docs/api.md has every
// route with examples). Every /api/ request is authenticated first (see
// auth.go), then routed; answers and errors are JSON. Each request's work is
// bounded by Config.RequestTimeout. The package reaches the hub only through
// the small interfaces it declares next to the handlers that use them, and
// never imports package hub.
package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Defaults of Config fields.
const (
	DefaultMaxBodyBytes   = 1 << 20
	DefaultRequestTimeout = 5 * time.Second
)

// readiness is what /readyz asks of the instance.
type readiness interface {
	Draining() bool
}

// backend is everything the API asks of the instance's hub.
type backend interface {
	readiness
	publisher
	roomReader
	userDirectory
	instanceLister
}

// Config configures a Server.
type Config struct {
	// Hub answers the API's requests and readiness questions. Package
	// switchboard passes its *hub.Hub, adapted to report UserStatus.
	// Required.
	Hub backend
	// Broker, when set, is asked by /readyz whether the bus can serve;
	// /readyz answers 503 while it cannot. Nil: only draining is checked.
	Broker broker.Checker
	// APIKey is the bearer key every /api/ request must carry. Empty
	// disables the API (403 on every /api/ route) unless Dev is set.
	APIKey string
	// Dev opens the API without a key when APIKey is empty. With a key, the
	// key is checked in Dev mode too.
	Dev bool
	// MaxBodyBytes bounds request bodies; larger ones get 413 too_large:
	// at once, before any of the body is read, when Content-Length
	// declares more, and when the bound is reached otherwise (a chunked
	// body). Default: 1 MiB.
	MaxBodyBytes int64
	// RequestTimeout bounds the work of each /api/ request. Default: 5s.
	RequestTimeout time.Duration
	// Registerer receives switchboard_api_requests_total; nil registers
	// nothing.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics; nil serves no metrics.
	Gatherer prometheus.Gatherer
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
}

// Server is the HTTP handler of the API, health checks and metrics. It is
// safe for concurrent use.
type Server struct {
	cfg       Config
	log       *slog.Logger
	mux       *http.ServeMux // health, metrics, and /api/ as a whole
	api       *http.ServeMux // the /api/ routes, matched by path only
	keyHash   []byte         // SHA-256 of cfg.APIKey; nil when no key is set
	requests  *prometheus.CounterVec
	hub       readiness
	pub       publisher
	rooms     roomReader
	users     userDirectory
	instances instanceLister
}

// New returns a Server for cfg, or an error naming the invalid field.
func New(cfg Config) (*Server, error) {
	if cfg.Hub == nil {
		return nil, errors.New("api: Config.Hub is required")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, errors.New("api: Config.MaxBodyBytes must be positive")
	}
	if cfg.RequestTimeout < 0 {
		return nil, errors.New("api: Config.RequestTimeout must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger,
		mux: http.NewServeMux(), api: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_api_requests_total",
			Help: "HTTP API requests, by route pattern and HTTP status code.",
		}, []string{"route", "code"}),
		hub: cfg.Hub, pub: cfg.Hub, rooms: cfg.Hub, users: cfg.Hub, instances: cfg.Hub,
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(s.requests); err != nil {
			return nil, fmt.Errorf("api: Config.Registerer: %w", err)
		}
	}
	switch {
	case cfg.APIKey != "":
		sum := sha256.Sum256([]byte(cfg.APIKey))
		s.keyHash = sum[:]
	case cfg.Dev:
		s.log.Info("the HTTP API needs no key: dev mode and no API key")
	default:
		s.log.Info("the HTTP API is disabled: no API key")
	}

	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	s.mux.HandleFunc("/api/", s.serveAPI)

	s.route(http.MethodPost, "/api/publish", s.publish)
	s.route(http.MethodPost, "/api/send", s.send)
	s.route(http.MethodPost, "/api/broadcast", s.broadcast)
	s.route(http.MethodGet, "/api/rooms/{room}/presence", s.presence)
	s.route(http.MethodGet, "/api/rooms/{room}/history", s.history)
	s.route(http.MethodGet, "/api/users/{user}", s.userStatus)
	s.route(http.MethodPost, "/api/users/{user}/disconnect", s.disconnect)
	s.route(http.MethodGet, "/api/instances", s.listInstances)
	s.api.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errorf(codeNotFound, "no API route %s %s; see docs/api.md", r.Method, r.URL.Path))
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// handlerFunc is an API handler: it writes its answer, or returns the error
// to answer with instead.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// route registers h for path. Patterns carry no method, so that a known path
// with the wrong method gets a JSON 405 rather than the catch-all 404 or
// ServeMux's plain-text answer. GET routes answer HEAD too.
func (s *Server) route(method, path string, h handlerFunc) {
	allow := method
	if method == http.MethodGet {
		allow = "GET, HEAD"
	}
	s.api.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, errorf(codeMethodNotAllowed, "%s takes %s, not %s", path, method, r.Method))
			return
		}
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// serveAPI authenticates an /api/ request, bounds it with the request
// timeout, routes it, and counts it.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	_, pattern := s.api.Handler(r)
	defer func() { s.requests.WithLabelValues(routeLabel(pattern), strconv.Itoa(rec.code())).Inc() }()

	if err := s.authorize(r); err != nil {
		s.writeError(rec, r, err)
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		// Answered without reading a byte of the body; net/http then
		// closes the connection rather than read the rest.
		s.writeError(rec, r, errorf(protocol.CodeTooLarge, "the request body is larger than %d bytes (Content-Length %d)", s.cfg.MaxBodyBytes, r.ContentLength))
		return
	}
	// The timeout covers reading the body as well as the broker's work; the
	// answer gets as long again to be written.
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	rc := http.NewResponseController(rec)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline.Add(s.cfg.RequestTimeout))
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	s.api.ServeHTTP(rec, r.WithContext(ctx))
}

// routeLabel is the metrics label of a matched pattern: the pattern itself,
// so that the label set stays small, or "other" for unknown paths.
func routeLabel(pattern string) string {
	if pattern == "" || pattern == "/api/" {
		return "other"
	}
	return pattern
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.hub.Draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("draining\n"))
		return
	}
	if s.cfg.Broker != nil {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		if err := s.cfg.Broker.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("broker unavailable\n"))
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

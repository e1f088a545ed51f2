// Package api serves the HTTP side of an instance: the server API for
// backends (publish, send, broadcast, presence, history, users, instances),
// health and readiness checks, and Prometheus metrics.
package api

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readiness is what /readyz asks of the instance.
type readiness interface {
	Draining() bool
}

// pinger checks that the broker is reachable.
type pinger interface {
	Ready(ctx context.Context) error
}

// Config configures a Server.
type Config struct {
	// Hub answers readiness questions.
	Hub readiness
	// Broker is checked by /readyz when it can report readiness.
	Broker any
	// Gatherer serves /metrics; nil serves no metrics.
	Gatherer prometheus.Gatherer
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
}

// Server is the HTTP handler of the API, health checks and metrics.
type Server struct {
	cfg Config
	mux *http.ServeMux
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Gatherer != nil {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.cfg.Hub.Draining() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("draining\n"))
		return
	}
	if p, ok := s.cfg.Broker.(pinger); ok {
		if err := p.Ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("broker unavailable\n"))
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

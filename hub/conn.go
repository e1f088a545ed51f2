package hub

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/admission"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/transport"
)

// ServeHTTP upgrades a request to a WebSocket and starts its session. It is
// the handler of GET /ws. It returns once the connection is handed over,
// so that net/http releases the request's buffers (about 10 KiB) now
// rather than when the session ends.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.draining.Load() {
		h.metrics.refused("draining")
		w.Header().Set("Retry-After", "1")
		http.Error(w, "draining: reconnect to another instance", http.StatusServiceUnavailable)
		return
	}
	addr := h.cfg.TrustedProxies.ClientAddr(r)
	if reason := h.admitted.Acquire(addr); reason != "" {
		h.metrics.refused(reason)
		h.log.Debug("connection refused", "remote", addr.String(), "reason", reason)
		refuse(w, reason)
		return
	}
	originOK := h.originAllowed(r)
	nc, early, err := transport.Upgrade(w, r, h.cfg.WriteTimeout)
	if err != nil {
		h.admitted.Release(addr)
		h.metrics.authFailure("upgrade")
		return // Upgrade has answered the request.
	}
	s := &Session{hub: h, addr: addr}
	s.conn = h.transport.Open(nc, early, s)
	h.conns.Add(1)
	if !originOK {
		// Refused after the upgrade, so that a browser sees close code
		// 1008 rather than an opaque failed handshake.
		h.log.Warn("origin refused", "remote", addr.String(), "origin", r.Header.Get("Origin"))
		h.metrics.authFailure("origin")
		s.conn.Close(closePolicy, "origin not allowed")
	} else {
		h.deadlines.set(s, time.Now().Add(h.cfg.HelloTimeout), helloDeadline)
	}
	s.conn.Start()
}

// retryAfterFull is the Retry-After, in seconds, of an upgrade refused
// because a connection ceiling is reached.
const retryAfterFull = "5"

// refusals are the answers to upgrades refused by a connection ceiling.
var refusals = map[string]string{
	admission.ReasonMaxConns:      `{"error":{"code":"max_conns","message":"this instance has --max-conns connections; retry later or elsewhere"}}` + "\n",
	admission.ReasonMaxConnsPerIP: `{"error":{"code":"max_conns_per_ip","message":"your address has --max-conns-per-ip connections; close one or retry later"}}` + "\n",
}

// refuse answers an upgrade refused by a connection ceiling: 503 with
// Retry-After and a body naming the limit.
func refuse(w http.ResponseWriter, reason string) {
	w.Header().Set("Retry-After", retryAfterFull)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(refusals[reason]))
}

// originAllowed applies Config.AllowedOrigins to the request's Origin.
// Requests without Origin (not from a browser) are allowed. Without
// AllowedOrigins, the Origin's host must be the host the client asked
// for: the request's Host, or, from a trusted proxy, its
// X-Forwarded-Host.
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || h.cfg.Dev {
		return true
	}
	if len(h.cfg.AllowedOrigins) == 0 {
		host := r.Host
		if fh := h.cfg.TrustedProxies.ForwardedHost(r); fh != "" {
			host = fh
		}
		u, err := url.Parse(origin)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
	}
	for _, allowed := range h.cfg.AllowedOrigins {
		if allowed == "*" || strings.EqualFold(allowed, origin) {
			return true
		}
	}
	return false
}

// Message implements transport.Handler: the first message must be hello;
// every later one is a request.
func (s *Session) Message(data []byte, text, limited bool) {
	if s.welcomed.Load() {
		s.frame(data, text, limited)
		return
	}
	s.helloSeen.Store(true)
	s.hub.deadlines.clear(s, helloDeadline)
	s.hello(data, text)
}

// hello checks the first message and, if it is a valid hello, starts the
// session; otherwise it closes the connection with 4003.
func (s *Session) hello(data []byte, text bool) {
	h := s.hub
	f, derr := protocol.Decode(data)
	if !text || derr != nil || f.Type != protocol.TypeHello {
		h.metrics.authFailure("no_hello")
		s.close(closeUnauthorized, "hello must be the first frame")
		return
	}
	claims, reason := h.authenticate(f)
	if reason != "" {
		h.metrics.authFailure("token")
		h.log.Info("hello refused", "remote", s.addr.String(), "err", reason)
		s.close(closeUnauthorized, reason)
		return
	}
	if h.draining.Load() {
		s.close(closeRestarting, "draining")
		return
	}
	if h.userFull(claims.User) {
		s.refuseUser()
		return
	}
	kind := admission.Cold
	if f.Session != "" || len(f.Resume) > 0 {
		kind = admission.Resume
	}
	if !s.admit(kind) {
		return
	}
	s.id = newID("s_")
	s.user = claims.User
	s.echo = f.Echo
	s.grants = grantsOf(claims)
	s.flushSlice = s.id[len(s.id)-1] % stateFlushSlices
	s.conn.SetBatch(f.Batch)
	if !h.addSession(s) {
		s.refuseUser()
		return
	}
	s.welcomed.Store(true)
	h.metrics.sessionOpened()
	if h.draining.Load() {
		// The drain began after the check above and may have missed it.
		s.close(closeRestarting, "draining")
		return
	}
	s.armExpiry(claims)
	if err := h.welcome(s, f); err != nil {
		h.log.Warn("hello failed", "session", s.id, "user", s.user, "err", err)
		s.close(closeTryLater, "broker unavailable, try again")
	}
}

// refuseUser closes a hello whose user has MaxConnsPerUser sessions.
func (s *Session) refuseUser() {
	s.hub.metrics.refused(reasonMaxConnsPerUser)
	s.close(closeRateLimited, "too many sessions for this user (--max-conns-per-user)")
}

// reasonMaxConnsPerUser labels hellos refused by MaxConnsPerUser.
const reasonMaxConnsPerUser = "max_conns_per_user"

// admit spends the accept rate on a hello of kind that passed its token
// checks, waiting for a token if need be (see admission.Gate). It reports
// whether the session may start; if not, the connection is closed (4029
// when the server is too busy).
func (s *Session) admit(kind admission.Kind) bool {
	h := s.hub
	g := h.gate
	if g == nil {
		h.metrics.hello(kind, admission.Admitted)
		return true
	}
	w, res := g.Enter(kind)
	if w != nil {
		s.mu.Lock()
		closing := s.closing
		if !closing {
			s.waiter = w
		}
		s.mu.Unlock()
		// A drain that began before Enter queued w missed it (it cancels
		// the waiters there are after it sets draining).
		if closing || h.draining.Load() {
			g.Cancel(w)
		}
		res = w.Wait()
		s.mu.Lock()
		s.waiter = nil
		s.mu.Unlock()
	}
	h.metrics.hello(kind, res)
	switch res {
	case admission.Admitted:
		return true
	case admission.Full:
		h.metrics.refused("accept_queue_full")
	case admission.TimedOut:
		h.metrics.refused("accept_timeout")
	default:
		// Cancelled: the connection is gone, or the hub drains.
		s.close(closeRestarting, "draining")
		return false
	}
	s.close(closeRateLimited, "server busy, back off")
	return false
}

// authenticate checks hello's token (or, in dev mode, its user). It returns
// the claims, or the reason for refusing.
func (h *Hub) authenticate(f *protocol.ClientFrame) (auth.Claims, string) {
	if f.Token == "" {
		if !h.cfg.Dev {
			return auth.Claims{}, "hello needs a token"
		}
		if !protocol.ValidUser(f.User) {
			return auth.Claims{}, "dev mode: hello.user must be a valid user id"
		}
		return auth.Claims{User: f.User}, ""
	}
	if h.cfg.Verifier == nil {
		return auth.Claims{}, "this server verifies no tokens"
	}
	c, err := h.cfg.Verifier.Verify(f.Token)
	if err != nil {
		if errors.Is(err, auth.ErrExpired) {
			return auth.Claims{}, "token expired"
		}
		return auth.Claims{}, "invalid token"
	}
	return c, ""
}

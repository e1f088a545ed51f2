package hub

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/admission"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/transport"
)

// Defaults of Config fields.
const (
	DefaultMaxFrameBytes  = 64 << 10
	DefaultMaxRooms       = 128
	DefaultRate           = 50
	DefaultBurst          = 100
	DefaultSendQueueBytes = 1 << 20
	DefaultHelloTimeout   = 5 * time.Second
	DefaultHeartbeat      = 25 * time.Second
	DefaultDrainSpread    = 2 * time.Second
	DefaultHistorySize    = 100
	DefaultSessionTTL     = 5 * time.Minute
	DefaultWriteTimeout   = 10 * time.Second
	DefaultBrokerTimeout  = 5 * time.Second
)

// ErrDraining is returned for work refused because the hub is draining.
var ErrDraining = errors.New("hub: draining")

// Broker is what a hub asks of the bus: the rooms' message path, presence,
// session states and the instance registry. Every broker.Broker satisfies
// it; the hub never closes it.
type Broker interface {
	broker.Rooms
	broker.Presence
	broker.SessionStore
	broker.Registry
}

// Verifier checks a token and returns its claims.
type Verifier interface {
	Verify(token string) (auth.Claims, error)
}

// Config configures a Hub. The zero value of each field means its default.
type Config struct {
	// Broker carries every message. Required.
	Broker Broker
	// Verifier checks hello and refresh tokens. Nil accepts no token, so
	// only Dev mode can admit anyone.
	Verifier Verifier
	// Dev accepts hello.user without a token and any Origin.
	Dev bool
	// InstanceID names this instance. Default: "i_" and random characters.
	InstanceID string
	// Address is the address this instance advertises in the registry.
	Address string
	// AllowedOrigins lists the Origins accepted on upgrade; "*" accepts any.
	// Default: only the request's own host.
	AllowedOrigins []string
	// MaxFrameBytes is the largest client frame. Default: 65536.
	MaxFrameBytes int64
	// MaxRooms is how many rooms one session may join, its inbox not
	// counted. Default: 128.
	MaxRooms int
	// Rate is the client frames per second a session may send. Default: 50.
	Rate float64
	// Burst is the token bucket's size. Default: 100.
	Burst int
	// SendQueueBytes bounds the encoded frames queued for one session before
	// it is closed as a slow consumer. Default: 1 MiB.
	SendQueueBytes int
	// MaxQueuedBytes is the instance's ceiling on frames queued over all
	// sessions; past it, sessions holding at least their share are closed
	// as slow consumers. Default: no ceiling.
	MaxQueuedBytes int64
	// HelloTimeout is how long a new connection may take to send hello.
	// Default: 5s.
	HelloTimeout time.Duration
	// Heartbeat is the ping interval. A session that answers nothing for two
	// intervals is closed. Default: 25s.
	Heartbeat time.Duration
	// DrainSpread is the window over which drained clients are told to
	// reconnect. Default: 2s.
	DrainSpread time.Duration
	// HistorySize caps history reads; it should equal the broker's history
	// size. Default: 100.
	HistorySize int
	// SessionTTL is how long a session's state stays resumable with
	// hello.session. Default: 5m.
	SessionTTL time.Duration
	// NoDirect forbids send (direct messages) between users.
	NoDirect bool
	// WriteTimeout bounds each socket write. Default: 10s.
	WriteTimeout time.Duration
	// MaxWriteDelay is the longest the server holds back a session's next
	// write while its writers are saturated, so that more messages go out
	// in one write (see transport.Config). Default: 64ms; negative: never.
	MaxWriteDelay time.Duration
	// NoIOUring makes socket writes one write(2) each rather than io_uring
	// submissions (see transport.Config).
	NoIOUring bool
	// BrokerTimeout bounds each broker call made for a client, publishes
	// excepted (see Hub.publish). Default: 5s.
	BrokerTimeout time.Duration
	// Admission limits (docs/operations.md, "Admission"). The zero value of
	// each means no limit.
	//
	// MaxConns is the most WebSocket connections open at once; past it an
	// upgrade is answered 503 with Retry-After.
	MaxConns int
	// MaxConnsPerIP is the most connections open at once from one client
	// address (see TrustedProxies); past it an upgrade is answered 503.
	MaxConnsPerIP int
	// MaxConnsPerUser is the most sessions one user may have on this
	// instance; a hello past it is closed with 4029.
	MaxConnsPerUser int
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// address and whose X-Forwarded-Host is the host the Origin check
	// compares with. Default: none.
	TrustedProxies admission.Proxies
	// AcceptRate is the sessions per second admitted at hello, resuming
	// ones first; 0 admits every hello at once.
	AcceptRate float64
	// AcceptBurst is how many hellos pass at once after a quiet time.
	// Default: AcceptRate, at least 1.
	AcceptBurst int
	// AcceptQueue bounds the hellos waiting for a token; a hello waits at
	// most HelloTimeout. Default: AcceptRate × HelloTimeout, at least
	// AcceptBurst.
	AcceptQueue int
	// Metrics receives counters; nil counts nothing.
	Metrics *Metrics
	// TransportMetrics receives the connections' counters; nil counts
	// nothing.
	TransportMetrics *transport.Metrics
	// Logger receives the hub's logs; nil discards them.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Broker == nil {
		return errors.New("hub: Config.Broker is required")
	}
	if c.InstanceID == "" {
		c.InstanceID = "i_" + rand.Text()[:12]
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	def(&c.MaxRooms, DefaultMaxRooms)
	def(&c.Burst, DefaultBurst)
	def(&c.SendQueueBytes, DefaultSendQueueBytes)
	def(&c.HistorySize, DefaultHistorySize)
	defDur(&c.HelloTimeout, DefaultHelloTimeout)
	defDur(&c.Heartbeat, DefaultHeartbeat)
	defDur(&c.DrainSpread, DefaultDrainSpread)
	defDur(&c.SessionTTL, DefaultSessionTTL)
	defDur(&c.WriteTimeout, DefaultWriteTimeout)
	defDur(&c.BrokerTimeout, DefaultBrokerTimeout)
	switch {
	case c.MaxFrameBytes < 0:
		return errors.New("hub: Config.MaxFrameBytes must be positive")
	case c.MaxRooms < 0:
		return errors.New("hub: Config.MaxRooms must be positive")
	case c.Rate < 0 || c.Burst < 0:
		return errors.New("hub: Config.Rate and Config.Burst must be positive")
	case c.SendQueueBytes < 0 || c.MaxQueuedBytes < 0:
		return errors.New("hub: Config.SendQueueBytes must be positive")
	case c.MaxConns < 0 || c.MaxConnsPerIP < 0 || c.MaxConnsPerUser < 0:
		return errors.New("hub: Config.MaxConns, MaxConnsPerIP and MaxConnsPerUser must not be negative")
	case c.AcceptRate < 0 || math.IsInf(c.AcceptRate, 0) || math.IsNaN(c.AcceptRate) || c.AcceptBurst < 0 || c.AcceptQueue < 0:
		return errors.New("hub: Config.AcceptRate, AcceptBurst and AcceptQueue must not be negative")
	case c.HelloTimeout < 0 || c.Heartbeat < 0 || c.DrainSpread < 0 || c.SessionTTL < 0 || c.WriteTimeout < 0 || c.BrokerTimeout < 0:
		return errors.New("hub: durations in Config must be positive")
	}
	if c.AcceptRate > 0 {
		if c.AcceptBurst == 0 {
			c.AcceptBurst = max(1, int(math.Ceil(c.AcceptRate)))
		}
		if c.AcceptQueue == 0 {
			c.AcceptQueue = max(c.AcceptBurst, int(math.Ceil(c.AcceptRate*c.HelloTimeout.Seconds())))
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Hub is the core of one instance. It is safe for concurrent use. Create it
// with New, serve WebSockets with ServeHTTP, run its background loops with
// Run, and end it with Drain.
type Hub struct {
	cfg     Config
	broker  Broker
	log     *slog.Logger
	metrics *Metrics
	started time.Time

	mu       sync.RWMutex
	sessions map[*Session]struct{}
	users    map[string][]*Session // a user's sessions on this instance
	rooms    map[string]*room

	control   *control
	transport *transport.Server
	deadlines *deadlines
	draining  atomic.Bool
	// saveMu serializes session state saves.
	saveMu sync.Mutex
	// flushTick counts flushStates calls: which slice is next.
	flushTick atomic.Uint32
	// pingSlices is how many slices the sessions are pinged in (see
	// heartbeatSlices); pingTick counts heartbeat calls, pingNext the
	// sessions added: the slice to ping next, and the slice of the next
	// session.
	pingSlices         uint32
	pingTick, pingNext atomic.Uint32
	// conns counts upgraded connections whose handler has not returned.
	conns atomic.Int64
	// admitted counts connections against MaxConns and MaxConnsPerIP,
	// from before the upgrade until Session.Closed.
	admitted *admission.Conns
	// gate spends AcceptRate at hello; nil without one.
	gate *admission.Gate
	// stopped is closed by Drain when every session has ended or the drain
	// timed out; Run returns then.
	stopOnce sync.Once
	stopped  chan struct{}
}

// New returns a Hub for cfg.
func New(cfg Config) (*Hub, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:      cfg,
		broker:   cfg.Broker,
		log:      cfg.Logger.With("instance", cfg.InstanceID),
		metrics:  cfg.Metrics,
		started:  time.Now(),
		sessions: make(map[*Session]struct{}),
		users:    make(map[string][]*Session),
		rooms:    make(map[string]*room),
		stopped:  make(chan struct{}),
		admitted: &admission.Conns{Max: cfg.MaxConns, MaxPerAddr: cfg.MaxConnsPerIP},
	}
	if cfg.AcceptRate > 0 {
		g, err := admission.NewGate(admission.GateConfig{
			Rate: cfg.AcceptRate, Burst: cfg.AcceptBurst, Queue: cfg.AcceptQueue, Wait: cfg.HelloTimeout,
		})
		if err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		h.gate = g
	}
	h.control = &control{h: h}
	h.deadlines = newDeadlines(h.deadlineReached)
	h.pingSlices = pingSlices(cfg.Heartbeat)
	tr, err := transport.NewServer(transport.Config{
		MaxMessageBytes: cfg.MaxFrameBytes, SendQueueBytes: cfg.SendQueueBytes, MaxQueuedBytes: cfg.MaxQueuedBytes,
		WriteTimeout: cfg.WriteTimeout, MaxWriteDelay: cfg.MaxWriteDelay, Rate: cfg.Rate, Burst: cfg.Burst,
		NoIOUring: cfg.NoIOUring, Metrics: cfg.TransportMetrics,
	})
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	h.transport = tr
	return h, nil
}

// InstanceID returns the id of this instance.
func (h *Hub) InstanceID() string { return h.cfg.InstanceID }

// SetAddress sets the address shown in the instance registry. Call it
// before Run.
func (h *Hub) SetAddress(addr string) { h.cfg.Address = addr }

// Draining reports whether Drain has begun.
func (h *Hub) Draining() bool { return h.draining.Load() }

// SessionCount returns the number of connected sessions.
func (h *Hub) SessionCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.sessions)
}

// UserCount returns the number of users with a session on this instance.
func (h *Hub) UserCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users)
}

// RoomCount returns the number of rooms with local members.
func (h *Hub) RoomCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.rooms)
}

// brokerCtx bounds one broker call.
func (h *Hub) brokerCtx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, h.cfg.BrokerTimeout)
}

// QueuedBytes returns the bytes of frames queued over all sessions.
func (h *Hub) QueuedBytes() int64 { return h.transport.QueuedBytes() }

// addSession adds s to the hub, or reports false when its user has
// MaxConnsPerUser sessions already.
func (h *Hub) addSession(s *Session) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if limit := h.cfg.MaxConnsPerUser; limit > 0 && len(h.users[s.user]) >= limit {
		return false
	}
	s.pingSlice = uint8(h.pingNext.Add(1) % h.pingSlices)
	h.sessions[s] = struct{}{}
	h.users[s.user] = append(h.users[s.user], s)
	return true
}

// userFull reports whether user has MaxConnsPerUser sessions here.
func (h *Hub) userFull(user string) bool {
	limit := h.cfg.MaxConnsPerUser
	if limit == 0 {
		return false
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.users[user]) >= limit
}

// ConnCount returns the number of WebSocket connections open, sessions
// and connections that have not sent hello yet.
func (h *Hub) ConnCount() int { return h.admitted.Open() }

func (h *Hub) removeSession(s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, s)
	us := slices.DeleteFunc(h.users[s.user], func(x *Session) bool { return x == s })
	if len(us) == 0 {
		delete(h.users, s.user)
	} else {
		h.users[s.user] = us
	}
}

// snapshot returns the current sessions.
func (h *Hub) snapshot() []*Session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*Session, 0, len(h.sessions))
	for s := range h.sessions {
		out = append(out, s)
	}
	return out
}

// sessionsWhere returns the sessions for which keep is true. keep runs
// under the hub's read lock.
func (h *Hub) sessionsWhere(keep func(*Session) bool) []*Session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []*Session
	for s := range h.sessions {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// DisconnectUser closes every local session of user with close code 4004
// and returns how many there were.
func (h *Hub) DisconnectUser(user string) int {
	h.mu.RLock()
	list := slices.Clone(h.users[user])
	h.mu.RUnlock()
	for _, s := range list {
		s.close(closeDisconnected, "disconnected by the server")
	}
	return len(list)
}

// newID returns a random id with prefix.
func newID(prefix string) string { return prefix + rand.Text()[:20] }

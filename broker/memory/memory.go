package memory

import (
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// Defaults of Config.
const (
	DefaultHistorySize    = 100
	DefaultHistoryTTL     = 5 * time.Minute
	DefaultIdempotencyTTL = 5 * time.Minute
	DefaultInstanceTTL    = 30 * time.Second
	// DefaultHistoryMaxBytes is the default budget of all rooms' history
	// together: 256 MiB.
	DefaultHistoryMaxBytes = 256 << 20
)

// Config configures a Broker. The zero value of each field (or a negative
// one) means its default.
type Config struct {
	// HistorySize is how many messages of each room history keeps.
	// Default: 100.
	HistorySize int
	// HistoryTTL is how long a room's epoch, offset and history live after
	// its last publish. Default: 5m.
	HistoryTTL time.Duration
	// IdempotencyTTL is how long a publish key is remembered. Default: 5m.
	IdempotencyTTL time.Duration
	// HistoryMaxBytes bounds the bytes the history of all rooms together
	// holds (see MessageBytes). Over it, the oldest messages of the whole
	// broker leave history first, exactly as if --history-size had trimmed
	// them: a recovery that needs one of them gets recovered: false.
	// Default: 256 MiB.
	HistoryMaxBytes int64
	// InstanceTTL is how long an instance stays in Instances after its last
	// Heartbeat. Default: 30s.
	InstanceTTL time.Duration
	// Now is the clock, for tests. Default: time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.HistorySize <= 0 {
		c.HistorySize = DefaultHistorySize
	}
	if c.HistoryTTL <= 0 {
		c.HistoryTTL = DefaultHistoryTTL
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.HistoryMaxBytes <= 0 {
		c.HistoryMaxBytes = DefaultHistoryMaxBytes
	}
	if c.InstanceTTL <= 0 {
		c.InstanceTTL = DefaultInstanceTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Broker is the in-process broker. It is safe for concurrent use; it starts
// no goroutines, and Close only makes every later call fail with
// broker.ErrClosed.
type Broker struct {
	cfg        Config
	sweepEvery time.Duration
	closed     atomic.Bool

	mu        sync.RWMutex // guards rooms and nextSweep; taken before a room's lock
	rooms     map[string]*room
	nextSweep time.Time

	presenceMu sync.Mutex
	presence   map[string]map[string]broker.PresenceEntry // room → session → entry

	sessionsMu        sync.Mutex
	sessions          map[string]savedSession
	nextSessionsSweep time.Time

	instancesMu sync.Mutex
	instances   map[string]instance

	// ageMu guards the age list: every message held in any room's history,
	// oldest first, and historyBytes, their total MessageBytes. It is a
	// leaf lock, taken with a room's lock held.
	ageMu        sync.Mutex
	age          entryList
	historyBytes atomic.Int64
}

var _ broker.Broker = (*Broker)(nil)

// New returns a Broker configured by cfg.
func New(cfg Config) *Broker {
	cfg = cfg.withDefaults()
	b := &Broker{
		cfg:        cfg,
		sweepEvery: min(cfg.HistoryTTL, cfg.IdempotencyTTL),
		rooms:      make(map[string]*room),
		presence:   make(map[string]map[string]broker.PresenceEntry),
		sessions:   make(map[string]savedSession),
		instances:  make(map[string]instance),
	}
	now := cfg.Now()
	b.nextSweep = now.Add(b.sweepEvery)
	b.nextSessionsSweep = now
	return b
}

// Close makes every later call fail with broker.ErrClosed and drops all
// state and subscriptions. No Handler is called after Close returns. Closing
// twice is a no-op.
func (b *Broker) Close(ctx context.Context) error {
	if b.closed.Swap(true) {
		return nil
	}
	b.mu.Lock()
	for _, r := range b.rooms {
		// Taking each room's lock waits for a delivery in progress, so no
		// Handler runs once Close has returned.
		r.mu.Lock()
		r.removed = true
		r.subs = nil
		r.keys = nil
		r.history = ring{}
		r.mu.Unlock()
	}
	b.rooms = nil
	b.mu.Unlock()
	b.ageMu.Lock()
	b.age = entryList{}
	b.historyBytes.Store(0)
	b.ageMu.Unlock()

	b.presenceMu.Lock()
	b.presence = nil
	b.presenceMu.Unlock()
	b.sessionsMu.Lock()
	b.sessions = nil
	b.sessionsMu.Unlock()
	b.instancesMu.Lock()
	b.instances = nil
	b.instancesMu.Unlock()
	return nil
}

// check returns why a call must not proceed: the broker is closed or ctx is
// done.
func (b *Broker) check(ctx context.Context) error {
	if b.closed.Load() {
		return broker.ErrClosed
	}
	return ctx.Err()
}

func (b *Broker) now() time.Time { return b.cfg.Now() }

// newEpoch returns a random epoch: 12 lower-case base32 characters (60
// bits).
func newEpoch() string { return strings.ToLower(rand.Text()[:12]) }

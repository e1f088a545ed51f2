package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// Defaults of Config.
const (
	DefaultPrefix         = "sb"
	DefaultHistorySize    = 100
	DefaultHistoryTTL     = 5 * time.Minute
	DefaultIdempotencyTTL = 5 * time.Minute
	DefaultPresenceTTL    = 30 * time.Second
	DefaultProbeInterval  = time.Second
	DefaultTimeout        = 5 * time.Second
)

// Config configures a Broker. The zero value of each field means its
// default; negative values are refused by New.
type Config struct {
	// URL locates Redis: redis://[user:password@]host:port[/db], rediss://
	// for TLS, unix:///path/to/socket. Required.
	URL string
	// Prefix starts every key and channel name. It must not contain '{' or
	// '}', which would break the room hash tags. Default: "sb".
	Prefix string
	// InstanceID names this instance: its liveness probe channel and its
	// Redis client name. Default: a random id.
	InstanceID string
	// HistorySize is how many messages of each room history keeps.
	// Default: 100.
	HistorySize int
	// HistoryTTL is how long a room's epoch, offset and history live after
	// its last publish. Default: 5m.
	HistoryTTL time.Duration
	// IdempotencyTTL is how long a publish key is remembered. Default: 5m.
	IdempotencyTTL time.Duration
	// PresenceTTL is how long the instance's registry entry and its
	// presence entries live without a Heartbeat. Default: 30s.
	PresenceTTL time.Duration
	// ProbeInterval is how often a canary is published to this instance's
	// own probe channel. When no canary has come back through the pub/sub
	// connection for three intervals, the connection is treated as dead and
	// replaced. Default: 1s.
	ProbeInterval time.Duration
	// Timeout bounds every Redis command whose context has no earlier
	// deadline, and each connection attempt. Default: 5s.
	Timeout time.Duration
	// Logger receives lifecycle and trouble reports. Default: silent.
	Logger *slog.Logger

	// presenceKeyTTL overrides the TTL of room presence keys, for tests.
	// Default: see presenceKeyTTL.
	presenceKeyTTL time.Duration
}

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("redis: Config.URL is empty")
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		return c, fmt.Errorf("redis: Config.Prefix %q contains '{' or '}'", c.Prefix)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"HistorySize", int64(c.HistorySize)},
		{"HistoryTTL", int64(c.HistoryTTL)},
		{"IdempotencyTTL", int64(c.IdempotencyTTL)},
		{"PresenceTTL", int64(c.PresenceTTL)},
		{"ProbeInterval", int64(c.ProbeInterval)},
		{"Timeout", int64(c.Timeout)},
	} {
		if f.v < 0 {
			return c, fmt.Errorf("redis: Config.%s is negative", f.name)
		}
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.InstanceID == "" {
		c.InstanceID = "i_" + strings.ToLower(rand.Text()[:16])
	}
	if c.HistorySize == 0 {
		c.HistorySize = DefaultHistorySize
	}
	if c.HistoryTTL == 0 {
		c.HistoryTTL = DefaultHistoryTTL
	}
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.PresenceTTL == 0 {
		c.PresenceTTL = DefaultPresenceTTL
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HistoryTTL", c.HistoryTTL}, {"IdempotencyTTL", c.IdempotencyTTL}, {"PresenceTTL", c.PresenceTTL}} {
		if d.v < time.Millisecond {
			return c, fmt.Errorf("redis: Config.%s %v is below Redis's millisecond resolution", d.name, d.v)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Broker is the Redis broker. It is safe for concurrent use. It runs two
// goroutines (the controller and the dispatcher, see the package
// documentation), and briefly one more per connection being closed; Close
// stops and waits for all of them.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	client rueidis.Client

	// Names of the instance-wide keys and channels, and the millisecond
	// forms of the TTLs that scripts take.
	probeChannel     string
	instancesKey     string
	heartbeatsKey    string
	liveKey          string
	historyTTLms     string
	idempotencyMs    string
	presenceTTLms    string
	presenceKeyTTLms string
	historySizeArg   string

	// token tells this Broker's probe markers from those of another broker
	// that was given the same InstanceID.
	token string
	// incarnation names this Broker in the liveness set, which its
	// presence entries hang on: InstanceID/token, so that an instance
	// restarted under the same id does not revive its predecessor's
	// entries, and two processes given one id do not share liveness.
	incarnation string

	gen        atomic.Pointer[generation]
	genChanged chan struct{} // cap 1: the generation changed; resynchronise
	genCheck   chan struct{} // cap 1: check the generation soon

	closed atomic.Bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   <-chan struct{} // closed when Close starts

	requests chan *request
	drains   chan chan struct{} // Close's drain barriers
	queue    queue

	// Pub/sub liveness, written by the controller and the pub/sub reader.
	live       atomic.Bool  // the pub/sub connection is up and subscribed
	markerSeen atomic.Int64 // unix nanoseconds when a probe marker last came back
	markerSeq  atomic.Uint64

	// Presence this Broker added, so that it can renew and restore it.
	// restoreMu lets one restore run at a time. rewriteMu is held shared
	// by AddPresence and RemovePresence around their change of mine and
	// its write to Redis, and exclusively while a batch of rooms is written
	// again from mine. Lock order: restoreMu, rewriteMu, presenceMu (a
	// leaf).
	restoreMu     sync.Mutex
	rewriteMu     sync.RWMutex
	restoreWanted atomic.Uint64 // restores requested
	restoreDone   atomic.Uint64 // requests answered by a completed restore
	restoreReq    chan struct{} // cap 1: wakes the restorer

	presenceMu     sync.Mutex
	mine           map[string]*roomPresence // room → this Broker's entries
	renewOrder     []string                 // the rooms of mine, in renewal order
	renewCursor    int                      // renewOrder[renewCursor:] are due this round
	renewCredit    float64                  // rooms owed a renewal
	renewedAt      time.Time
	renewEvery     time.Duration // each room's key TTL is renewed this often
	presenceKeyTTL time.Duration
}

var (
	_ broker.Broker  = (*Broker)(nil)
	_ broker.Checker = (*Broker)(nil)
)

// New connects to Redis and returns a Broker configured by cfg. It fails,
// with an error wrapping broker.ErrUnavailable, if Redis cannot be reached
// before ctx ends; once New has returned, the Broker rides out outages by
// itself.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opt, err := rueidis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis: Config.URL: %w", err)
	}
	b := &Broker{
		cfg:            cfg,
		log:            cfg.Logger.With("instance", cfg.InstanceID),
		probeChannel:   cfg.Prefix + ":probe:" + cfg.InstanceID,
		instancesKey:   cfg.Prefix + ":instances",
		heartbeatsKey:  cfg.Prefix + ":instances:hb",
		liveKey:        cfg.Prefix + ":instances:live",
		historyTTLms:   millis(cfg.HistoryTTL),
		idempotencyMs:  millis(cfg.IdempotencyTTL),
		presenceTTLms:  millis(cfg.PresenceTTL),
		historySizeArg: strconv.Itoa(cfg.HistorySize),
		token:          strings.ToLower(rand.Text()[:8]),
		genChanged:     make(chan struct{}, 1),
		genCheck:       make(chan struct{}, 1),
		requests:       make(chan *request),
		drains:         make(chan chan struct{}),
		restoreReq:     make(chan struct{}, 1),
		mine:           make(map[string]*roomPresence),
		renewedAt:      time.Now(),
		presenceKeyTTL: presenceKeyTTL(cfg),
	}
	// The presence script splits a stored value at its last NUL.
	b.incarnation = strings.ReplaceAll(cfg.InstanceID, "\x00", "") + "/" + b.token
	b.presenceKeyTTLms = millis(b.presenceKeyTTL)
	b.renewEvery = max(b.presenceKeyTTL/presenceRenewalsPerTTL, time.Millisecond)
	b.queue.wake = make(chan struct{}, 1)
	b.gen.Store(&generation{})

	opt.DisableCache = true
	// One auto-pipelined connection carries every command: Redis runs them
	// one at a time anyway, and measured on loopback one connection
	// publishes as fast as rueidis's default four. It also means the probe
	// and Ready's PING test the very connection publishes use, so after an
	// outage no idle connection still holds a dead socket when Ready says
	// yes. Pub/sub gets a second, dedicated connection.
	opt.PipelineMultiplex = -1
	opt.ClientName = "switchboard:" + cfg.InstanceID
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = cfg.Timeout
	}
	if opt.ConnWriteTimeout == 0 {
		opt.ConnWriteTimeout = cfg.Timeout
	}
	if opt.Sentinel.MasterSet == "" {
		// Sentinel connections would not answer the generation handshake,
		// and sentinel setups choose their primary themselves.
		opt.ForceSingleClient = true
		opt.DialCtxFn = b.dialer(opt)
	}
	b.client, err = rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("redis: connect to %s: %w", opt.InitAddress, errors.Join(broker.ErrUnavailable, err))
	}
	if err := b.checkGeneration(ctx); err != nil {
		b.client.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.done = runCtx.Done()
	started := make(chan struct{})
	d := newDispatcher(b)
	b.wg.Go(func() { d.run(runCtx) })
	c := newController(b, started)
	b.wg.Go(func() { c.run(runCtx) })
	b.wg.Go(func() { b.restorer(runCtx) })

	select {
	case <-started:
	case <-ctx.Done():
		_ = b.Close(context.Background())
		return nil, fmt.Errorf("redis: subscribe: %w", errors.Join(broker.ErrUnavailable, ctx.Err()))
	}
	b.log.Info("redis broker connected", "addr", opt.InitAddress, "prefix", cfg.Prefix)
	return b, nil
}

// Close stops the Broker's goroutines and closes its connections. Calls
// made after Close started fail with broker.ErrClosed. Messages published
// before Close was called are first handed to the handlers, as far as the
// pub/sub connection allows within ctx and three probe intervals; no
// Handler is called once Close has returned. Closing twice is a no-op.
func (b *Broker) Close(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	b.drain(ctx)
	b.cancel()
	b.wg.Wait()
	b.client.Close()
	b.live.Store(false)
	return nil
}

// drain waits until a probe marker published now has been dispatched:
// everything published before it has been handed to the handlers by then.
func (b *Broker) drain(ctx context.Context) {
	if !b.live.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, b.probeDeadline())
	defer cancel()
	done := make(chan struct{})
	select {
	case b.drains <- done:
	case <-ctx.Done():
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Ready reports whether the Broker can do its work: nil when Redis answers
// PING and the pub/sub connection is up and has recently carried a probe
// marker; otherwise an error wrapping broker.ErrUnavailable.
func (b *Broker) Ready(ctx context.Context) error {
	if b.closed.Load() {
		return fmt.Errorf("ready: %w", broker.ErrClosed)
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	if err := b.client.Do(ctx, b.client.B().Ping().Build()).Error(); err != nil {
		return b.fail("ready", ctx, err)
	}
	if !b.live.Load() {
		return fmt.Errorf("ready: pub/sub connection down: %w", broker.ErrUnavailable)
	}
	if age := time.Since(time.Unix(0, b.markerSeen.Load())); age > b.probeDeadline() {
		return fmt.Errorf("ready: no probe marker for %v: %w", age.Round(time.Millisecond), broker.ErrUnavailable)
	}
	return nil
}

// probeDeadline is how long the pub/sub connection may go without carrying
// a probe marker before it counts as dead.
func (b *Broker) probeDeadline() time.Duration { return 3 * b.cfg.ProbeInterval }

// timeout bounds ctx by Config.Timeout.
func (b *Broker) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= b.cfg.Timeout {
		// The caller's deadline comes first: a context of our own would
		// only cost a timer and a cancellation link per call.
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, b.cfg.Timeout)
}

// check returns why a call must not start: the broker is closed or ctx is
// done.
func (b *Broker) check(op string, ctx context.Context) error {
	if b.closed.Load() {
		return fmt.Errorf("%s: %w", op, broker.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// fail turns the error of a Redis call into the broker's errors: closed
// stays closed; Redis's own complaints about a command stay as they are;
// everything else (network, timeouts, a server that is loading, read-only
// or busy) wraps broker.ErrUnavailable.
func (b *Broker) fail(op string, ctx context.Context, err error) error {
	if b.closed.Load() || errors.Is(err, rueidis.ErrClosing) {
		return fmt.Errorf("%s: %w", op, broker.ErrClosed)
	}
	if rerr, ok := rueidis.IsRedisErr(err); ok {
		msg := rerr.Error()
		switch {
		case strings.HasPrefix(msg, "READONLY"), strings.HasPrefix(msg, "MASTERDOWN"):
			// The server is no primary (any more): the generation may
			// have changed under an open connection.
			b.askGenerationCheck()
		case rerr.IsLoading(), rerr.IsTryAgain(), rerr.IsClusterDown(), strings.HasPrefix(msg, "BUSY"):
		default:
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return fmt.Errorf("%s: %w", op, errors.Join(broker.ErrUnavailable, err))
}

// newEpoch returns a random epoch: 12 lower-case base32 characters (60
// bits), like the memory broker's.
func newEpoch() string { return strings.ToLower(rand.Text()[:12]) }

// millis formats d in whole milliseconds, at least 1.
func millis(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

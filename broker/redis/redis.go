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

	"github.com/prometheus/client_golang/prometheus"
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
	DefaultDispatchQueue  = 1 << 16
)

// Config configures a Broker. The zero value of each field means its
// default; negative values are refused by New.
type Config struct {
	// URL locates Redis: redis://[user:password@]host:port[/db], rediss://
	// for TLS, unix:///path/to/socket. With Cluster or SentinelMaster it is a
	// comma-separated list of Redis Cluster seed nodes or of sentinels, each
	// a URL or a bare host:port; user, password, TLS and database come from
	// the first. (redis://host:port?master_set=NAME&addr=host2:port2 selects
	// Sentinel too.) Required.
	URL string
	// Cluster says that URL lists seed nodes of a Redis Cluster (7.0 or
	// later). Rooms are spread over the cluster's shards by hash slot; each
	// shard carries the pub/sub of its own rooms.
	Cluster bool
	// SentinelMaster is the name under which the sentinels listed in URL
	// monitor the primary; the Broker follows the primary they name through
	// failovers.
	SentinelMaster string
	// Prefix starts every key and channel name. It must not contain '{' or
	// '}', which would break the room hash tags. Default: "sb".
	Prefix string
	// InstanceID names this instance: its liveness probe channels and its
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
	// own probe channel on each shard. When no canary has come back through
	// a shard's pub/sub connection for three intervals, the connection is
	// treated as dead and replaced. Default: 1s.
	ProbeInterval time.Duration
	// Timeout bounds every Redis command whose context has no earlier
	// deadline, and each connection attempt. Default: 5s.
	Timeout time.Duration
	// DispatchQueue bounds the pub/sub messages waiting to be handed to the
	// handlers. A message that arrives while the queue is full is dropped
	// and its room read from history instead, once the queue has room (see
	// the package documentation). Default: 65536.
	DispatchQueue int
	// Registerer, if set, receives the Broker's metrics: the dispatch
	// queue's depth, the messages dropped because it was full, and the
	// catch-up reads of missed messages. Default: none.
	Registerer prometheus.Registerer
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
	if c.Cluster && c.SentinelMaster != "" {
		return c, errors.New("redis: Config.Cluster and Config.SentinelMaster exclude each other")
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
		{"DispatchQueue", int64(c.DispatchQueue)},
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
	if c.DispatchQueue == 0 {
		c.DispatchQueue = DefaultDispatchQueue
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

// clientOption turns cfg's URL (one URL, or a list of them) into rueidis's
// options: every URL adds its address; the first gives credentials, TLS
// and database.
func clientOption(cfg Config) (rueidis.ClientOption, error) {
	var urls []string
	for u := range strings.SplitSeq(cfg.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) > 1 && !cfg.Cluster && cfg.SentinelMaster == "" {
		return rueidis.ClientOption{}, errors.New("redis: Config.URL lists several addresses: set Cluster or SentinelMaster")
	}
	var opt rueidis.ClientOption
	for i, u := range urls {
		if !strings.Contains(u, "://") {
			u = "redis://" + u
		}
		o, err := rueidis.ParseURL(u)
		if err != nil {
			return opt, fmt.Errorf("redis: Config.URL %q: %w", u, err)
		}
		if i == 0 {
			opt = o
		} else {
			opt.InitAddress = append(opt.InitAddress, o.InitAddress...)
		}
	}
	if len(urls) == 0 {
		return opt, errors.New("redis: Config.URL holds no address")
	}
	if cfg.SentinelMaster != "" {
		opt.Sentinel.MasterSet = cfg.SentinelMaster
	}
	if cfg.Cluster && opt.SelectDB != 0 {
		return opt, errors.New("redis: Config.URL selects a database, which Redis Cluster does not have")
	}
	if cfg.Cluster && opt.Sentinel.MasterSet != "" {
		return opt, errors.New("redis: Config.URL names a Sentinel master set, which does not go with Cluster")
	}
	return opt, nil
}

// Broker is the Redis broker. It is safe for concurrent use. It runs a
// goroutine per shard (one on one Redis or with Sentinel), one that
// catches rooms up per shard, the dispatcher, the presence restorer and,
// on a cluster, the topology watcher (see the package documentation); Close
// stops and waits for all of them.
type Broker struct {
	cfg Config
	log *slog.Logger
	// client carries every command: a standalone, Sentinel or cluster
	// client.
	client rueidis.Client
	// nodeOpt is the template of the clients of single cluster nodes that
	// carry each shard's pub/sub.
	nodeOpt rueidis.ClientOption
	cluster bool

	// Names of the instance-wide keys, and the millisecond forms of the
	// TTLs that scripts take.
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
	// presence entries hang on: InstanceID/random, so that an instance
	// restarted under the same id does not revive its predecessor's
	// entries, and two processes given one id do not share liveness. It
	// changes when Redis finds it lapsed (see keepAlive).
	incarnation atomic.Pointer[string]
	// keptAt is when Redis last confirmed the incarnation live (unix ns).
	keptAt atomic.Int64

	closed atomic.Bool
	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   <-chan struct{} // closed when Close starts

	// The live path: the shards, how slots map onto them, and the
	// dispatcher's queue.
	shardsMu sync.Mutex
	shards   map[string]*shard // by address ("" on one Redis or with Sentinel)
	// moveMu is held shared by Subscribe and Unsubscribe calls and
	// exclusively while rooms move between shards.
	moveMu    sync.RWMutex
	topo      atomic.Pointer[topology]
	refreshes chan struct{} // cap 1: re-read the cluster's topology soon
	queue     queue
	metrics   *metrics
	runCtx    context.Context // the goroutines' lifetime

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
// (every shard of a cluster) before ctx ends; once New has returned, the
// Broker rides out outages and failovers by itself.
func New(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opt, err := clientOption(cfg)
	if err != nil {
		return nil, err
	}
	b := &Broker{
		cfg:            cfg,
		log:            cfg.Logger.With("instance", cfg.InstanceID),
		cluster:        cfg.Cluster,
		instancesKey:   cfg.Prefix + ":{instances}",
		heartbeatsKey:  cfg.Prefix + ":{instances}:hb",
		liveKey:        cfg.Prefix + ":{instances}:live",
		historyTTLms:   millis(cfg.HistoryTTL),
		idempotencyMs:  millis(cfg.IdempotencyTTL),
		presenceTTLms:  millis(cfg.PresenceTTL),
		historySizeArg: strconv.Itoa(cfg.HistorySize),
		token:          strings.ToLower(rand.Text()[:8]),
		shards:         make(map[string]*shard),
		refreshes:      make(chan struct{}, 1),
		restoreReq:     make(chan struct{}, 1),
		mine:           make(map[string]*roomPresence),
		renewedAt:      time.Now(),
		presenceKeyTTL: presenceKeyTTL(cfg),
	}
	inc := b.newIncarnation()
	b.incarnation.Store(&inc)
	b.presenceKeyTTLms = millis(b.presenceKeyTTL)
	b.renewEvery = max(b.presenceKeyTTL/presenceRenewalsPerTTL, time.Millisecond)
	b.queue.init(cfg.DispatchQueue)
	b.metrics = newMetrics(cfg.Registerer, &b.queue)

	opt.DisableCache = true
	// One auto-pipelined connection per server carries every command:
	// Redis runs them one at a time anyway, and measured on loopback one
	// connection publishes as fast as rueidis's default four. It also
	// means the probe and Ready's PING test the very connection publishes
	// use, so after an outage no idle connection still holds a dead socket
	// when Ready says yes. Pub/sub gets a dedicated connection per shard.
	opt.PipelineMultiplex = -1
	opt.ClientName = "switchboard:" + cfg.InstanceID
	if opt.Dialer.Timeout == 0 {
		opt.Dialer.Timeout = cfg.Timeout
	}
	if opt.ConnWriteTimeout == 0 {
		opt.ConnWriteTimeout = cfg.Timeout
	}
	switch {
	case cfg.Cluster:
		b.nodeOpt = opt
		b.nodeOpt.ForceSingleClient = true
	case opt.Sentinel.MasterSet != "":
		// Reconcile with the sentinels now and then, in case a
		// +switch-master event was missed.
		opt.Sentinel.TopologyRefreshInterval = 5 * time.Second
	default:
		opt.ForceSingleClient = true
	}
	b.client, err = rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("redis: connect to %s: %w", opt.InitAddress, errors.Join(broker.ErrUnavailable, err))
	}
	if err := b.checkMode(ctx); err != nil {
		b.client.Close()
		return nil, err
	}
	if err := b.register(ctx); err != nil {
		b.client.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	b.done = runCtx.Done()
	b.runCtx = runCtx
	d := newDispatcher(b)
	b.wg.Go(func() { d.run(runCtx) })
	b.wg.Go(func() { b.restorer(runCtx) })
	if err := b.startShards(ctx); err != nil {
		_ = b.Close(context.Background())
		return nil, fmt.Errorf("redis: %w", err)
	}
	if b.cluster {
		b.wg.Go(func() { b.watchTopology(runCtx) })
	}
	b.log.Info("redis broker connected", "addr", opt.InitAddress, "prefix", cfg.Prefix, "mode", string(b.client.Mode()), "shards", len(b.shardList()))
	return b, nil
}

// checkMode makes sure the server is what cfg says: a cluster with
// Cluster, and otherwise not a cluster node (whose keys would be refused
// outside one slot).
func (b *Broker) checkMode(ctx context.Context) error {
	if b.cluster {
		if b.client.Mode() != rueidis.ClientModeCluster {
			return fmt.Errorf("redis: Config.Cluster is set but %s is not a Redis Cluster node", b.cfg.URL)
		}
		return nil
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	info, err := b.client.Do(ctx, b.client.B().Info().Section("cluster").Build()).ToString()
	if err != nil {
		if _, ok := rueidis.IsRedisErr(err); ok {
			return nil // INFO refused (ACL)
		}
		return fmt.Errorf("redis: %w", b.fail("connect", ctx, err))
	}
	if strings.Contains(info, "cluster_enabled:1") {
		return errors.New("redis: the server is a Redis Cluster node: set Config.Cluster (--redis-cluster) and list the seed nodes")
	}
	return nil
}

// Close stops the Broker's goroutines and closes its connections. Calls
// made after Close started fail with broker.ErrClosed. Messages published
// before Close was called are first handed to the handlers, as far as the
// pub/sub connections allow within ctx and three probe intervals; no
// Handler is called once Close has returned. Closing twice is a no-op.
func (b *Broker) Close(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	if b.cancel == nil { // New failed before starting anything
		b.client.Close()
		return nil
	}
	b.drain(ctx)
	b.cancel()
	b.wg.Wait()
	for _, s := range b.shardList() {
		s.closeClient()
	}
	b.client.Close()
	return nil
}

// drain waits until a probe marker published now on every shard has been
// dispatched: everything published before it has been handed to the
// handlers by then.
func (b *Broker) drain(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, b.probeDeadline())
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range b.shardList() {
		if !s.live.Load() {
			continue
		}
		wg.Go(func() {
			done := make(chan struct{})
			select {
			case s.drains <- done:
			case <-ctx.Done():
				return
			case <-s.stopped:
				return
			}
			select {
			case <-done:
			case <-ctx.Done():
			}
		})
	}
	wg.Wait()
}

// Ready reports whether the Broker can do its work: nil when Redis answers
// PING and every shard's pub/sub connection is up and has recently carried
// a probe marker; otherwise an error wrapping broker.ErrUnavailable.
func (b *Broker) Ready(ctx context.Context) error {
	if b.closed.Load() {
		return fmt.Errorf("ready: %w", broker.ErrClosed)
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	if err := b.client.Do(ctx, b.client.B().Ping().Build()).Error(); err != nil {
		return b.fail("ready", ctx, err)
	}
	for _, s := range b.shardList() {
		if err := s.ready(); err != nil {
			return fmt.Errorf("ready: %w", err)
		}
	}
	return nil
}

// probeDeadline is how long a pub/sub connection may go without carrying
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
// everything else (network, timeouts, a server that is loading, read-only,
// busy, or a cluster in the middle of a failover or resharding) wraps
// broker.ErrUnavailable.
func (b *Broker) fail(op string, ctx context.Context, err error) error {
	if b.closed.Load() || errors.Is(err, rueidis.ErrClosing) {
		return fmt.Errorf("%s: %w", op, broker.ErrClosed)
	}
	if rerr, ok := rueidis.IsRedisErr(err); ok {
		msg := rerr.Error()
		switch {
		case rerr.IsLoading(), rerr.IsTryAgain(), rerr.IsClusterDown(), isRedirect(rerr):
			b.askRefresh()
		case strings.HasPrefix(msg, "BUSY"), strings.HasPrefix(msg, "READONLY"), strings.HasPrefix(msg, "MASTERDOWN"):
		default:
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return fmt.Errorf("%s: %w", op, errors.Join(broker.ErrUnavailable, err))
}

func isRedirect(rerr *rueidis.RedisError) bool {
	_, ok := rerr.IsRedirect()
	return ok
}

// newIncarnation returns a fresh incarnation name: the instance id (the
// presence scripts split a stored value at its last NUL) and a random
// token.
func (b *Broker) newIncarnation() string {
	return strings.ReplaceAll(b.cfg.InstanceID, "\x00", "") + "/" + strings.ToLower(rand.Text()[:8])
}

// newEpoch returns a random epoch: 12 lower-case base32 characters (60
// bits), like the memory broker's.
func newEpoch() string { return strings.ToLower(rand.Text()[:12]) }

// millis formats d in whole milliseconds, at least 1.
func millis(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }

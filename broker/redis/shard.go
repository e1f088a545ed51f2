package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// shard is one Redis primary's part of the live path: the dedicated pub/sub
// connection to it, the table of the rooms subscribed on it (room →
// handlers), and its probe. On one Redis, or with Sentinel, there is one
// shard; on a cluster, one per master. One goroutine runs each shard: it
// serves Subscribe and Unsubscribe calls for its rooms in batches, probes
// its connection, replaces it when it dies, and hands rooms over when the
// cluster's slots move. It passes every change of what the dispatcher
// knows through the dispatch queue, in order with the messages, so a slow
// or dead shard holds up its own rooms only.
type shard struct {
	b *Broker
	// addr is the master's address; "" for the one shard of a standalone
	// or Sentinel setup.
	addr string
	// client reaches the shard's server: the Broker's client on one Redis
	// or with Sentinel, a client of the node alone on a cluster (closed
	// with the shard).
	client rueidis.Client
	own    bool

	started  chan struct{} // closed after the first connection
	stopped  chan struct{} // closed when run returns
	quit     chan struct{} // closed by stop
	requests chan *part
	drains   chan chan struct{} // Close's drain barriers
	ctl      chan func()        // release, adopt and other hand-overs
	lost     chan struct{}      // cap 1: the server dropped a subscription
	catchUps *catcher

	// Pub/sub liveness, written by the shard and its connection's reader.
	live       atomic.Bool  // the pub/sub connection is up and subscribed
	markerSeen atomic.Int64 // unix nanoseconds when a probe marker last came back

	// subs is the table: the rooms the shard carries, by name, with their
	// handlers; new rooms that serveSubscribe is subscribing are in it
	// without handlers until it settles them. conn numbers the current
	// connection (newConn). The connection's reader reads both, to tell a
	// subscription the server dropped (a slot that moved) from one the
	// shard gave up: a room's channel is unsubscribed after the room left
	// the table, and a connection being closed is not the current one.
	// Only the shard's goroutine changes them, holding subMu.
	subMu sync.Mutex
	subs  map[string]handlerSet
	conn  uint64

	// Owned by the shard's goroutine.
	probe   string // this instance's probe channel on the shard
	dc      rueidis.DedicatedClient
	dead    <-chan error
	backoff time.Duration
	retry   *time.Timer
	seq     uint64 // last probe marker published
	ticks   int
	closing sync.WaitGroup // connections being closed in the background
}

// Reconnection backoff bounds. The ceiling is what a failover costs beyond
// the promotion at worst: the dead primary's connection attempts back off
// until the new one answers. (Failing attempts are cheap: refused
// connections.)
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 500 * time.Millisecond
)

// maxBatch bounds the calls served together and the channels per
// SSUBSCRIBE.
const maxBatch = 1024

func newShard(b *Broker, addr string, client rueidis.Client) *shard {
	s := &shard{
		b: b, addr: addr, client: client, own: client != b.client,
		started:  make(chan struct{}),
		stopped:  make(chan struct{}),
		quit:     make(chan struct{}),
		requests: make(chan *part),
		drains:   make(chan chan struct{}),
		ctl:      make(chan func()),
		lost:     make(chan struct{}, 1),
		subs:     make(map[string]handlerSet),
	}
	s.catchUps = newCatcher(b, s)
	return s
}

// setSubs sets room's handlers in the table; a room left with none goes.
func (s *shard) setSubs(room string, set handlerSet) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	if set.len() == 0 {
		delete(s.subs, room)
		return
	}
	s.subs[room] = set
}

// dropPending takes the rooms without handlers (being subscribed) out of
// the table.
func (s *shard) dropPending(rooms []string) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, room := range rooms {
		if set, ok := s.subs[room]; ok && set.len() == 0 {
			delete(s.subs, room)
		}
	}
}

// newConn records that the current connection, if any, is current no
// more, and returns the number of the next one.
func (s *shard) newConn() uint64 {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	s.conn++
	return s.conn
}

// name describes the shard in logs and errors.
func (s *shard) name() string {
	if s.addr == "" {
		return "redis"
	}
	return "cluster node " + s.addr
}

// nodeClient returns a client of one cluster node, for a shard.
func (b *Broker) nodeClient(addr string) (rueidis.Client, error) {
	opt := b.nodeOpt
	opt.InitAddress = []string{addr}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, errors.Join(broker.ErrUnavailable, err))
	}
	return c, nil
}

// closeClient closes the shard's own client, after run returned.
func (s *shard) closeClient() {
	if s.own {
		s.client.Close()
	}
}

// stop ends the shard's goroutine and waits for it.
func (s *shard) stop() {
	close(s.quit)
	<-s.stopped
	s.catchUps.stop()
}

func (s *shard) run(ctx context.Context) {
	defer close(s.stopped)
	s.retry = time.NewTimer(0)
	defer s.retry.Stop()
	probe := time.NewTicker(s.b.cfg.ProbeInterval)
	defer probe.Stop()
	defer s.closing.Wait()
	defer s.disconnect()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.quit:
			return
		case p := <-s.requests:
			s.serve(ctx, s.collect(p))
		case done := <-s.drains:
			s.barrier(ctx, done)
		case fn := <-s.ctl:
			fn()
		case err := <-s.dead:
			s.b.log.Warn("pub/sub connection lost", "shard", s.name(), "err", err)
			s.reconnectSoon()
		case <-s.lost:
			s.b.log.Warn("pub/sub subscription dropped by the server: replacing the connection", "shard", s.name())
			s.reconnectSoon()
		case <-s.retry.C:
			if s.dc != nil {
				continue
			}
			if err := s.connect(ctx); err != nil {
				s.b.log.Warn("pub/sub connect", "shard", s.name(), "err", err)
				s.b.askRefresh()
				s.backoff = min(max(2*s.backoff, minBackoff), maxBackoff)
				s.scheduleReconnect(s.backoff/2 + rand.N(s.backoff/2+1))
				continue
			}
			s.backoff = 0
		case <-probe.C:
			s.probeTick(ctx)
		}
	}
}

// reconnectSoon drops the connection and connects again at once.
func (s *shard) reconnectSoon() {
	s.disconnect()
	s.b.askRefresh()
	s.scheduleReconnect(0)
}

func (s *shard) scheduleReconnect(after time.Duration) {
	s.retry.Stop()
	s.retry.Reset(after)
}

// call runs fn on the shard's goroutine and waits for it; it reports false
// if the shard stopped or ctx ended first.
func (s *shard) call(ctx context.Context, fn func()) bool {
	done := make(chan struct{})
	select {
	case s.ctl <- func() { fn(); close(done) }:
	case <-s.stopped:
		return false
	case <-ctx.Done():
		return false
	}
	<-done
	return true
}

// ownedRooms returns the rooms of the table that the shard serves per t.
func (s *shard) ownedRooms(t *topology) []string {
	rooms := make([]string, 0, len(s.subs))
	for room := range s.subs {
		if t.owns(s, s.b.roomSlot(room)) {
			rooms = append(rooms, room)
		}
	}
	return rooms
}

// connect opens a pub/sub connection, subscribes the probe channel and
// every room of the table the shard serves, then has the dispatcher catch
// those rooms up with Redis: whatever was published while there was no
// connection is read from history (or answered with a Reset).
func (s *shard) connect(ctx context.Context) error {
	t := s.b.topo.Load()
	probe, err := s.probeChannel(t)
	if err != nil {
		return err
	}
	conn := s.newConn()
	dc, _ := s.client.Dedicate()
	dead := dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage:      func(m rueidis.PubSubMessage) { s.onMessage(probe, m) },
		OnSubscription: func(sub rueidis.PubSubSubscription) { s.onSubscription(conn, probe, sub) },
	})
	rooms := s.ownedRooms(t)
	channels := make([]string, 0, len(rooms)+1)
	channels = append(channels, probe)
	for _, room := range rooms {
		channels = append(channels, s.b.channel(room))
	}
	if err := s.subscribe(ctx, dc, channels); err != nil {
		s.newConn()
		s.closing.Go(dc.Close)
		return err
	}
	s.dc, s.dead, s.probe = dc, dead, probe
	s.markerSeen.Store(time.Now().UnixNano())
	s.live.Store(true)
	s.resync(ctx, rooms)
	s.b.log.Info("pub/sub connected", "shard", s.name(), "rooms", len(rooms))
	select {
	case <-s.started:
		// A reconnection: the server may have lost presence entries (a
		// restart without persistence, a failover that lost writes), so
		// they are written again.
		s.b.requestRestore()
	default:
		close(s.started)
	}
	return nil
}

// probeChannel returns a probe channel of this instance whose slot the
// shard serves.
func (s *shard) probeChannel(t *topology) (string, error) {
	for n := range 1 << 16 {
		ch := s.b.cfg.Prefix + ":probe:" + s.b.cfg.InstanceID + ":{" + strconv.Itoa(n) + "}"
		if t.owns(s, s.b.slotOf(ch)) {
			return ch, nil
		}
	}
	return "", fmt.Errorf("%s serves no slot", s.name())
}

// resync publishes a marker and has the dispatcher catch rooms up.
func (s *shard) resync(ctx context.Context, rooms []string) {
	seq := s.nextSeq()
	s.b.do(func(d *dispatcher) { d.resync(s, seq, rooms) })
	if err := s.publishMarker(ctx, seq); err != nil {
		s.b.log.Debug("probe", "shard", s.name(), "err", err)
	}
}

// disconnect drops the connection. Closing it can take a second (rueidis
// says goodbye with a PING, which a wedged peer never answers), so that
// happens in the background while a new one is set up; whatever the old
// one still delivers is deduplicated by the dispatcher.
func (s *shard) disconnect() {
	if s.dc == nil {
		return
	}
	s.live.Store(false)
	s.newConn()
	dc := s.dc
	s.closing.Go(dc.Close)
	s.dc, s.dead = nil, nil
}

// subscribe sends SSUBSCRIBE for channels: on a cluster one command per
// hash slot (the commands are pipelined), otherwise in batches. rueidis
// returns when the first confirmation of each command arrives, which means
// Redis has executed it: every message published from then on is sent to
// this connection.
func (s *shard) subscribe(ctx context.Context, dc rueidis.DedicatedClient, channels []string) error {
	for batch := range s.batches(channels) {
		cmds := make(rueidis.Commands, len(batch))
		for i, chs := range batch {
			cmds[i] = dc.B().Ssubscribe().Channel(chs...).Build()
		}
		cctx, cancel := s.b.timeout(ctx)
		res := dc.DoMulti(cctx, cmds...)
		cancel()
		for _, r := range res {
			if err := r.Error(); err != nil {
				return s.b.fail("subscribe on "+s.name(), cctx, err)
			}
		}
	}
	return nil
}

// unsubscribe sends SUNSUBSCRIBE for the channels of rooms, which have
// left the table; rueidis returns once every confirmation has arrived.
func (s *shard) unsubscribe(ctx context.Context, rooms []string) {
	if s.dc == nil {
		return
	}
	channels := make([]string, len(rooms))
	for i, room := range rooms {
		channels[i] = s.b.channel(room)
	}
	for batch := range s.batches(channels) {
		cmds := make(rueidis.Commands, len(batch))
		for i, chs := range batch {
			cmds[i] = s.dc.B().Sunsubscribe().Channel(chs...).Build()
		}
		cctx, cancel := s.b.timeout(ctx)
		res := s.dc.DoMulti(cctx, cmds...)
		cancel()
		for _, r := range res {
			if err := r.Error(); err != nil {
				// The connection is in trouble; it is replaced (and only
				// the table's rooms resubscribed) once that shows.
				s.b.log.Debug("unsubscribe", "shard", s.name(), "err", err)
				return
			}
		}
	}
}

// batches yields channels grouped into commands, maxBatch commands at a
// time: on a cluster one command per hash slot (a sharded subscription
// names channels of one slot), else one command per maxBatch channels.
func (s *shard) batches(channels []string) func(yield func([][]string) bool) {
	return func(yield func([][]string) bool) {
		var cmds [][]string
		if !s.b.cluster {
			cmds = slices.Collect(slices.Chunk(channels, maxBatch))
		} else {
			bySlot := make(map[int]int) // slot → index in cmds
			for _, ch := range channels {
				slot := s.b.slotOf(ch)
				i, ok := bySlot[slot]
				if !ok {
					i = len(cmds)
					bySlot[slot] = i
					cmds = append(cmds, nil)
				}
				cmds[i] = append(cmds[i], ch)
			}
		}
		for chunk := range slices.Chunk(cmds, maxBatch) {
			if !yield(chunk) {
				return
			}
		}
	}
}

// onMessage is the pub/sub connection's message hook. It runs on rueidis's
// reading goroutine, so it only notes probe markers and queues.
func (s *shard) onMessage(probe string, m rueidis.PubSubMessage) {
	if m.Channel == probe {
		seq, ok := s.b.parseMarker(m.Message)
		if ok {
			s.markerSeen.Store(time.Now().UnixNano())
			s.b.queue.push(item{shard: s, marker: seq})
		}
		return
	}
	s.b.queue.push(item{shard: s, channel: m.Channel, payload: m.Message})
}

// onSubscription is the subscription hook of pub/sub connection number
// conn, whose probe channel is probe: a sunsubscribe on the current
// connection for a channel the shard still wants means the server dropped
// it (its slot moved to another master, or the server became a replica).
func (s *shard) onSubscription(conn uint64, probe string, sub rueidis.PubSubSubscription) {
	if sub.Kind != "sunsubscribe" {
		return
	}
	s.subMu.Lock()
	wanted := false
	if conn == s.conn {
		if room, ok := s.b.roomOfChannel(sub.Channel); ok {
			_, wanted = s.subs[room]
		} else {
			wanted = sub.Channel == probe
		}
	}
	s.subMu.Unlock()
	if wanted {
		select {
		case s.lost <- struct{}{}:
		default:
		}
	}
}

func (s *shard) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// errNotSubscribed says that Redis found no subscriber for the probe
// channel: the pub/sub connection lost its subscriptions.
var errNotSubscribed = errors.New("publish probe marker: the pub/sub connection is not subscribed")

// publishMarker publishes probe marker seq on the shard's probe channel.
func (s *shard) publishMarker(ctx context.Context, seq uint64) error {
	ctx, cancel := s.b.timeout(ctx)
	defer cancel()
	n, err := s.client.Do(ctx, s.client.B().Spublish().Channel(s.probe).Message(s.b.marker(seq)).Build()).AsInt64()
	if err != nil {
		return s.b.fail("publish probe marker on "+s.name(), ctx, err)
	}
	if n == 0 {
		return errNotSubscribed
	}
	return nil
}

// probeTick checks that probe markers come back and publishes the next
// one. Every fifth tick it also retries the rooms whose catch-up failed.
func (s *shard) probeTick(ctx context.Context) {
	if s.dc == nil {
		return
	}
	if age := time.Since(time.Unix(0, s.markerSeen.Load())); age > s.b.probeDeadline() {
		s.b.log.Warn("pub/sub probe overdue: replacing the connection", "shard", s.name(), "age", age.Round(time.Millisecond))
		s.reconnectSoon()
		return
	}
	if err := s.publishMarker(ctx, s.nextSeq()); err != nil {
		s.b.log.Debug("probe", "shard", s.name(), "err", err)
		var rerr *rueidis.RedisError
		if _, moved := redirect(err); errors.Is(err, errNotSubscribed) || moved || errors.As(err, &rerr) && rerr.IsClusterDown() {
			s.b.log.Warn("pub/sub probe failed: replacing the connection", "shard", s.name(), "err", err)
			s.reconnectSoon()
			return
		}
	}
	s.ticks++
	if s.ticks%5 == 0 {
		s.b.do(func(d *dispatcher) { d.retryBehind(s) })
	}
}

// redirect reports whether err wraps a MOVED or ASK reply.
func redirect(err error) (string, bool) {
	var rerr *rueidis.RedisError
	if errors.As(err, &rerr) {
		return rerr.IsRedirect()
	}
	return "", false
}

// barrier closes done once everything published on the shard before now
// has been dispatched, or at once if the connection is down.
func (s *shard) barrier(ctx context.Context, done chan struct{}) {
	if s.dc == nil {
		close(done)
		return
	}
	seq := s.nextSeq()
	s.b.do(func(d *dispatcher) { d.held = append(d.held, heldAdd{shard: s, seq: seq, done: done}) })
	if err := s.publishMarker(ctx, seq); err != nil {
		s.b.do(func(d *dispatcher) { d.unblock(done) })
	}
}

// ready says why the shard cannot serve now, if it cannot.
func (s *shard) ready() error {
	if !s.live.Load() {
		return fmt.Errorf("pub/sub connection to %s down: %w", s.name(), broker.ErrUnavailable)
	}
	if age := time.Since(time.Unix(0, s.markerSeen.Load())); age > s.b.probeDeadline() {
		return fmt.Errorf("no probe marker from %s for %v: %w", s.name(), age.Round(time.Millisecond), broker.ErrUnavailable)
	}
	return nil
}

// release takes the rooms that another shard serves per t out of its table
// and unsubscribes them, and returns them with their handlers. (Rooms whose
// slot no master serves for now stay.) The
// dispatcher keeps their state: the shard that adopts them catches them up
// from where they are.
func (s *shard) release(ctx context.Context, t *topology) map[string]handlerSet {
	var out map[string]handlerSet
	s.call(ctx, func() {
		var rooms []string
		s.subMu.Lock()
		for room, hs := range s.subs {
			if o := t.owner(s.b.roomSlot(room)); o == nil || o == s {
				continue
			}
			if out == nil {
				out = make(map[string]handlerSet)
			}
			out[room] = hs
			delete(s.subs, room)
			rooms = append(rooms, room)
		}
		s.subMu.Unlock()
		if len(rooms) > 0 {
			s.unsubscribe(ctx, rooms)
		}
	})
	return out
}

// adopt adds rooms that moved here, with their handlers, to the table,
// subscribes them and has the dispatcher catch them up from where they
// were. Without a connection, the next one does both.
func (s *shard) adopt(ctx context.Context, rooms map[string]handlerSet) {
	s.call(ctx, func() {
		names := make([]string, 0, len(rooms))
		for room, hs := range rooms {
			set := s.subs[room]
			for h := range hs.all() {
				set.add(h)
			}
			s.setSubs(room, set)
			names = append(names, room)
		}
		s.b.do(func(d *dispatcher) { d.move(names, s) })
		if s.dc == nil {
			return
		}
		channels := make([]string, len(names))
		for i, room := range names {
			channels[i] = s.b.channel(room)
		}
		if err := s.subscribe(ctx, s.dc, channels); err != nil {
			s.b.log.Warn("subscribe moved rooms", "shard", s.name(), "err", err)
			s.reconnectSoon()
			return
		}
		s.resync(ctx, names)
	})
}

// holdsRooms reports whether the shard's table holds any room.
func (s *shard) holdsRooms(ctx context.Context) bool {
	holds := false
	if !s.call(ctx, func() { holds = len(s.subs) > 0 }) {
		return false
	}
	return holds
}

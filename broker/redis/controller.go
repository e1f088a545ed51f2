package redis

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// controller owns the pub/sub connection and the table of subscriptions.
// One goroutine runs it: it serves Subscribe and Unsubscribe calls in
// batches, probes the connection, replaces it when it dies, and watches the
// server's generation. It hands every change of what the dispatcher knows
// through the dispatch queue, in order with the messages.
type controller struct {
	b       *Broker
	started chan struct{} // closed after the first connection
	subs    map[string]handlerSet

	dc      rueidis.DedicatedClient // nil while disconnected
	dead    <-chan error            // the connection's end, nil while disconnected
	backoff time.Duration
	retry   *time.Timer
	seq     uint64 // last probe marker published
	ticks   int
	// closing waits for the connections being closed in the background.
	closing sync.WaitGroup
}

func newController(b *Broker, started chan struct{}) *controller {
	return &controller{b: b, started: started, subs: make(map[string]handlerSet)}
}

// Reconnection backoff bounds.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// maxBatch bounds the calls served together and the channels per SUBSCRIBE.
const maxBatch = 1024

func (c *controller) run(ctx context.Context) {
	c.retry = time.NewTimer(0)
	defer c.retry.Stop()
	probe := time.NewTicker(c.b.cfg.ProbeInterval)
	defer probe.Stop()
	defer c.closing.Wait()
	defer c.disconnect()
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-c.b.requests:
			c.serve(ctx, c.collect(req))
		case done := <-c.b.drains:
			c.barrier(ctx, done)
		case err := <-c.dead:
			c.b.log.Warn("pub/sub connection lost", "err", err)
			c.disconnect()
			c.scheduleReconnect(0)
		case <-c.retry.C:
			if c.dc != nil {
				continue
			}
			if err := c.connect(ctx); err != nil {
				c.b.log.Warn("pub/sub connect", "err", err)
				c.backoff = min(max(2*c.backoff, minBackoff), maxBackoff)
				c.scheduleReconnect(c.backoff/2 + rand.N(c.backoff/2+1))
				continue
			}
			c.backoff = 0
		case <-probe.C:
			c.probe(ctx)
		case <-c.b.genCheck:
			if err := c.b.checkGeneration(ctx); err != nil {
				c.b.log.Debug("check server generation", "err", err)
			}
		case <-c.b.genChanged:
			c.resync(ctx)
		}
	}
}

func (c *controller) scheduleReconnect(after time.Duration) {
	c.retry.Stop()
	c.retry.Reset(after)
}

// connect opens a pub/sub connection, subscribes the probe channel and
// every room of the table, then has the dispatcher catch every room up with
// Redis: whatever was published while there was no connection is read from
// history (or answered with a Reset).
func (c *controller) connect(ctx context.Context) error {
	dc, _ := c.b.client.Dedicate()
	dead := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: c.b.onMessage})
	channels := make([]string, 0, len(c.subs)+1)
	channels = append(channels, c.b.probeChannel)
	for room := range c.subs {
		channels = append(channels, c.b.channel(room))
	}
	if err := c.subscribe(ctx, dc, channels); err != nil {
		c.closing.Go(dc.Close)
		return err
	}
	c.dc, c.dead = dc, dead
	c.b.markerSeen.Store(time.Now().UnixNano())
	c.b.live.Store(true)
	if err := c.b.checkGeneration(ctx); err != nil {
		c.b.log.Debug("check server generation", "err", err)
	}
	c.resync(ctx)
	c.b.log.Info("pub/sub connected", "rooms", len(c.subs))
	if c.started != nil {
		close(c.started)
		c.started = nil
	}
	return nil
}

// resync publishes a marker and has the dispatcher catch every room up.
func (c *controller) resync(ctx context.Context) {
	if c.dc == nil {
		return // connect resynchronises
	}
	seq := c.nextSeq()
	c.b.do(func(d *dispatcher) { d.resync(seq) })
	if err := c.publishMarker(ctx, seq); err != nil {
		c.b.log.Debug("probe", "err", err)
	}
}

// disconnect drops the connection. Closing it can take a second (rueidis
// says goodbye with a PING, which a wedged peer never answers), so that
// happens in the background while a new one is set up; whatever the old
// one still delivers is deduplicated by the dispatcher.
func (c *controller) disconnect() {
	if c.dc == nil {
		return
	}
	c.b.live.Store(false)
	dc := c.dc
	c.closing.Go(dc.Close)
	c.dc, c.dead = nil, nil
}

// subscribe sends SUBSCRIBE for channels in batches. rueidis returns when
// the first confirmation of each command arrives, which means Redis has
// executed the command: every message published from then on is sent to
// this connection.
func (c *controller) subscribe(ctx context.Context, dc rueidis.DedicatedClient, channels []string) error {
	for chunk := range slices.Chunk(channels, maxBatch) {
		cctx, cancel := c.b.timeout(ctx)
		err := dc.Do(cctx, dc.B().Subscribe().Channel(chunk...).Build()).Error()
		cancel()
		if err != nil {
			return c.b.fail("subscribe", cctx, err)
		}
	}
	return nil
}

// unsubscribe sends UNSUBSCRIBE for channels in batches; rueidis returns
// once every confirmation has arrived.
func (c *controller) unsubscribe(ctx context.Context, channels []string) {
	if c.dc == nil {
		return
	}
	for chunk := range slices.Chunk(channels, maxBatch) {
		cctx, cancel := c.b.timeout(ctx)
		err := c.dc.Do(cctx, c.dc.B().Unsubscribe().Channel(chunk...).Build()).Error()
		cancel()
		if err != nil {
			// The connection is in trouble; it is replaced (and only the
			// table's rooms resubscribed) once that shows.
			c.b.log.Debug("unsubscribe", "err", err)
			return
		}
	}
}

func (c *controller) nextSeq() uint64 {
	c.seq++
	return c.seq
}

// errNotSubscribed says that Redis found no subscriber for the probe
// channel: the pub/sub connection lost its subscriptions.
var errNotSubscribed = errors.New("publish probe marker: the pub/sub connection is not subscribed")

// publishMarker publishes probe marker seq.
func (c *controller) publishMarker(ctx context.Context, seq uint64) error {
	ctx, cancel := c.b.timeout(ctx)
	defer cancel()
	n, err := c.b.client.Do(ctx, c.b.client.B().Publish().Channel(c.b.probeChannel).Message(c.b.marker(seq)).Build()).AsInt64()
	if err != nil {
		return c.b.fail("publish probe marker", ctx, err)
	}
	if n == 0 {
		return errNotSubscribed
	}
	return nil
}

// probe checks that probe markers come back and publishes the next one.
// Every fifth tick it also checks the server's generation and retries the
// rooms whose resynchronisation failed.
func (c *controller) probe(ctx context.Context) {
	if c.dc == nil {
		return
	}
	if age := time.Since(time.Unix(0, c.b.markerSeen.Load())); age > c.b.probeDeadline() {
		c.b.log.Warn("pub/sub probe overdue: replacing the connection", "age", age.Round(time.Millisecond))
		c.disconnect()
		c.scheduleReconnect(0)
		return
	}
	if err := c.publishMarker(ctx, c.nextSeq()); err != nil {
		c.b.log.Debug("probe", "err", err)
		if errors.Is(err, errNotSubscribed) {
			c.b.log.Warn("pub/sub probe: not subscribed any more, replacing the connection")
			c.disconnect()
			c.scheduleReconnect(0)
			return
		}
	}
	c.ticks++
	if c.ticks%5 == 0 {
		if err := c.b.checkGeneration(ctx); err != nil {
			c.b.log.Debug("check server generation", "err", err)
		}
		c.b.do(func(d *dispatcher) { d.retryBehind() })
	}
}

// barrier closes done once everything published before now has been
// dispatched, or at once if the connection is down.
func (c *controller) barrier(ctx context.Context, done chan struct{}) {
	if c.dc == nil {
		close(done)
		return
	}
	seq := c.nextSeq()
	c.b.do(func(d *dispatcher) { d.held = append(d.held, heldAdd{seq: seq, done: done}) })
	if err := c.publishMarker(ctx, seq); err != nil {
		c.b.do(func(d *dispatcher) { d.unblock(done) })
	}
}

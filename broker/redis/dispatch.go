package redis

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// item is one entry of the dispatch queue: a pub/sub message (channel and
// payload) or, with fn set, a change the controller hands to the
// dispatcher in order with the messages.
type item struct {
	channel, payload string
	fn               func(d *dispatcher)
}

// queue is the unbounded FIFO between the pub/sub reader (and the
// controller) and the dispatcher. Pushing never blocks: the reader runs
// inside rueidis's connection goroutine, which must keep reading.
type queue struct {
	mu    sync.Mutex // a leaf lock
	items []item
	wake  chan struct{} // cap 1
}

func (q *queue) push(it item) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take swaps the queued items with spare, an emptied earlier batch.
func (q *queue) take(spare []item) []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch := q.items
	q.items = spare[:0]
	return batch
}

// do queues fn to run on the dispatcher after everything queued before.
func (b *Broker) do(fn func(d *dispatcher)) { b.queue.push(item{fn: fn}) }

// onMessage is the pub/sub connection's message hook. It runs on rueidis's
// reading goroutine, so it only notes probe markers and queues.
func (b *Broker) onMessage(m rueidis.PubSubMessage) {
	if m.Channel == b.probeChannel {
		seq, ok := b.parseMarker(m.Message)
		if !ok {
			return
		}
		b.markerSeen.Store(time.Now().UnixNano())
		for {
			cur := b.markerSeq.Load()
			if seq <= cur || b.markerSeq.CompareAndSwap(cur, seq) {
				break
			}
		}
	}
	b.queue.push(item{channel: m.Channel, payload: m.Message})
}

func (b *Broker) marker(seq uint64) string {
	return b.token + ":" + strconv.FormatUint(seq, 10)
}

func (b *Broker) parseMarker(s string) (uint64, bool) {
	tok, n, ok := strings.Cut(s, ":")
	if !ok || tok != b.token {
		return 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	return seq, err == nil
}

// roomState is what the dispatcher knows of a subscribed room.
type roomState struct {
	name, channel string
	// ready is false from SUBSCRIBE until the room's position is known;
	// messages wait in pending meanwhile.
	ready   bool
	pending []*broker.Message
	// last is the position of the last message handed to the handlers, or
	// of the last Reset.
	last     broker.Position
	handlers handlerSet
}

// pair is one handler's subscription to one room.
type pair struct {
	h    broker.Handler
	room string
}

// heldAdd is a batch of handlers added to rooms that were already
// subscribed. They join when the probe marker seq comes back through the
// pub/sub connection: everything published before the Subscribe call has
// arrived by then, so they get exactly what is published after it.
type heldAdd struct {
	seq   uint64
	pairs []pair
	done  chan struct{} // if set, closed on release
}

// dispatcher hands messages to handlers. It runs on one goroutine, so per
// room (and over all rooms) handlers are called in order and never
// concurrently. It owns its fields; the controller changes them only
// through queued functions.
type dispatcher struct {
	b *Broker
	// ctx is the dispatcher's lifetime, set by run; it bounds the reads
	// of missed messages.
	ctx   context.Context
	rooms map[string]*roomState // by channel
	held  []heldAdd
	// behind holds the rooms whose resynchronisation failed; they are
	// tried again at the next probe tick.
	behind map[*roomState]struct{}
}

func newDispatcher(b *Broker) *dispatcher {
	return &dispatcher{b: b, rooms: make(map[string]*roomState), behind: make(map[*roomState]struct{})}
}

// run dispatches queued items until ctx ends.
func (d *dispatcher) run(ctx context.Context) {
	d.ctx = ctx
	var batch []item
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.b.queue.wake:
		}
		batch = d.b.queue.take(batch)
		for i := range batch {
			if ctx.Err() != nil {
				return
			}
			it := batch[i]
			batch[i] = item{}
			if it.fn != nil {
				it.fn(d)
			} else {
				d.message(it.channel, it.payload)
			}
		}
	}
}

func (d *dispatcher) message(channel, payload string) {
	if channel == d.b.probeChannel {
		if seq, ok := d.b.parseMarker(payload); ok {
			d.release(seq)
		}
		return
	}
	r := d.rooms[channel]
	if r == nil {
		return // unsubscribed meanwhile
	}
	m, err := decodeEnvelope(r.name, payload)
	if err != nil {
		// Treated as lost: the next message finds the hole and reads it
		// from history, or resets.
		d.b.log.Error("decode pub/sub message", "room", r.name, "err", err)
		return
	}
	if !r.ready {
		r.pending = append(r.pending, m)
		return
	}
	d.handle(r, m)
}

// handle dispatches m, a live message of r, keeping r continuous.
func (d *dispatcher) handle(r *roomState, m *broker.Message) {
	if m.Epoch == r.last.Epoch {
		if m.Offset <= r.last.Offset {
			return // already dispatched (live or read from history)
		}
		if m.Offset == r.last.Offset+1 {
			d.deliver(r, m)
			return
		}
	}
	// A hole, or another epoch (a new one, or a late message of an old
	// one): ask Redis where the room stands. The read happens after m was
	// published, so it covers m: either catchUp hands m over from history,
	// or m turns out older than the room's current position.
	if err := d.catchUp([]*roomState{r}); err != nil {
		d.b.log.Warn("read missed messages", "room", r.name, "err", err)
		// What lies between cannot be read: say so, and go on from m.
		delete(d.behind, r)
		d.reset(r, broker.Position{Epoch: m.Epoch, Offset: m.Offset - 1})
		d.deliver(r, m)
	}
}

func (d *dispatcher) deliver(r *roomState, m *broker.Message) {
	r.last = m.Position()
	for _, h := range r.handlers {
		h.Deliver(m)
	}
}

func (d *dispatcher) reset(r *roomState, pos broker.Position) {
	r.last = pos
	for _, h := range r.handlers {
		h.Reset(r.name, pos)
	}
}

// catchUpBatch bounds the rooms read in one pipeline.
const catchUpBatch = 256

// catchUp reads each room's position and the history after its last
// dispatched message, in pipelined batches, and dispatches what it finds
// (see advance). Rooms whose read failed are kept in d.behind, and the
// first error is returned.
func (d *dispatcher) catchUp(rooms []*roomState) error {
	var first error
	for len(rooms) > 0 {
		n := min(len(rooms), catchUpBatch)
		chunk := rooms[:n]
		rooms = rooms[n:]
		g := d.b.gen.Load()
		execs := make([]rueidis.LuaExec, n)
		for i, r := range chunk {
			execs[i] = rueidis.LuaExec{
				Keys: d.b.historyKeys(r.name),
				Args: d.b.historyArgs(g, r.last.Epoch, broker.HistoryQuery{After: r.last.Offset}),
			}
		}
		rctx, cancel := d.b.timeout(d.ctx)
		var res []rueidis.RedisResult
		if n == 1 {
			res = []rueidis.RedisResult{historyScript.Exec(rctx, d.b.client, execs[0].Keys, execs[0].Args)}
		} else {
			res = historyScript.ExecMulti(rctx, d.b.client, execs...)
		}
		cancel()
		for i, r := range chunk {
			h, err := decodeHistory(r.name, res[i])
			if err != nil {
				if first == nil {
					first = d.b.fail("catch up "+strconv.Quote(r.name), rctx, err)
				}
				d.behind[r] = struct{}{}
				continue
			}
			delete(d.behind, r)
			d.advance(r, h)
		}
	}
	return first
}

// advance brings r to h, the room's position and history after r.last read
// from Redis: it hands over the messages r has not dispatched yet, and
// resets where it cannot prove continuity: the epoch changed, or history
// no longer holds the messages after r.last.
func (d *dispatcher) advance(r *roomState, h broker.History) {
	if h.Epoch != r.last.Epoch {
		start := h.Offset
		if len(h.Messages) > 0 {
			start = h.Messages[0].Offset - 1
		}
		d.reset(r, broker.Position{Epoch: h.Epoch, Offset: start})
	}
	for _, m := range h.Messages {
		if m.Offset <= r.last.Offset {
			continue
		}
		if m.Offset > r.last.Offset+1 {
			d.reset(r, broker.Position{Epoch: m.Epoch, Offset: m.Offset - 1})
		}
		d.deliver(r, m)
	}
	if r.last.Offset != h.Offset {
		// Redis counts messages its stream no longer holds, or (after an
		// undetected loss) fewer than were dispatched: either way,
		// continuity is gone.
		d.reset(r, h.Position)
	}
}

// expect starts tracking rooms about to be subscribed.
func (d *dispatcher) expect(rooms []string) {
	for _, name := range rooms {
		ch := d.b.channel(name)
		d.rooms[ch] = &roomState{name: name, channel: ch}
	}
}

// drop stops tracking rooms.
func (d *dispatcher) drop(rooms []string) {
	for _, name := range rooms {
		if r := d.rooms[d.b.channel(name)]; r != nil {
			delete(d.behind, r)
			delete(d.rooms, r.channel)
		}
	}
}

// init makes a freshly subscribed room ready at pos, its position read
// after SUBSCRIBE was confirmed, with its first handlers, and dispatches
// what arrived meanwhile. Messages up to pos were published before the
// read, hence before Subscribe returned: they are dropped. Everything after
// pos is published after the read, hence after the subscription took
// effect, so it arrives on the pub/sub connection (or, if that breaks, is
// read from history by the resynchronisation that follows).
func (d *dispatcher) init(room string, pos broker.Position, hs []broker.Handler) {
	r := d.rooms[d.b.channel(room)]
	if r == nil {
		return
	}
	r.ready = true
	r.last = pos
	for _, h := range hs {
		r.handlers.add(h)
	}
	pending := r.pending
	r.pending = nil
	for _, m := range pending {
		d.handle(r, m)
	}
}

// hold queues handlers for already subscribed rooms until marker seq.
func (d *dispatcher) hold(seq uint64, pairs []pair) {
	d.held = append(d.held, heldAdd{seq: seq, pairs: pairs})
}

// release adds the held handlers whose marker is at most seq.
func (d *dispatcher) release(seq uint64) {
	keep := d.held[:0]
	for _, a := range d.held {
		if a.seq > seq {
			keep = append(keep, a)
			continue
		}
		for _, p := range a.pairs {
			if r := d.rooms[d.b.channel(p.room)]; r != nil {
				r.handlers.add(p.h)
			}
		}
		if a.done != nil {
			close(a.done)
		}
	}
	clear(d.held[len(keep):])
	d.held = keep
}

// unblock releases the barrier done without waiting for its marker.
func (d *dispatcher) unblock(done chan struct{}) {
	d.held = slices.DeleteFunc(d.held, func(a heldAdd) bool { return a.done == done })
	close(done)
}

// remove takes handlers off rooms, including held ones not yet added.
func (d *dispatcher) remove(pairs []pair) {
	gone := make(map[pair]bool, len(pairs))
	for _, p := range pairs {
		gone[p] = true
		if r := d.rooms[d.b.channel(p.room)]; r != nil {
			r.handlers.remove(p.h)
		}
	}
	for i := range d.held {
		kept := d.held[i].pairs[:0]
		for _, p := range d.held[i].pairs {
			if !gone[p] {
				kept = append(kept, p)
			}
		}
		d.held[i].pairs = kept
	}
}

// resync runs after the pub/sub connection was (re)established and every
// room resubscribed, or after the server's generation changed: it adds the
// handlers held for markers up to seq (those markers may have been lost
// with the old connection) and catches every ready room up with Redis.
func (d *dispatcher) resync(seq uint64) {
	d.release(seq)
	rooms := make([]*roomState, 0, len(d.rooms))
	for _, r := range d.rooms {
		if r.ready {
			rooms = append(rooms, r)
		}
	}
	if err := d.catchUp(rooms); err != nil {
		d.b.log.Warn("resynchronise rooms", "rooms", len(d.behind), "err", err)
	}
}

// retryBehind catches up the rooms whose resynchronisation failed.
func (d *dispatcher) retryBehind() {
	if len(d.behind) == 0 {
		return
	}
	rooms := make([]*roomState, 0, len(d.behind))
	for r := range d.behind {
		rooms = append(rooms, r)
	}
	if err := d.catchUp(rooms); err != nil {
		d.b.log.Debug("resynchronise rooms", "rooms", len(d.behind), "err", err)
	}
}

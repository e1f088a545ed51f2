package redis

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/broker"
)

// item is one entry of the dispatch queue: a pub/sub message (channel and
// payload) of a shard, a probe marker of a shard, or, with fn set, a change
// the shards or the catch-up readers hand to the dispatcher in order with
// the messages.
type item struct {
	shard            *shard
	channel, payload string
	marker           uint64 // a probe marker's sequence number
	fn               func(d *dispatcher)
}

// queue is the FIFO between the pub/sub readers (and the other
// goroutines) and the dispatcher. Pushing never blocks: the readers run
// inside rueidis's connection goroutines, which must keep reading. Room
// messages are bounded by limit: one that arrives while the queue is full
// is dropped, and its channel noted in lost; the dispatcher reads those
// rooms from history instead. Markers and changes are never dropped (there
// are few, and they carry state).
type queue struct {
	mu      sync.Mutex // a leaf lock
	items   []item
	limit   int
	lost    map[string]bool    // channels whose messages were dropped
	wake    chan struct{}      // cap 1
	dropped prometheus.Counter // set by newMetrics
}

func (q *queue) init(limit int) {
	q.limit = limit
	q.wake = make(chan struct{}, 1)
	q.lost = make(map[string]bool)
}

func (q *queue) push(it item) {
	q.mu.Lock()
	if it.fn == nil && it.marker == 0 && len(q.items) >= q.limit {
		q.lost[it.channel] = true
		q.mu.Unlock()
		q.dropped.Inc()
		return
	}
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take swaps the queued items with spare, an emptied earlier batch, and
// returns them with the channels whose messages were dropped.
func (q *queue) take(spare []item) ([]item, []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch := q.items
	q.items = spare[:0]
	var lost []string
	if len(q.lost) > 0 {
		for ch := range q.lost {
			lost = append(lost, ch)
		}
		clear(q.lost)
	}
	return batch, lost
}

// depth returns how many items wait.
func (q *queue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// do queues fn to run on the dispatcher after everything queued before.
func (b *Broker) do(fn func(d *dispatcher)) { b.queue.push(item{fn: fn}) }

func (b *Broker) marker(seq uint64) string {
	return b.token + ":" + strconv.FormatUint(seq, 10)
}

func (b *Broker) parseMarker(s string) (uint64, bool) {
	tok, n, ok := strings.Cut(s, ":")
	if !ok || tok != b.token {
		return 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	return seq, err == nil && seq > 0
}

// roomState is what the dispatcher knows of a subscribed room. There is
// one per subscribed room, and every idle connection has its own (its
// inbox), so it is kept small (TestSizes): what matters only while the
// room is not ready or catches up lives in slow.
type roomState struct {
	name  string
	shard *shard // the shard whose connection carries the room
	// last is the position of the last message handed to the handlers, or
	// of the last Reset.
	last     broker.Position
	handlers handlerSet
	// slow is nil while the room is ready, no catch-up is out or asked
	// for and no message waits: most of the time.
	slow *roomSlow
}

// roomSlow is the state of a room that is not ready or catches up.
type roomSlow struct {
	// ready is false from SUBSCRIBE until the room's position is known.
	ready bool
	// catching is true while a read of the room's missed messages is out
	// (the one numbered catchSeq); again asks for another once it is back
	// (messages were dropped meanwhile).
	catching bool
	again    bool
	catchSeq uint64
	// pending holds live messages that wait while the room is not ready
	// or catching up, in arrival order, at most maxPending.
	pending []*broker.Message
}

// ready reports whether r's position is known.
func (r *roomState) ready() bool { return r.slow == nil || r.slow.ready }

// catching reports whether a catch-up read of r is out.
func (r *roomState) catching() bool { return r.slow != nil && r.slow.catching }

// slowState returns r.slow, made (ready) if r has none.
func (r *roomState) slowState() *roomSlow {
	if r.slow == nil {
		r.slow = &roomSlow{ready: true}
	}
	return r.slow
}

// settle drops r.slow once it holds nothing a ready room needs.
func (r *roomState) settle() {
	if sl := r.slow; sl != nil && sl.ready && !sl.catching && !sl.again && len(sl.pending) == 0 {
		r.slow = nil
	}
}

// maxPending bounds the live messages a room keeps while it catches up.
// Past it they are dropped, and the room is caught up once more afterwards
// (history holds them, or the gap turns into a Reset).
const maxPending = 4096

// pair is one handler's subscription to one room.
type pair struct {
	h    broker.Handler
	room string
}

// heldAdd is a batch of handlers added to rooms that were already
// subscribed on a shard. They join when the shard's probe marker seq comes
// back through its pub/sub connection: everything published before the
// Subscribe call has arrived by then, so they get exactly what is
// published after it.
type heldAdd struct {
	shard *shard
	seq   uint64
	pairs []pair
	done  chan struct{} // if set, closed on release
}

// dispatcher hands messages to handlers. It runs on one goroutine, so per
// room (and over all rooms) handlers are called in order and never
// concurrently. It owns its fields; the other goroutines change them only
// through queued functions. It never waits for Redis: reads of missed
// messages go to the shard's catch-up reader, and their results come back
// through the queue, while the other rooms keep flowing.
type dispatcher struct {
	b *Broker
	// rooms is by name: the subscribers' strings, so that no channel name
	// is kept per room (a message's channel is looked up by the room in
	// it).
	rooms map[string]*roomState
	held  []heldAdd
	// behind holds the rooms whose catch-up failed with nothing waiting to
	// be delivered; they are tried again at their shard's probe ticks.
	behind map[*roomState]struct{}
	seq    uint64 // last catch-up issued
}

func newDispatcher(b *Broker) *dispatcher {
	return &dispatcher{b: b, rooms: make(map[string]*roomState), behind: make(map[*roomState]struct{})}
}

// run dispatches queued items until ctx ends.
func (d *dispatcher) run(ctx context.Context) {
	var batch []item
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.b.queue.wake:
		}
		var lost []string
		batch, lost = d.b.queue.take(batch)
		for i := range batch {
			if ctx.Err() != nil {
				return
			}
			it := batch[i]
			batch[i] = item{}
			switch {
			case it.fn != nil:
				it.fn(d)
			case it.marker != 0:
				d.release(it.shard, it.marker)
			default:
				d.message(it.channel, it.payload)
			}
		}
		// Messages of these rooms were dropped before the items just
		// handled were taken: a read from now covers them.
		for _, ch := range lost {
			if r := d.room(ch); r != nil {
				d.catchUpLater(r)
			}
		}
	}
}

// room returns the state of the room whose channel is channel, or nil.
func (d *dispatcher) room(channel string) *roomState {
	name, ok := d.b.roomOfChannel(channel)
	if !ok {
		return nil
	}
	return d.rooms[name]
}

func (d *dispatcher) message(channel, payload string) {
	r := d.room(channel)
	if r == nil {
		return // unsubscribed meanwhile
	}
	m, err := decodeEnvelope(r.name, payload)
	if err != nil {
		// Treated as lost: read it from history (or reset).
		d.b.log.Error("decode pub/sub message", "room", r.name, "err", err)
		d.catchUpLater(r)
		return
	}
	if !r.ready() {
		d.wait(r, m)
		return
	}
	d.handle(r, m)
}

// wait keeps m until r is ready or caught up, unless too many wait
// already: then they are all dropped and r is caught up once more later.
func (d *dispatcher) wait(r *roomState, m *broker.Message) {
	sl := r.slowState()
	if len(sl.pending) >= maxPending {
		clear(sl.pending)
		sl.pending = sl.pending[:0]
		sl.again = true
		return
	}
	sl.pending = append(sl.pending, m)
}

// handle dispatches m, a live message of r, keeping r continuous.
func (d *dispatcher) handle(r *roomState, m *broker.Message) {
	if r.catching() {
		d.wait(r, m)
		return
	}
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
	// published, so it covers m: either it hands m over from history, or
	// m turns out older than the room's current position. m and what
	// arrives meanwhile wait.
	d.wait(r, m)
	d.catchUp(r)
}

func (d *dispatcher) deliver(r *roomState, m *broker.Message) {
	r.last = m.Position()
	for h := range r.handlers.all() {
		h.Deliver(m)
	}
}

func (d *dispatcher) reset(r *roomState, pos broker.Position) {
	r.last = pos
	for h := range r.handlers.all() {
		h.Reset(r.name, pos)
	}
}

// catchUp sends r to its shard's catch-up reader: its position and the
// history after r.last are read off the dispatch path.
func (d *dispatcher) catchUp(r *roomState) {
	d.seq++
	sl := r.slowState()
	sl.catching, sl.again, sl.catchSeq = true, false, d.seq
	delete(d.behind, r)
	d.b.metrics.catchUps.Inc()
	r.shard.catchUps.add(catchUpJob{r: r, seq: d.seq, room: r.name, after: r.last})
}

// catchUpLater catches r up now, or after the read that is out (or, before
// r is ready, after it is).
func (d *dispatcher) catchUpLater(r *roomState) {
	if !r.ready() || r.catching() {
		r.slow.again = true // r.slow is there: r is not ready or catching
		return
	}
	d.catchUp(r)
}

// caughtUp applies the answer to catch-up read j: on success r is brought
// to the room's position and what waited is dispatched; on failure, if
// messages wait, continuity is given up (Reset) so that they flow,
// otherwise r is left behind for the shard's next probe tick.
func (d *dispatcher) caughtUp(j catchUpJob, h broker.History, err error) {
	r := j.r
	if d.rooms[r.name] != r || !r.catching() || r.slow.catchSeq != j.seq {
		return // dropped, moved or superseded meanwhile
	}
	defer r.settle()
	sl := r.slow
	sl.catching = false
	if err != nil {
		d.b.metrics.catchUpFailures.Inc()
		if len(sl.pending) == 0 && !sl.again {
			d.b.log.Warn("read missed messages", "room", r.name, "err", err)
			d.behind[r] = struct{}{}
			return
		}
		d.b.log.Warn("read missed messages: giving up on continuity", "room", r.name, "err", err)
		d.giveUp(r)
	} else {
		d.advance(r, h)
		d.flush(r)
	}
	d.catchUpAgain(r)
}

// catchUpAgain catches r up if that was asked for while it could not be.
func (d *dispatcher) catchUpAgain(r *roomState) {
	if sl := r.slow; sl != nil && sl.again && !sl.catching {
		d.catchUp(r)
	}
}

// flush dispatches the messages that waited for r.
func (d *dispatcher) flush(r *roomState) {
	if r.slow == nil {
		return
	}
	pending := r.slow.pending
	r.slow.pending = nil
	for _, m := range pending {
		d.handle(r, m)
	}
}

// giveUp dispatches the messages that waited for r without the messages
// before them, which could not be read: a Reset before each gap.
func (d *dispatcher) giveUp(r *roomState) {
	if r.slow == nil {
		return
	}
	pending := r.slow.pending
	r.slow.pending = nil
	for _, m := range pending {
		if m.Epoch == r.last.Epoch && m.Offset <= r.last.Offset {
			continue
		}
		if m.Epoch != r.last.Epoch || m.Offset != r.last.Offset+1 {
			d.reset(r, broker.Position{Epoch: m.Epoch, Offset: m.Offset - 1})
		}
		d.deliver(r, m)
	}
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

// expect starts tracking rooms about to be subscribed on shard s.
func (d *dispatcher) expect(rooms []string, s *shard) {
	for _, name := range rooms {
		d.rooms[name] = &roomState{name: name, shard: s, slow: &roomSlow{}}
	}
}

// drop stops tracking rooms.
func (d *dispatcher) drop(rooms []string) {
	for _, name := range rooms {
		if r := d.rooms[name]; r != nil {
			delete(d.behind, r)
			delete(d.rooms, name)
		}
	}
}

// move records that rooms are carried by shard s now. A catch-up read
// still out on the old shard is superseded: s catches them up afresh.
func (d *dispatcher) move(rooms []string, s *shard) {
	for _, name := range rooms {
		if r := d.rooms[name]; r != nil {
			r.shard = s
			if r.catching() {
				r.slow.catching, r.slow.again = false, true
			}
		}
	}
}

// init makes a freshly subscribed room ready at pos, its position read
// after SSUBSCRIBE was confirmed, with its first handlers, and dispatches
// what arrived meanwhile. Messages up to pos were published before the
// read, hence before Subscribe returned: they are dropped. Everything after
// pos is published after the read, hence after the subscription took
// effect, so it arrives on the pub/sub connection (or, if that breaks, is
// read from history by the catch-up that follows).
func (d *dispatcher) init(room string, pos broker.Position, hs []broker.Handler) {
	r := d.rooms[room]
	if r == nil {
		return
	}
	if r.slow != nil {
		r.slow.ready = true
	}
	r.last = pos
	for _, h := range hs {
		r.handlers.add(h)
	}
	d.flush(r)
	d.catchUpAgain(r)
	r.settle()
}

// hold queues handlers for rooms already subscribed on shard s until its
// marker seq.
func (d *dispatcher) hold(s *shard, seq uint64, pairs []pair) {
	d.held = append(d.held, heldAdd{shard: s, seq: seq, pairs: pairs})
}

// release adds the handlers held for shard s whose marker is at most seq.
func (d *dispatcher) release(s *shard, seq uint64) {
	d.releaseIf(func(a heldAdd) bool { return a.shard == s && a.seq <= seq })
}

// forgetShard releases everything held for shard s, which stopped: its
// markers will not come back.
func (d *dispatcher) forgetShard(s *shard) {
	d.releaseIf(func(a heldAdd) bool { return a.shard == s })
}

func (d *dispatcher) releaseIf(due func(a heldAdd) bool) {
	keep := d.held[:0]
	for _, a := range d.held {
		if !due(a) {
			keep = append(keep, a)
			continue
		}
		for _, p := range a.pairs {
			if r := d.rooms[p.room]; r != nil {
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
		if r := d.rooms[p.room]; r != nil {
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

// resync runs after shard s's pub/sub connection was (re)established and
// its rooms subscribed, or after rooms moved to s: it adds the handlers
// held for markers of s up to seq (those markers may have been lost with
// the old connection) and catches rooms up with Redis.
func (d *dispatcher) resync(s *shard, seq uint64, rooms []string) {
	d.release(s, seq)
	for _, name := range rooms {
		if r := d.rooms[name]; r != nil {
			d.catchUpLater(r)
		}
	}
}

// retryBehind catches up the rooms of shard s whose catch-up failed.
func (d *dispatcher) retryBehind(s *shard) {
	for r := range d.behind {
		if r.shard == s {
			d.catchUp(r)
		}
	}
}

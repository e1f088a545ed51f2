package memory

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// room is one room's stream. Its fields are guarded by mu, except name.
type room struct {
	mu   sync.Mutex
	name string
	// removed is set when the room has left the broker's map (swept or
	// closed); a caller that finds it set looks the room up again.
	removed bool

	// epoch is empty while the room has no live state; offset, expires and
	// history belong to epoch.
	epoch   string
	offset  uint64
	expires time.Time
	history ring

	// subs maps each subscribed Handler to the epoch that was live when it
	// subscribed or last heard from the room ("" for none), so that a new
	// epoch resets exactly the handlers that knew an older one.
	subs map[broker.Handler]string
	keys map[string]keyEntry
}

// keyEntry remembers an idempotency key's first position.
type keyEntry struct {
	pos     broker.Position
	expires time.Time
}

func (r *room) position() broker.Position {
	return broker.Position{Epoch: r.epoch, Offset: r.offset}
}

// expire drops the room's state if it has expired at now.
func (r *room) expire(b *Broker, now time.Time) {
	if r.epoch != "" && !now.Before(r.expires) {
		r.epoch = ""
		r.offset = 0
		b.forget(&r.history)
	}
}

// ensureEpoch expires the room's state if due and starts a new epoch if the
// room has none, resetting the handlers that knew an older epoch.
func (r *room) ensureEpoch(b *Broker, now time.Time, ttl time.Duration) {
	r.expire(b, now)
	if r.epoch != "" {
		return
	}
	r.epoch = newEpoch()
	r.offset = 0
	r.expires = now.Add(ttl)
	pos := r.position()
	for h, seen := range r.subs {
		if seen != "" && seen != r.epoch {
			h.Reset(r.name, pos)
		}
		r.subs[h] = r.epoch
	}
}

// pruneKeys forgets the idempotency keys that have expired at now.
func (r *room) pruneKeys(now time.Time) {
	for k, e := range r.keys {
		if !now.Before(e.expires) {
			delete(r.keys, k)
		}
	}
}

// ring holds the last messages of a room, oldest first from start: a
// circular queue of n entries. Offsets in it are contiguous and end at the
// room's offset.
type ring struct {
	buf   []*entry
	start int
	n     int
}

func (g *ring) len() int { return g.n }

func (g *ring) at(i int) *entry { return g.buf[(g.start+i)%len(g.buf)] }

// push appends e, growing the buffer up to size entries; at size it drops
// and returns the oldest entry to make room.
func (g *ring) push(e *entry, size int) (dropped *entry) {
	if g.n == len(g.buf) {
		if g.n >= size {
			dropped = g.buf[g.start]
			g.buf[g.start] = e
			g.start = (g.start + 1) % len(g.buf)
			return dropped
		}
		buf := make([]*entry, min(size, max(4, 2*g.n)))
		for i := range g.n {
			buf[i] = g.at(i)
		}
		g.buf, g.start = buf, 0
	}
	g.buf[(g.start+g.n)%len(g.buf)] = e
	g.n++
	return nil
}

// popOldest removes the oldest entry.
func (g *ring) popOldest() {
	g.buf[g.start] = nil
	g.start = (g.start + 1) % len(g.buf)
	g.n--
}

// entry is one message held in a room's history, linked into the broker's
// age list.
type entry struct {
	m          *broker.Message
	r          *room
	size       int64
	prev, next *entry
}

// entryList is a doubly linked list of entries, oldest first.
type entryList struct{ head, tail *entry }

func (l *entryList) pushBack(e *entry) {
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
}

func (l *entryList) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if l.head == e {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if l.tail == e {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// MessageBytes is what a message counts against Config.HistoryMaxBytes:
// its data, names and a fixed share for the structures that hold it.
func MessageBytes(m *broker.Message) int64 {
	return int64(len(m.Data)+len(m.Room)+len(m.Epoch)+len(m.From)+len(m.Origin)) + messageOverhead
}

// messageOverhead approximates the bytes of a stored message beyond its
// strings: the Message, its entry and the ring slot.
const messageOverhead = 192

// remember links e into the age list; with e's room locked.
func (b *Broker) remember(e *entry) {
	b.ageMu.Lock()
	b.age.pushBack(e)
	b.historyBytes.Add(e.size)
	b.ageMu.Unlock()
}

// unlink takes e out of the age list; with e's room locked.
func (b *Broker) unlink(e *entry) {
	b.ageMu.Lock()
	b.age.remove(e)
	b.historyBytes.Add(-e.size)
	b.ageMu.Unlock()
}

// forget empties g, taking its entries out of the age list; with its room
// locked.
func (b *Broker) forget(g *ring) {
	if g.n > 0 {
		b.ageMu.Lock()
		for i := range g.n {
			e := g.at(i)
			b.age.remove(e)
			b.historyBytes.Add(-e.size)
		}
		b.ageMu.Unlock()
	}
	*g = ring{}
}

// HistoryBytes returns the bytes all rooms' history holds, as counted
// against Config.HistoryMaxBytes.
func (b *Broker) HistoryBytes() int64 { return b.historyBytes.Load() }

// evict drops the oldest messages of the whole broker from their rooms'
// history until it holds at most HistoryMaxBytes. It must be called with
// no room locked. A room keeps its epoch and offset: losing its oldest
// messages is the same trim --history-size makes, so a recovery from before
// them is answered recovered: false, never with a hole.
func (b *Broker) evict() {
	for b.historyBytes.Load() > b.cfg.HistoryMaxBytes {
		b.ageMu.Lock()
		e := b.age.head
		b.ageMu.Unlock()
		if e == nil {
			return
		}
		r := e.r
		r.mu.Lock()
		// The oldest entry of the broker is the oldest of its room, unless
		// the room dropped it meanwhile; then look again.
		if r.history.len() > 0 && r.history.at(0) == e {
			r.history.popOldest()
			b.unlink(e)
		}
		r.mu.Unlock()
	}
}

// lockRoom returns the room called name with its lock held, creating it if
// create is set; without create it returns nil for a room that does not
// exist. It also runs the periodic sweep when it is due.
func (b *Broker) lockRoom(name string, now time.Time, create bool) (*room, error) {
	for {
		b.mu.RLock()
		r := b.rooms[name]
		open := b.rooms != nil
		due := !now.Before(b.nextSweep)
		b.mu.RUnlock()
		if !open {
			return nil, broker.ErrClosed
		}
		if due {
			b.sweep(now)
		}
		if r == nil {
			if !create {
				return nil, nil
			}
			b.mu.Lock()
			if b.rooms == nil {
				b.mu.Unlock()
				return nil, broker.ErrClosed
			}
			r = b.rooms[name]
			if r == nil {
				r = &room{name: name}
				b.rooms[name] = r
			}
			b.mu.Unlock()
		}
		r.mu.Lock()
		if b.closed.Load() {
			r.mu.Unlock()
			return nil, broker.ErrClosed
		}
		if r.removed {
			// Swept between the lookup and the lock: look again.
			r.mu.Unlock()
			continue
		}
		return r, nil
	}
}

// sweep drops expired state from every room that is not busy and removes the
// rooms left with nothing: no live epoch, no subscriber, no idempotency key.
func (b *Broker) sweep(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rooms == nil || now.Before(b.nextSweep) {
		return
	}
	b.nextSweep = now.Add(b.sweepEvery)
	for name, r := range b.rooms {
		// A room whose lock is held is in use, not abandoned; the next sweep
		// looks at it again.
		if !r.mu.TryLock() {
			continue
		}
		r.expire(b, now)
		r.pruneKeys(now)
		if r.epoch == "" && len(r.subs) == 0 && len(r.keys) == 0 {
			r.removed = true
			delete(b.rooms, name)
		}
		r.mu.Unlock()
	}
}

// Publish stores p as room's next message and delivers it, before returning,
// to every Handler subscribed to room. A publish whose Key was already used
// in room within IdempotencyTTL delivers nothing and returns the first
// publish's position. Data is copied; empty Data is stored as JSON null.
func (b *Broker) Publish(ctx context.Context, room string, p broker.Publication) (broker.Position, error) {
	if err := b.check(ctx); err != nil {
		return broker.Position{}, fmt.Errorf("publish to %q: %w", room, err)
	}
	now := b.now()
	r, err := b.lockRoom(room, now, true)
	if err != nil {
		return broker.Position{}, fmt.Errorf("publish to %q: %w", room, err)
	}
	locked := true
	defer func() {
		if locked {
			r.mu.Unlock()
		}
	}()

	if p.Key != "" {
		if e, ok := r.keys[p.Key]; ok && now.Before(e.expires) {
			return e.pos, nil
		}
	}
	r.ensureEpoch(b, now, b.cfg.HistoryTTL)
	r.offset++
	r.expires = now.Add(b.cfg.HistoryTTL)
	data := json.RawMessage(bytes.Clone(p.Data))
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	m := &broker.Message{
		Room:   room,
		Epoch:  r.epoch,
		Offset: r.offset,
		Time:   now.UnixMilli(),
		From:   p.From,
		Origin: p.Origin,
		Data:   data,
	}
	e := &entry{m: m, r: r, size: MessageBytes(m)}
	b.remember(e)
	if old := r.history.push(e, b.cfg.HistorySize); old != nil {
		b.unlink(old)
	}
	pos := m.Position()
	if p.Key != "" {
		if r.keys == nil {
			r.keys = make(map[string]keyEntry)
		}
		r.keys[p.Key] = keyEntry{pos: pos, expires: now.Add(b.cfg.IdempotencyTTL)}
	}
	for h := range r.subs {
		h.Deliver(m)
	}
	r.mu.Unlock()
	locked = false
	b.evict()
	return pos, nil
}

// Subscribe makes h receive the messages of rooms published after Subscribe
// returns. Subscribing h to a room twice is a no-op. h must be comparable.
func (b *Broker) Subscribe(ctx context.Context, h broker.Handler, rooms ...string) error {
	if err := b.check(ctx); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	now := b.now()
	for _, name := range rooms {
		r, err := b.lockRoom(name, now, true)
		if err != nil {
			return fmt.Errorf("subscribe to %q: %w", name, err)
		}
		r.expire(b, now)
		if _, ok := r.subs[h]; !ok {
			if r.subs == nil {
				r.subs = make(map[broker.Handler]string)
			}
			r.subs[h] = r.epoch
		}
		r.mu.Unlock()
	}
	return nil
}

// Unsubscribe stops delivering rooms to h; no message of those rooms reaches
// h after it returns. Rooms h is not subscribed to are ignored.
func (b *Broker) Unsubscribe(ctx context.Context, h broker.Handler, rooms ...string) error {
	if err := b.check(ctx); err != nil {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	now := b.now()
	for _, name := range rooms {
		r, err := b.lockRoom(name, now, false)
		if err != nil {
			return fmt.Errorf("unsubscribe from %q: %w", name, err)
		}
		if r == nil {
			continue
		}
		delete(r.subs, h)
		r.mu.Unlock()
	}
	return nil
}

// Position returns room's latest position, starting a new epoch at offset 0
// if the room has none or its state expired.
func (b *Broker) Position(ctx context.Context, room string) (broker.Position, error) {
	if err := b.check(ctx); err != nil {
		return broker.Position{}, fmt.Errorf("position of %q: %w", room, err)
	}
	now := b.now()
	r, err := b.lockRoom(room, now, true)
	if err != nil {
		return broker.Position{}, fmt.Errorf("position of %q: %w", room, err)
	}
	defer r.mu.Unlock()
	r.ensureEpoch(b, now, b.cfg.HistoryTTL)
	return r.position(), nil
}

// History returns the messages of room's history selected by q, in offset
// order, with the room's latest position. Like Position, it starts an epoch
// if the room has none. The messages are shared and must not be modified.
func (b *Broker) History(ctx context.Context, room string, q broker.HistoryQuery) (broker.History, error) {
	if err := b.check(ctx); err != nil {
		return broker.History{}, fmt.Errorf("history of %q: %w", room, err)
	}
	if q.Limit < 0 {
		return broker.History{}, fmt.Errorf("history of %q: negative limit %d", room, q.Limit)
	}
	now := b.now()
	r, err := b.lockRoom(room, now, true)
	if err != nil {
		return broker.History{}, fmt.Errorf("history of %q: %w", room, err)
	}
	defer r.mu.Unlock()
	r.ensureEpoch(b, now, b.cfg.HistoryTTL)

	h := broker.History{Position: r.position()}
	n := r.history.len()
	if n == 0 {
		return h, nil
	}
	first := r.offset - uint64(n) + 1 // offset of the oldest message held
	start := 0
	if q.After >= first {
		if q.After >= r.offset {
			return h, nil
		}
		start = int(q.After - first + 1)
	}
	count := n - start
	if q.Limit > 0 && count > q.Limit {
		if q.Tail {
			start = n - q.Limit
		}
		count = q.Limit
	}
	h.Messages = make([]*broker.Message, count)
	for i := range count {
		h.Messages[i] = r.history.at(start + i).m
	}
	return h, nil
}

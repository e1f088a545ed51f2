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
func (r *room) expire(now time.Time) {
	if r.epoch != "" && !now.Before(r.expires) {
		r.epoch = ""
		r.offset = 0
		r.history = ring{}
	}
}

// ensureEpoch expires the room's state if due and starts a new epoch if the
// room has none, resetting the handlers that knew an older epoch.
func (r *room) ensureEpoch(now time.Time, ttl time.Duration) {
	r.expire(now)
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

// ring holds the last messages of a room, oldest first from start. Offsets
// in it are contiguous and end at the room's offset.
type ring struct {
	buf   []*broker.Message
	start int
}

func (g *ring) len() int { return len(g.buf) }

func (g *ring) at(i int) *broker.Message { return g.buf[(g.start+i)%len(g.buf)] }

func (g *ring) push(m *broker.Message, size int) {
	if len(g.buf) < size {
		g.buf = append(g.buf, m)
		return
	}
	g.buf[g.start] = m
	g.start = (g.start + 1) % len(g.buf)
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
		r.expire(now)
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
	defer r.mu.Unlock()

	if p.Key != "" {
		if e, ok := r.keys[p.Key]; ok && now.Before(e.expires) {
			return e.pos, nil
		}
	}
	r.ensureEpoch(now, b.cfg.HistoryTTL)
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
	r.history.push(m, b.cfg.HistorySize)
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
		r.expire(now)
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
	r.ensureEpoch(now, b.cfg.HistoryTTL)
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
	r.ensureEpoch(now, b.cfg.HistoryTTL)

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
		h.Messages[i] = r.history.at(start + i)
	}
	return h, nil
}

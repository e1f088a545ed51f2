package hub

import (
	"context"
	"sync"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/smallmap"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/transport"
)

// room is a room with local members. It exists while refs > 0 and holds the
// broker subscription for that time.
type room struct {
	name string

	// Guarded by Hub.mu. (refs is an int32 to share a word with closing:
	// an inbox is a room per connection.)
	refs    int32
	closing bool
	// ready is closed when the broker subscription is settled; err says how.
	// Once it is, the room points at the shared settled channel instead,
	// so that a settled room keeps no channel of its own (an inbox room per
	// connection would keep one for its whole life). Guarded by Hub.mu.
	ready chan struct{}
	err   error
	// gone is made when closing is set, and closed when the room has been
	// unsubscribed and removed.
	gone chan struct{}

	mu sync.Mutex
	// members are the room's local sessions; every session is the one
	// member of its inbox, hence a smallmap.
	members smallmap.Map[*Session, *member]
}

// settled is the closed channel of every room whose subscription is
// settled.
var settled = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// acquire takes a reference on the room called name, subscribing to the
// broker if this instance has no member of it yet. Every successful acquire
// must be paired with one release.
func (h *Hub) acquire(ctx context.Context, name string) (*room, error) {
	for {
		h.mu.Lock()
		r := h.rooms[name]
		if r != nil && r.closing {
			gone := r.gone
			h.mu.Unlock()
			select {
			case <-gone:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		creator := r == nil
		if creator {
			r = &room{
				name:  name,
				ready: make(chan struct{}),
			}
			h.rooms[name] = r
		}
		r.refs++
		ready := r.ready
		h.mu.Unlock()

		if creator {
			bctx, cancel := h.brokerCtx(context.WithoutCancel(ctx))
			r.err = h.broker.Subscribe(bctx, h, name)
			cancel()
			close(ready)
			h.mu.Lock()
			r.ready = settled
			h.mu.Unlock()
		} else {
			select {
			case <-ready:
			case <-ctx.Done():
				h.release(r)
				return nil, ctx.Err()
			}
		}
		if r.err != nil {
			err := r.err
			h.release(r)
			return nil, err
		}
		return r, nil
	}
}

// release drops a reference taken by acquire; the last one unsubscribes.
func (h *Hub) release(r *room) {
	h.mu.Lock()
	r.refs--
	if r.refs > 0 {
		h.mu.Unlock()
		return
	}
	r.closing = true
	r.gone = make(chan struct{})
	h.mu.Unlock()

	if r.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.BrokerTimeout)
		if err := h.broker.Unsubscribe(ctx, h, r.name); err != nil {
			h.log.Warn("unsubscribe", "room", r.name, "err", err)
		}
		cancel()
	}
	h.mu.Lock()
	delete(h.rooms, r.name)
	h.mu.Unlock()
	close(r.gone)
}

// Deliver implements broker.Handler: it fans m out to the local members of
// its room, encoding the frame once.
func (h *Hub) Deliver(m *broker.Message) {
	h.mu.RLock()
	r := h.rooms[m.Room]
	h.mu.RUnlock()
	if r == nil {
		return
	}
	var frame []byte
	delivered := 0
	// Writers start in chunks, so that writing begins while the loop goes
	// on.
	fan := h.transport.Fanout()
	r.mu.Lock()
	for s, mem := range r.members.All() {
		if rec := mem.rec; rec != nil {
			if !rec.overflowed {
				rec.pending = append(rec.pending, m)
				rec.pendingBytes += len(m.Data) + len(m.Room) + len(m.Epoch) + len(m.From) + 64
				if rec.pendingBytes > h.cfg.SendQueueBytes {
					clear(rec.pending)
					rec.pending, rec.pendingBytes, rec.overflowed = nil, 0, true
				}
			}
			continue
		}
		if m.Epoch != mem.epoch {
			// The broker promises a Reset before a new epoch; if one was
			// missed, say so rather than mix epochs silently.
			s.enqueueReset(r.name, broker.Position{Epoch: m.Epoch, Offset: m.Offset - 1})
			mem.epoch = m.Epoch
			mem.next = m.Offset
		}
		if m.Offset < mem.next {
			continue // already sent by recovery
		}
		mem.next = m.Offset + 1
		if m.Origin == s.id && !s.echo {
			// The publisher gets an ack instead; the marker moves its
			// saved position past its own message.
			fan.Send(s.conn, transport.Frame{Ref: m})
			continue
		}
		if frame == nil {
			frame = encodeMessage(m)
		}
		fan.Send(s.conn, transport.Frame{Data: frame, Ref: m})
		delivered++
	}
	r.mu.Unlock()
	fan.Flush()
	h.metrics.delivered(delivered)
}

// Reset implements broker.Handler: the broker lost continuity for room.
func (h *Hub) Reset(name string, pos broker.Position) {
	h.mu.RLock()
	r := h.rooms[name]
	h.mu.RUnlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for s, mem := range r.members.All() {
		if rec := mem.rec; rec != nil {
			p := pos
			rec.pendingReset = &p
			rec.pending, rec.pendingBytes, rec.overflowed = rec.pending[:0], 0, false
			continue
		}
		mem.epoch, mem.next = pos.Epoch, pos.Offset+1
		s.enqueueReset(name, pos)
	}
	h.metrics.reset()
}

func encodeMessage(m *broker.Message) []byte {
	return protocol.AppendMessage(make([]byte, 0, 96+len(m.Room)+len(m.Epoch)+len(m.From)+len(m.Data)), &protocol.Message{
		Room: m.Room, Epoch: m.Epoch, Offset: m.Offset, From: m.From, Data: m.Data, TS: m.Time,
	})
}

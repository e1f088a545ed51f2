package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// request is a Subscribe or Unsubscribe call handed to the controller.
type request struct {
	unsubscribe bool
	h           broker.Handler
	rooms       []string
	// state is requestPending until the controller answers or the caller
	// gives up, whichever comes first.
	state atomic.Int32
	reply chan error // cap 1
	// added are the subscriptions a Subscribe created, to be undone if its
	// caller gave up.
	added []pair
}

const (
	requestPending int32 = iota
	requestAnswered
	requestAbandoned
)

// answer delivers err to the caller; it reports false if the caller had
// given up.
func (r *request) answer(err error) bool {
	if !r.state.CompareAndSwap(requestPending, requestAnswered) {
		return false
	}
	r.reply <- err
	return true
}

// Subscribe makes h receive the messages of rooms published after
// Subscribe returns; h must be comparable. Subscribing h to a room twice is
// a no-op. Rooms this instance does not follow yet are subscribed on the
// pub/sub connection in one command per call (and per batch of concurrent
// calls); it fails with an error wrapping broker.ErrUnavailable while that
// connection is down.
func (b *Broker) Subscribe(ctx context.Context, h broker.Handler, rooms ...string) error {
	return b.call(ctx, &request{h: h, rooms: rooms})
}

// Unsubscribe stops delivering rooms to h: no message of those rooms
// reaches h after it returns. Rooms h is not subscribed to are ignored. A
// room's channel is unsubscribed when its last handler leaves. It works
// while Redis is unreachable.
func (b *Broker) Unsubscribe(ctx context.Context, h broker.Handler, rooms ...string) error {
	return b.call(ctx, &request{unsubscribe: true, h: h, rooms: rooms})
}

func (b *Broker) call(ctx context.Context, req *request) error {
	op := "subscribe"
	if req.unsubscribe {
		op = "unsubscribe"
	}
	if err := b.check(op, ctx); err != nil {
		return err
	}
	req.rooms = compact(req.rooms)
	if len(req.rooms) == 0 {
		return nil
	}
	req.reply = make(chan error, 1)
	select {
	case b.requests <- req:
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, errors.Join(broker.ErrUnavailable, ctx.Err()))
	case <-b.done:
		return fmt.Errorf("%s: %w", op, broker.ErrClosed)
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		if req.state.CompareAndSwap(requestPending, requestAbandoned) {
			return fmt.Errorf("%s: %w", op, errors.Join(broker.ErrUnavailable, ctx.Err()))
		}
		return <-req.reply
	case <-b.done:
		return fmt.Errorf("%s: %w", op, broker.ErrClosed)
	}
}

// compact returns rooms without duplicates, in their first order.
func compact(rooms []string) []string {
	if len(rooms) < 2 {
		return rooms
	}
	seen := make(map[string]bool, len(rooms))
	out := make([]string, 0, len(rooms))
	for _, r := range rooms {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}

// collect gathers the calls waiting behind first, up to maxBatch.
func (c *controller) collect(first *request) []*request {
	batch := []*request{first}
	for len(batch) < maxBatch {
		select {
		case req := <-c.b.requests:
			batch = append(batch, req)
		default:
			return batch
		}
	}
	return batch
}

// serve serves a batch of calls, each run of Subscribes and of Unsubscribes
// together, in order.
func (c *controller) serve(ctx context.Context, batch []*request) {
	for len(batch) > 0 {
		n := 1
		for n < len(batch) && batch[n].unsubscribe == batch[0].unsubscribe {
			n++
		}
		if batch[0].unsubscribe {
			c.serveUnsubscribe(ctx, batch[:n])
		} else {
			c.serveSubscribe(ctx, batch[:n])
		}
		batch = batch[n:]
	}
}

// serveUnsubscribe updates the table at once (the connection need not be
// up), has the dispatcher drop the handlers, which answers the calls, and
// unsubscribes the channels of rooms left without a handler.
func (c *controller) serveUnsubscribe(ctx context.Context, reqs []*request) {
	var pairs []pair
	var emptied []string
	for _, req := range reqs {
		for _, room := range req.rooms {
			set := c.subs[room]
			if !set.has(req.h) {
				continue
			}
			set.remove(req.h)
			c.subs[room] = set
			pairs = append(pairs, pair{req.h, room})
			if len(set) == 0 {
				delete(c.subs, room)
				emptied = append(emptied, room)
			}
		}
	}
	c.b.do(func(d *dispatcher) {
		d.remove(pairs)
		d.drop(emptied)
		for _, req := range reqs {
			req.answer(nil)
		}
	})
	if len(emptied) > 0 {
		channels := make([]string, len(emptied))
		for i, room := range emptied {
			channels[i] = c.b.channel(room)
		}
		c.unsubscribe(ctx, channels)
	}
}

// serveSubscribe serves Subscribe calls:
//
//  1. Rooms not in the table are subscribed, all in one command, and their
//     positions read (pipelined) once the subscription is in effect; the
//     dispatcher buffers their messages meanwhile and starts each at its
//     position (see dispatcher.init).
//  2. Handlers joining rooms that were already subscribed are held by the
//     dispatcher until a probe marker published now comes back, so that
//     they start exactly after what was published before the call.
//
// The table changes only for calls that succeed; a call that fails changes
// nothing.
func (c *controller) serveSubscribe(ctx context.Context, reqs []*request) {
	var newRooms []string
	isNew := make(map[string]bool)
	seen := make(map[pair]bool)
	for _, req := range reqs {
		for _, room := range req.rooms {
			p := pair{req.h, room}
			if c.subs[room].has(req.h) || seen[p] {
				continue
			}
			seen[p] = true
			req.added = append(req.added, p)
			if _, ok := c.subs[room]; !ok && !isNew[room] {
				isNew[room] = true
				newRooms = append(newRooms, room)
			}
		}
	}
	failed := make(map[*request]error)
	if len(seen) > 0 && c.dc == nil {
		for _, req := range reqs {
			if len(req.added) > 0 {
				failed[req] = fmt.Errorf("subscribe: pub/sub connection down: %w", broker.ErrUnavailable)
			}
		}
	}

	// 1. New rooms.
	var positions []broker.Position
	if len(newRooms) > 0 && c.dc != nil {
		var err error
		positions, err = c.subscribeRooms(ctx, newRooms)
		if err != nil {
			for _, req := range reqs {
				if slices.ContainsFunc(req.added, func(p pair) bool { return isNew[p.room] }) {
					failed[req] = err
				}
			}
		}
	}

	// 2. Rooms already subscribed.
	var held []pair
	var holders []*request
	for _, req := range reqs {
		if failed[req] != nil {
			continue
		}
		n := len(held)
		for _, p := range req.added {
			if !isNew[p.room] {
				held = append(held, p)
			}
		}
		if len(held) > n {
			holders = append(holders, req)
		}
	}
	if len(held) > 0 {
		seq := c.nextSeq()
		c.b.do(func(d *dispatcher) { d.hold(seq, held) })
		if err := c.publishMarker(ctx, seq); err != nil {
			c.b.do(func(d *dispatcher) { d.remove(held) })
			for _, req := range holders {
				failed[req] = fmt.Errorf("subscribe: %w", err)
			}
		}
	}

	// Settle: the new rooms start with the handlers of the calls that
	// succeeded; those left with none are unsubscribed again.
	if len(newRooms) > 0 && positions != nil {
		handlers := make(map[string][]broker.Handler, len(newRooms))
		for _, req := range reqs {
			if failed[req] != nil {
				continue
			}
			for _, p := range req.added {
				if isNew[p.room] {
					handlers[p.room] = append(handlers[p.room], p.h)
				}
			}
		}
		var unused []string
		for i, room := range newRooms {
			hs := handlers[room]
			if len(hs) == 0 {
				unused = append(unused, room)
				continue
			}
			pos := positions[i]
			c.b.do(func(d *dispatcher) { d.init(room, pos, hs) })
		}
		if len(unused) > 0 {
			c.b.do(func(d *dispatcher) { d.drop(unused) })
			channels := make([]string, len(unused))
			for i, room := range unused {
				channels[i] = c.b.channel(room)
			}
			c.unsubscribe(ctx, channels)
		}
	}
	for _, req := range reqs {
		if err := failed[req]; err != nil {
			req.answer(err)
			continue
		}
		for _, p := range req.added {
			set := c.subs[p.room]
			set.add(p.h)
			c.subs[p.room] = set
		}
		if !req.answer(nil) && len(req.added) > 0 {
			// The caller gave up waiting and was told it failed: undo.
			rooms := make([]string, len(req.added))
			for i, p := range req.added {
				rooms[i] = p.room
			}
			undo := &request{unsubscribe: true, h: req.h, rooms: rooms, reply: make(chan error, 1)}
			c.serveUnsubscribe(ctx, []*request{undo})
		}
	}
}

// subscribeRooms subscribes new rooms and reads their positions. On error
// it has the dispatcher forget them and unsubscribes what it can.
func (c *controller) subscribeRooms(ctx context.Context, rooms []string) ([]broker.Position, error) {
	channels := make([]string, len(rooms))
	for i, room := range rooms {
		channels[i] = c.b.channel(room)
	}
	c.b.do(func(d *dispatcher) { d.expect(rooms) })
	err := c.subscribe(ctx, c.dc, channels)
	var positions []broker.Position
	if err == nil {
		positions, err = c.b.positions(ctx, rooms)
	}
	if err != nil {
		c.b.do(func(d *dispatcher) { d.drop(rooms) })
		c.unsubscribe(ctx, channels)
		return nil, err
	}
	return positions, nil
}

// positions reads the positions of rooms, pipelined.
func (b *Broker) positions(ctx context.Context, rooms []string) ([]broker.Position, error) {
	if len(rooms) == 1 {
		pos, err := b.Position(ctx, rooms[0])
		return []broker.Position{pos}, err
	}
	g := b.gen.Load()
	positions := make([]broker.Position, 0, len(rooms))
	for chunk := range slices.Chunk(rooms, catchUpBatch) {
		execs := make([]rueidis.LuaExec, len(chunk))
		for i, room := range chunk {
			execs[i] = rueidis.LuaExec{
				Keys: []string{b.metaKey(room), b.logKey(room)},
				Args: []string{g.id, newEpoch(), b.historyTTLms},
			}
		}
		cctx, cancel := b.timeout(ctx)
		res := positionScript.ExecMulti(cctx, b.client, execs...)
		cancel()
		for _, r := range res {
			s, err := r.ToString()
			if err != nil {
				return nil, b.fail("position", cctx, err)
			}
			pos, err := parsePosition(s)
			if err != nil {
				return nil, err
			}
			positions = append(positions, pos)
		}
	}
	if err := b.sameGeneration(g); err != nil {
		return nil, fmt.Errorf("position: %w", err)
	}
	return positions, nil
}

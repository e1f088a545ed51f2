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

// part is the share of a Subscribe or Unsubscribe call that one shard
// serves: the call's rooms that live on the shard.
type part struct {
	unsubscribe bool
	h           broker.Handler
	rooms       []string
	// state is partPending until the shard answers or the caller gives
	// up, whichever comes first.
	state atomic.Int32
	reply chan error // cap 1
	// added are the subscriptions a Subscribe created, to be undone if its
	// caller gave up or another part of the call failed.
	added []pair
}

const (
	partPending int32 = iota
	partAnswered
	partAbandoned
)

// answer delivers err to the caller; it reports false if the caller had
// given up.
func (p *part) answer(err error) bool {
	if !p.state.CompareAndSwap(partPending, partAnswered) {
		return false
	}
	p.reply <- err
	return true
}

// Subscribe makes h receive the messages of rooms published after
// Subscribe returns; h must be comparable. Subscribing h to a room twice is
// a no-op. Rooms this instance does not follow yet are subscribed on their
// shard's pub/sub connection in one command per call (and per batch of
// concurrent calls; on a cluster, per hash slot); it fails with an error
// wrapping broker.ErrUnavailable while that connection is down. A call that
// fails subscribes nothing.
func (b *Broker) Subscribe(ctx context.Context, h broker.Handler, rooms ...string) error {
	return b.call(ctx, false, h, rooms)
}

// Unsubscribe stops delivering rooms to h: no message of those rooms
// reaches h after it returns. Rooms h is not subscribed to are ignored. A
// room's channel is unsubscribed when its last handler leaves. It works
// while Redis is unreachable.
func (b *Broker) Unsubscribe(ctx context.Context, h broker.Handler, rooms ...string) error {
	return b.call(ctx, true, h, rooms)
}

// call hands a Subscribe or Unsubscribe call to the shards, each its part,
// and waits for their answers. Subscribed rooms go to the shard that
// serves their slot; an Unsubscribe goes to every shard, which ignore the
// rooms they do not hold (a room whose master failed stays with its old
// shard until another master serves its slot). The topology cannot change
// while a call runs: moving rooms between shards waits for calls, and calls
// for moves (moveMu).
func (b *Broker) call(ctx context.Context, unsubscribe bool, h broker.Handler, rooms []string) error {
	op := "subscribe"
	if unsubscribe {
		op = "unsubscribe"
	}
	if err := b.check(op, ctx); err != nil {
		return err
	}
	rooms = compact(rooms)
	if len(rooms) == 0 {
		return nil
	}
	b.moveMu.RLock()
	defer b.moveMu.RUnlock()
	t := b.topo.Load()
	byShard := make(map[*shard][]string)
	if unsubscribe {
		for _, s := range b.shardList() {
			byShard[s] = rooms
		}
	} else {
		for _, room := range rooms {
			s := t.owner(b.roomSlot(room))
			if s == nil {
				return fmt.Errorf("%s to %q: no Redis master serves its slot now: %w", op, room, broker.ErrUnavailable)
			}
			byShard[s] = append(byShard[s], room)
		}
	}
	type sent struct {
		s *shard
		p *part
	}
	var parts []sent
	var first error
	for s, rs := range byShard {
		p := &part{unsubscribe: unsubscribe, h: h, rooms: rs, reply: make(chan error, 1)}
		select {
		case s.requests <- p:
			parts = append(parts, sent{s, p})
			continue
		case <-ctx.Done():
			first = fmt.Errorf("%s: %w", op, errors.Join(broker.ErrUnavailable, ctx.Err()))
		case <-b.done:
			first = fmt.Errorf("%s: %w", op, broker.ErrClosed)
		case <-s.stopped:
			first = fmt.Errorf("%s: %w", op, broker.ErrClosed)
		}
		break
	}
	var undo []sent // subscribe parts that succeeded, in case the call fails
	for _, x := range parts {
		var err, gaveUp error
		select {
		case err = <-x.p.reply:
		case <-ctx.Done():
			gaveUp = fmt.Errorf("%s: %w", op, errors.Join(broker.ErrUnavailable, ctx.Err()))
		case <-b.done:
			gaveUp = fmt.Errorf("%s: %w", op, broker.ErrClosed)
		}
		if gaveUp != nil {
			if x.p.state.CompareAndSwap(partPending, partAbandoned) {
				// The shard undoes what it does for the part.
				first = firstErr(first, gaveUp)
				continue
			}
			err = <-x.p.reply // answered meanwhile: the reply is on its way
		}
		if err != nil {
			first = firstErr(first, err)
		} else if !unsubscribe && len(x.p.added) > 0 {
			undo = append(undo, x)
		}
	}
	if first != nil {
		for _, x := range undo {
			b.undo(x.s, h, x.p.added)
		}
		return first
	}
	return nil
}

// firstErr returns the first non-nil error.
func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// undo takes back the subscriptions a failed call made on shard s.
func (b *Broker) undo(s *shard, h broker.Handler, added []pair) {
	rooms := make([]string, len(added))
	for i, p := range added {
		rooms[i] = p.room
	}
	p := &part{unsubscribe: true, h: h, rooms: rooms, reply: make(chan error, 1)}
	select {
	case s.requests <- p:
		<-p.reply
	case <-s.stopped:
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

// collect gathers the parts waiting behind first, up to maxBatch.
func (s *shard) collect(first *part) []*part {
	batch := []*part{first}
	for len(batch) < maxBatch {
		select {
		case p := <-s.requests:
			batch = append(batch, p)
		default:
			return batch
		}
	}
	return batch
}

// serve serves a batch of parts, each run of Subscribes and of
// Unsubscribes together, in order.
func (s *shard) serve(ctx context.Context, batch []*part) {
	for len(batch) > 0 {
		n := 1
		for n < len(batch) && batch[n].unsubscribe == batch[0].unsubscribe {
			n++
		}
		if batch[0].unsubscribe {
			s.serveUnsubscribe(ctx, batch[:n])
		} else {
			s.serveSubscribe(ctx, batch[:n])
		}
		batch = batch[n:]
	}
}

// serveUnsubscribe updates the table at once (the connection need not be
// up), has the dispatcher drop the handlers, which answers the calls, and
// unsubscribes the channels of rooms left without a handler.
func (s *shard) serveUnsubscribe(ctx context.Context, parts []*part) {
	var pairs []pair
	var emptied []string
	for _, p := range parts {
		for _, room := range p.rooms {
			set := s.subs[room]
			if !set.has(p.h) {
				continue
			}
			set.remove(p.h)
			s.setSubs(room, set)
			pairs = append(pairs, pair{p.h, room})
			if set.len() == 0 {
				emptied = append(emptied, room)
			}
		}
	}
	s.b.do(func(d *dispatcher) {
		d.remove(pairs)
		d.drop(emptied)
		for _, p := range parts {
			p.answer(nil)
		}
	})
	if len(emptied) > 0 {
		s.unsubscribe(ctx, emptied)
	}
}

// serveSubscribe serves Subscribe parts:
//
//  1. Rooms not in the table are subscribed, all in one round trip, and
//     their positions read (pipelined) once the subscription is in
//     effect; the dispatcher buffers their messages meanwhile and starts
//     each at its position (see dispatcher.init).
//  2. Handlers joining rooms that were already subscribed are held by the
//     dispatcher until a probe marker published now comes back, so that
//     they start exactly after what was published before the call.
//
// The table changes only for parts that succeed; a part that fails
// changes nothing.
func (s *shard) serveSubscribe(ctx context.Context, parts []*part) {
	var newRooms []string
	isNew := make(map[string]bool)
	seen := make(map[pair]bool)
	for _, p := range parts {
		for _, room := range p.rooms {
			pr := pair{p.h, room}
			if s.subs[room].has(p.h) || seen[pr] {
				continue
			}
			seen[pr] = true
			p.added = append(p.added, pr)
			if _, ok := s.subs[room]; !ok && !isNew[room] {
				isNew[room] = true
				newRooms = append(newRooms, room)
			}
		}
	}
	failed := make(map[*part]error)
	if len(seen) > 0 && s.dc == nil {
		for _, p := range parts {
			if len(p.added) > 0 {
				failed[p] = fmt.Errorf("subscribe: pub/sub connection to %s down: %w", s.name(), broker.ErrUnavailable)
			}
		}
	}

	// 1. New rooms.
	var positions []broker.Position
	if len(newRooms) > 0 && s.dc != nil {
		var err error
		positions, err = s.subscribeRooms(ctx, newRooms)
		if err != nil {
			for _, p := range parts {
				if slices.ContainsFunc(p.added, func(pr pair) bool { return isNew[pr.room] }) {
					failed[p] = err
				}
			}
		}
	}

	// 2. Rooms already subscribed.
	var held []pair
	var holders []*part
	for _, p := range parts {
		if failed[p] != nil {
			continue
		}
		n := len(held)
		for _, pr := range p.added {
			if !isNew[pr.room] {
				held = append(held, pr)
			}
		}
		if len(held) > n {
			holders = append(holders, p)
		}
	}
	if len(held) > 0 {
		seq := s.nextSeq()
		s.b.do(func(d *dispatcher) { d.hold(s, seq, held) })
		if err := s.publishMarker(ctx, seq); err != nil {
			s.b.do(func(d *dispatcher) { d.remove(held) })
			for _, p := range holders {
				failed[p] = fmt.Errorf("subscribe: %w", err)
			}
		}
	}

	// Settle: the new rooms start with the handlers of the parts that
	// succeeded; those left with none are unsubscribed again.
	if len(newRooms) > 0 && positions != nil {
		handlers := make(map[string][]broker.Handler, len(newRooms))
		for _, p := range parts {
			if failed[p] != nil {
				continue
			}
			for _, pr := range p.added {
				if isNew[pr.room] {
					handlers[pr.room] = append(handlers[pr.room], pr.h)
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
			s.b.do(func(d *dispatcher) { d.init(room, pos, hs) })
		}
		if len(unused) > 0 {
			s.b.do(func(d *dispatcher) { d.drop(unused) })
			s.dropPending(unused)
			s.unsubscribe(ctx, unused)
		}
	}
	for _, p := range parts {
		if err := failed[p]; err != nil {
			p.answer(err)
			continue
		}
		for _, pr := range p.added {
			set := s.subs[pr.room]
			set.add(pr.h)
			s.setSubs(pr.room, set)
		}
		if !p.answer(nil) && len(p.added) > 0 {
			// The caller gave up waiting and was told it failed: undo.
			rooms := make([]string, len(p.added))
			for i, pr := range p.added {
				rooms[i] = pr.room
			}
			undo := &part{unsubscribe: true, h: p.h, rooms: rooms, reply: make(chan error, 1)}
			s.serveUnsubscribe(ctx, []*part{undo})
		}
	}
}

// subscribeRooms subscribes new rooms and reads their positions. On error
// it has the dispatcher forget them and unsubscribes what it can.
func (s *shard) subscribeRooms(ctx context.Context, rooms []string) ([]broker.Position, error) {
	channels := make([]string, len(rooms))
	for i, room := range rooms {
		channels[i] = s.b.channel(room)
	}
	s.b.do(func(d *dispatcher) { d.expect(rooms, s) })
	// In the table without handlers, so that the connection's reader
	// tells if the server drops them before serveSubscribe settles them.
	s.subMu.Lock()
	for _, room := range rooms {
		s.subs[room] = handlerSet{}
	}
	s.subMu.Unlock()
	err := s.subscribe(ctx, s.dc, channels)
	var positions []broker.Position
	if err == nil {
		positions, err = s.b.positions(ctx, rooms)
	}
	if err != nil {
		s.b.do(func(d *dispatcher) { d.drop(rooms) })
		s.dropPending(rooms)
		s.unsubscribe(ctx, rooms)
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
	positions := make([]broker.Position, 0, len(rooms))
	for chunk := range slices.Chunk(rooms, catchUpBatch) {
		execs := make([]rueidis.LuaExec, len(chunk))
		for i, room := range chunk {
			execs[i] = rueidis.LuaExec{
				Keys: []string{b.metaKey(room), b.logKey(room)},
				Args: []string{newEpoch(), b.historyTTLms},
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
	return positions, nil
}

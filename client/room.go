package client

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// room is what the client knows of one room: whether it is joined, the
// position of the last message received, and what keeps exactly-once
// delivery across reconnects. Guarded by Client.mu.
type room struct {
	name string
	// joined is set from the server's joined until its left.
	joined bool
	// joins and leaves count the pending Join and Leave calls.
	joins, leaves int
	// pos is the position of the last message received, or where the
	// stream started; it is what a resume starts from.
	pos    Position
	hasPos bool
	// ownAcks are positions of the client's own acked publishes that lie
	// ahead of pos: the server skips them on the live path but resends
	// them on a resume, where they must not be delivered.
	ownAcks map[Position]struct{}
	// holds counts the publishes to this room that were written on a
	// connection that ended before their ack. Until they are answered,
	// resumed messages of the client's user wait in held (with everything
	// after them): one of them may be the client's own publish, which the
	// ack will name.
	holds int
	held  []Message
	// resumedOn is the connection whose resume joined the room.
	resumedOn *conn
}

// roomFor returns the room called name, creating it. c.mu must be held.
func (c *Client) roomFor(name string) *room {
	rm := c.rooms[name]
	if rm == nil {
		rm = &room{name: name}
		c.rooms[name] = rm
	}
	return rm
}

// forget drops rm once nothing refers to it any more. c.mu must be held.
func (c *Client) forget(rm *room) {
	if !rm.joined && rm.joins == 0 && rm.leaves == 0 && rm.holds == 0 && len(rm.held) == 0 {
		delete(c.rooms, rm.name)
	}
}

// setPos moves rm to p, never backwards within an epoch.
func (rm *room) setPos(p Position) {
	if rm.hasPos && p.Epoch == rm.pos.Epoch && p.Offset < rm.pos.Offset {
		return
	}
	rm.forcePos(p)
}

// forcePos moves rm to p and then past the client's own messages that
// follow it.
func (rm *room) forcePos(p Position) {
	if rm.hasPos && p.Epoch != rm.pos.Epoch {
		for q := range rm.ownAcks {
			if q.Epoch != p.Epoch {
				delete(rm.ownAcks, q)
			}
		}
	}
	rm.pos, rm.hasPos = p, true
	for q := range rm.ownAcks {
		if q.Epoch == p.Epoch && q.Offset <= p.Offset {
			delete(rm.ownAcks, q)
		}
	}
	for {
		next := Position{Epoch: rm.pos.Epoch, Offset: rm.pos.Offset + 1}
		if _, ok := rm.ownAcks[next]; !ok {
			return
		}
		delete(rm.ownAcks, next)
		rm.pos = next
	}
}

// push delivers m behind whatever rm holds. c.mu must be held.
func (c *Client) push(rm *room, m Message) {
	if len(rm.held) > 0 {
		rm.held = append(rm.held, m)
		return
	}
	c.emit(m)
}

// flushHeld delivers what rm held. c.mu must be held.
func (c *Client) flushHeld(rm *room) {
	for _, m := range rm.held {
		c.emit(m)
	}
	rm.held = nil
	c.forget(rm)
}

// recountHolds counts, at a welcome, the publishes that were written on an
// ended connection and are not answered yet. c.mu must be held.
func (c *Client) recountHolds() {
	if c.cfg.Echo {
		return // own messages are delivered anyway
	}
	for _, rm := range c.rooms {
		rm.holds = 0
	}
	for _, r := range c.pending {
		r.holds = nil
		if r.publishes() && r.everSent && !r.abandoned {
			if rm := c.rooms[r.room()]; rm != nil && rm.joined {
				rm.holds++
				r.holds = rm
			}
		}
	}
	for _, rm := range c.rooms {
		if rm.holds == 0 && len(rm.held) > 0 {
			c.flushHeld(rm)
		}
	}
}

// handle applies one server frame. c.mu must be held.
func (c *Client) handle(cn *conn, f *protocol.ServerFrame) {
	switch f.Type {
	case protocol.TypeWelcome:
		c.onWelcome(cn, f)
	case protocol.TypeMessage:
		c.onMessage(f)
	case protocol.TypeReset:
		c.onReset(f)
	case protocol.TypeJoined:
		c.onJoined(cn, f)
	case protocol.TypeReconnect:
		d := time.Duration(max(f.ReconnectAfter, 0)) * time.Millisecond
		cn.reconnectAfter = &d
		c.log.Info("server asks to reconnect", "server", f.Server, "after_ms", f.ReconnectAfter)
	default:
		r := c.answered(f)
		if r == nil {
			if f.Type == protocol.TypeError {
				c.log.Warn("server error", "code", f.Code, "message", f.Message)
			}
			return
		}
		c.onAnswer(cn, r, f)
	}
}

// answered returns the pending request f answers, or nil.
func (c *Client) answered(f *protocol.ServerFrame) *request {
	if len(f.ID) == 0 {
		return nil
	}
	id, err := strconv.ParseUint(string(f.ID), 10, 64)
	if err != nil {
		return nil
	}
	return c.pending[id]
}

func (c *Client) onMessage(f *protocol.ServerFrame) {
	rm := c.rooms[f.Room]
	if rm == nil {
		return // left, or never joined
	}
	p := Position{Epoch: f.Epoch, Offset: f.Offset}
	if rm.hasPos && p.Epoch == rm.pos.Epoch && p.Offset <= rm.pos.Offset {
		c.log.Debug("duplicate dropped", "room", f.Room, "epoch", p.Epoch, "offset", p.Offset)
		return
	}
	if _, own := rm.ownAcks[p]; own {
		rm.forcePos(p) // the client's own publish, resent by a resume
		return
	}
	rm.forcePos(p)
	m := messageFrom(f)
	if len(rm.held) > 0 || rm.holds > 0 && f.From == c.user {
		rm.held = append(rm.held, m)
		return
	}
	c.emit(m)
}

func (c *Client) onReset(f *protocol.ServerFrame) {
	rm := c.rooms[f.Room]
	if rm == nil {
		return
	}
	p := Position{Epoch: f.Epoch, Offset: f.Offset}
	rm.forcePos(p)
	c.push(rm, Message{Kind: KindReset, Room: f.Room, Position: p})
}

func (c *Client) onJoined(cn *conn, f *protocol.ServerFrame) {
	p := Position{Epoch: f.Epoch, Offset: f.Offset}
	if len(f.ID) == 0 {
		// The end of a room's resume.
		rm := c.rooms[f.Room]
		if rm == nil {
			// Joined from the state of the previous session (hello.session),
			// but left since: leave again.
			c.leaveQuietly(f.Room)
			return
		}
		c.resumed(cn, rm, f)
		return
	}
	r := c.answered(f)
	if r == nil || r.frame.Type != protocol.TypeJoin {
		return
	}
	rm := c.rooms[f.Room]
	switch {
	case r.rejoin:
		c.resolve(r, f, nil)
		if rm != nil {
			c.resumed(cn, rm, f)
		}
	case r.abandoned:
		c.resolve(r, f, nil)
		if rm == nil || !rm.joined && rm.joins == 0 {
			c.leaveQuietly(f.Room)
		}
	default:
		rm = c.roomFor(f.Room)
		if rm.joined {
			rm.setPos(p)
		} else {
			// A new stream: its start is the truth, whatever since said.
			rm.forcePos(p)
			rm.joined = true
		}
		c.resolve(r, f, nil)
	}
}

// resumed records that the resume of cn joined rm again. A resume that
// could not recover every missed message is reported as a reset.
func (c *Client) resumed(cn *conn, rm *room, f *protocol.ServerFrame) {
	p := Position{Epoch: f.Epoch, Offset: f.Offset}
	rm.resumedOn = cn
	if cn.resumed[rm.name] && !f.Recovered {
		rm.forcePos(p)
		c.push(rm, Message{Kind: KindReset, Room: rm.name, Position: p})
	} else {
		rm.setPos(p)
	}
	rm.joined = true
}

// onAnswer applies the answer f to the request r.
func (c *Client) onAnswer(cn *conn, r *request, f *protocol.ServerFrame) {
	if f.Type == protocol.TypeError {
		err := answerError(f)
		switch {
		case r.rejoin:
			c.resolve(r, nil, err)
			c.rejoinRefused(cn, r.frame.Room, err)
		case r.frame.Type == protocol.TypeLeave && f.Code == protocol.CodeNotJoined:
			c.left(r, f) // not joined is what leave wants
		default:
			c.resolve(r, nil, err)
		}
		return
	}
	want := map[string]string{
		protocol.TypePublish: protocol.TypeAck, protocol.TypeSend: protocol.TypeAck,
		protocol.TypeLeave: protocol.TypeLeft, protocol.TypePresence: protocol.TypePresence,
		protocol.TypeHistory: protocol.TypeHistory, protocol.TypePing: protocol.TypePong,
	}[r.frame.Type]
	if f.Type != want {
		c.resolve(r, nil, &protocol.Error{Code: protocol.CodeInternal, Message: "unexpected answer " + f.Type + " to " + r.frame.Type})
		return
	}
	switch r.frame.Type {
	case protocol.TypePublish, protocol.TypeSend:
		c.ownAck(f)
		c.resolve(r, f, nil)
	case protocol.TypeLeave:
		c.left(r, f)
	case protocol.TypePing:
		c.resolve(r, f, nil)
		if r.id == cn.barrier {
			c.afterResume(cn)
		}
	default:
		c.resolve(r, f, nil)
	}
}

// left ends a leave: the room is no longer joined.
func (c *Client) left(r *request, f *protocol.ServerFrame) {
	if rm := c.rooms[r.frame.Room]; rm != nil {
		rm.joined = false
		rm.hasPos = false
		rm.ownAcks = nil
		c.flushHeld(rm)
	}
	c.resolve(r, f, nil)
}

// ownAck records the position of the client's own publish. c.mu must be
// held.
func (c *Client) ownAck(f *protocol.ServerFrame) {
	if c.cfg.Echo {
		return
	}
	rm := c.rooms[f.Room]
	if rm == nil || !rm.joined {
		return
	}
	p := Position{Epoch: f.Epoch, Offset: f.Offset}
	// A resumed message held for this ack is the publish itself.
	for i, m := range rm.held {
		if m.Kind == KindMessage && m.Position == p {
			rm.held = slices.Delete(rm.held, i, i+1)
			return
		}
	}
	if rm.hasPos && p.Epoch == rm.pos.Epoch && p.Offset <= rm.pos.Offset {
		return
	}
	if rm.ownAcks == nil {
		rm.ownAcks = make(map[Position]struct{})
	}
	rm.ownAcks[p] = struct{}{}
	if rm.hasPos && p.Epoch == rm.pos.Epoch {
		rm.forcePos(rm.pos)
	}
}

// afterResume rejoins the rooms that the resume of cn did not join: the
// server answered those with error frames without id, which name no room
// the client could rely on, so it asks again with a join of its own.
func (c *Client) afterResume(cn *conn) {
	for _, name := range slices.Sorted(maps.Keys(cn.resumed)) {
		rm := c.rooms[name]
		if rm == nil || !rm.joined || rm.resumedOn == cn {
			continue
		}
		c.log.Warn("room not resumed, joining again", "room", name)
		f := protocol.ClientFrame{Type: protocol.TypeJoin, Room: name}
		if rm.hasPos && rm.pos.Epoch != "" {
			since := rm.pos
			f.Since = &since
		}
		c.add(&request{frame: f, rejoin: true})
	}
}

// rejoinRefused handles a refused rejoin: a refusal that may pass
// (unavailable, internal) ends the connection, so that the next one tries
// again; any other drops the room and says so.
func (c *Client) rejoinRefused(cn *conn, room string, err error) {
	var pe *protocol.Error
	if retryable(err) || errors.As(err, &pe) && pe.Code == protocol.CodeInternal {
		cn.fail(err)
		return
	}
	rm := c.rooms[room]
	if rm == nil {
		return
	}
	c.log.Warn("room lost", "room", room, "err", err)
	c.flushHeld(rm)
	rm.joined = false
	c.emit(Message{Kind: KindLeft, Room: room, Position: rm.pos, Err: err})
	rm.hasPos, rm.ownAcks = false, nil
	c.forget(rm)
}

// leaveQuietly leaves a room the server joined without the client asking.
func (c *Client) leaveQuietly(room string) {
	if room == protocol.Inbox(c.user) {
		return
	}
	c.add(&request{frame: protocol.ClientFrame{Type: protocol.TypeLeave, Room: room}})
}

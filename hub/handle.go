package hub

import (
	"context"
	"encoding/json"
	"errors"
	"sort"

	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// handle answers one decoded client frame. Frames of a session are handled
// one at a time, in the order they arrived.
func (s *Session) handle(f *protocol.ClientFrame) {
	var err error
	switch f.Type {
	case protocol.TypeHello:
		err = protocol.Errorf(protocol.CodeBadRequest, "hello was already received")
	case protocol.TypeJoin:
		err = s.join(f)
	case protocol.TypeLeave:
		err = s.leave(f)
	case protocol.TypePublish:
		err = s.publish(f, f.Room)
	case protocol.TypeSend:
		err = s.sendDirect(f)
	case protocol.TypePresence:
		err = s.presence(f)
	case protocol.TypeHistory:
		err = s.history(f)
	case protocol.TypeRefresh:
		err = s.refresh(f)
	case protocol.TypePing:
		s.send(&protocol.Pong{Type: protocol.TypePong, ID: f.ID})
	}
	if err != nil {
		s.sendError(f.ID, s.hub.protocolError(err))
	}
}

// unconfirmedMessage explains the one unavailable answer after which the
// message may have been stored (see broker.ErrUnconfirmed).
const unconfirmedMessage = "the message bus did not confirm this publish (its connection broke or went silent): the message may have been stored; publish again with the same key to find out"

// protocolError turns an error of a handler into the error frame's code.
func (h *Hub) protocolError(err error) *protocol.Error {
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, broker.ErrUnconfirmed):
		return protocol.Errorf(protocol.CodeUnavailable, unconfirmedMessage)
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, broker.ErrClosed):
		return protocol.Errorf(protocol.CodeUnavailable, "the message bus is unavailable; nothing was stored, try again")
	case errors.Is(err, ErrDraining):
		return protocol.Errorf(protocol.CodeUnavailable, "this instance is draining; reconnect")
	}
	h.log.Error("internal error", "err", err)
	return protocol.Errorf(protocol.CodeInternal, "internal error")
}

func (s *Session) leave(f *protocol.ClientFrame) error {
	if f.Room == protocol.Inbox(s.user) {
		return protocol.Errorf(protocol.CodeBadRequest, "a session cannot leave its inbox")
	}
	s.mu.Lock()
	r := s.removeRoomLocked(f.Room)
	s.dirty = true
	s.mu.Unlock()
	if r == nil {
		return protocol.Errorf(protocol.CodeNotJoined, "not joined to %s", f.Room)
	}
	// The member is gone whatever happens: its cleanup is not cut short
	// when the session closes.
	ctx, cancel := s.hub.brokerCtx(context.Background())
	defer cancel()
	s.hub.removeMember(ctx, s, r)
	s.send(&protocol.Left{Type: protocol.TypeLeft, ID: f.ID, Room: f.Room})
	return nil
}

func (s *Session) joined(room string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.roomLocked(room) >= 0
}

func (s *Session) publish(f *protocol.ClientFrame, room string) error {
	if !s.joined(room) {
		return protocol.Errorf(protocol.CodeNotJoined, "join the room before publishing to it")
	}
	if !s.claims().CanPublish(room) {
		return protocol.Errorf(protocol.CodeForbidden, "your token does not allow publishing to %s", room)
	}
	return s.publishTo(f, room)
}

func (s *Session) sendDirect(f *protocol.ClientFrame) error {
	if s.hub.cfg.NoDirect && f.To != s.user {
		return protocol.Errorf(protocol.CodeForbidden, "direct messages are disabled on this server")
	}
	return s.publishTo(f, protocol.Inbox(f.To))
}

// publishTo stores the frame's data in room through the broker and acks it.
// The reader waits for the broker, so a session's publishes are stored and
// acked in the order it sent them.
func (s *Session) publishTo(f *protocol.ClientFrame, room string) error {
	if s.hub.draining.Load() {
		return ErrDraining
	}
	ctx, done := s.call(true)
	pos, err := s.hub.publish(ctx, room, broker.Publication{From: s.user, Origin: s.id, Data: f.Data, Key: f.Key})
	done()
	if err != nil {
		return err
	}
	s.send(&protocol.Ack{Type: protocol.TypeAck, ID: f.ID, Room: room, Epoch: pos.Epoch, Offset: pos.Offset})
	return nil
}

// publish hands a publication to the broker and counts it. Unlike other
// broker calls it has no deadline of its own: once sent, a publish waits
// for the broker's answer, since a deadline passing while Redis (late, but
// alive) runs the script would answer "unavailable" for a stored message.
// A dead connection still fails it: the Redis client gives up on a
// connection that answers nothing for its timeout (5 s by default).
func (h *Hub) publish(ctx context.Context, room string, p broker.Publication) (broker.Position, error) {
	done := h.metrics.publishStarted()
	pos, err := h.broker.Publish(ctx, room, p)
	done(err)
	return pos, err
}

func (s *Session) presence(f *protocol.ClientFrame) error {
	if !s.claims().CanJoin(f.Room) {
		return protocol.Errorf(protocol.CodeForbidden, "your token does not allow %s", f.Room)
	}
	ctx, done := s.call(false)
	users, err := s.hub.RoomPresence(ctx, f.Room)
	done()
	if err != nil {
		return err
	}
	s.send(&protocol.Presence{Type: protocol.TypePresence, ID: f.ID, Room: f.Room, Total: len(users), Users: users})
	return nil
}

// RoomPresence returns the users present in room with their session
// counts, sorted by user.
func (h *Hub) RoomPresence(ctx context.Context, room string) ([]protocol.UserSessions, error) {
	entries, err := h.broker.Presence(ctx, room)
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int)
	for _, e := range entries {
		counts[e.User]++
	}
	users := make([]protocol.UserSessions, 0, len(counts))
	for u, n := range counts {
		users = append(users, protocol.UserSessions{User: u, Sessions: n})
	}
	sort.Slice(users, func(i, j int) bool { return users[i].User < users[j].User })
	return users, nil
}

func (s *Session) history(f *protocol.ClientFrame) error {
	if !s.claims().CanJoin(f.Room) {
		return protocol.Errorf(protocol.CodeForbidden, "your token does not allow %s", f.Room)
	}
	ctx, done := s.call(false)
	h, err := s.hub.History(ctx, f.Room, f.Since, f.Limit)
	done()
	if err != nil {
		return err
	}
	msgs := make([]json.RawMessage, len(h.Messages))
	for i, m := range h.Messages {
		msgs[i] = encodeMessage(m)
	}
	// The answer may be larger than the send queue: it waits for room
	// rather than closing a client that asked for it.
	s.sendWait(&protocol.History{Type: protocol.TypeHistory, ID: f.ID, Room: f.Room, Epoch: h.Epoch, Offset: h.Offset, Messages: msgs})
	return nil
}

// History reads room's history. With since in the room's current epoch it
// returns the messages after since.Offset, oldest first; otherwise the
// latest ones. limit is capped by the history size (0 means all of it).
func (h *Hub) History(ctx context.Context, room string, since *protocol.Position, limit int) (broker.History, error) {
	if limit <= 0 || limit > h.cfg.HistorySize {
		limit = h.cfg.HistorySize
	}
	q := broker.HistoryQuery{Limit: limit, Tail: true}
	if since != nil {
		q = broker.HistoryQuery{After: since.Offset, Limit: limit}
	}
	res, err := h.broker.History(ctx, room, q)
	if err != nil {
		return res, err
	}
	if since != nil && since.Epoch != res.Epoch {
		// A position of another epoch means nothing here: answer with the
		// latest messages of the current epoch.
		return h.broker.History(ctx, room, broker.HistoryQuery{Limit: limit, Tail: true})
	}
	return res, nil
}

func (s *Session) refresh(f *protocol.ClientFrame) error {
	if s.hub.cfg.Verifier == nil {
		return protocol.Errorf(protocol.CodeForbidden, "this server verifies no tokens")
	}
	c, err := s.hub.cfg.Verifier.Verify(f.Token)
	if err != nil {
		s.hub.metrics.authFailure("refresh")
		msg := "invalid token"
		if errors.Is(err, auth.ErrExpired) {
			msg = "token expired"
		}
		return protocol.Errorf(protocol.CodeForbidden, "%s", msg)
	}
	if c.User != s.user {
		s.hub.metrics.authFailure("refresh")
		return protocol.Errorf(protocol.CodeForbidden, "the new token is for another user")
	}
	s.grants = grantsOf(c)
	s.armExpiry(c)
	s.leaveForbidden()
	s.send(&protocol.Ack{Type: protocol.TypeAck, ID: f.ID})
	return nil
}

// leaveForbidden takes the session out of the rooms its claims no longer
// allow (a refresh with narrower rooms), with a left frame without id for
// each. The inbox is never left.
func (s *Session) leaveForbidden() {
	var gone []*room
	s.mu.Lock()
	for _, sr := range s.rooms {
		if _, inbox := protocol.InboxUser(sr.r.name); !inbox && !s.claims().CanJoin(sr.r.name) {
			gone = append(gone, sr.r)
		}
	}
	for _, r := range gone {
		s.removeRoomLocked(r.name)
		s.dirty = true
	}
	s.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	ctx, cancel := s.hub.brokerCtx(context.Background())
	defer cancel()
	for _, r := range gone {
		s.hub.removeMember(ctx, s, r)
		s.send(&protocol.Left{Type: protocol.TypeLeft, Room: r.name})
	}
}

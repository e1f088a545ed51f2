package hub

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-rt/switchboard/admission"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/transport"
)

// Close codes used by the hub (PROTOCOL.md).
const (
	closePolicy       = protocol.ClosePolicy
	closeRestarting   = protocol.CloseRestarting
	closeUnauthorized = protocol.CloseUnauthorized
	closeDisconnected = protocol.CloseDisconnected
	closeGoingAway    = transport.CloseGoingAway
	closeTryLater     = transport.CloseTryAgainLater
	closeRateLimited  = protocol.CloseRateLimited
)

// Session is one WebSocket connection: before hello a connection waiting
// to be admitted, after it an authenticated user's session. It is the
// transport.Handler of its connection.
type Session struct {
	hub  *Hub
	conn *transport.Conn
	// addr is the client address counted by Hub.admitted until Closed.
	addr netip.Addr
	// welcomed is set once hello was accepted: from then on the session is
	// in the hub and its frames are requests.
	welcomed atomic.Bool
	// helloSeen is set when the first message arrived (the hello timer
	// then stands down).
	helloSeen atomic.Bool
	id        string
	user      string
	// flushSlice is when in each second flushStates saves the session.
	flushSlice uint8
	// pingSlice is when in each heartbeat interval the session is pinged.
	// Set before the session is in the hub, under Hub.mu.
	pingSlice uint8
	// echo is fixed by hello.
	echo bool

	// Owned by the reading goroutine.
	grants    grants
	badFrames *rate.Limiter // nil until the first invalid frame
	// deadline is the index plus one of the session's entry in the hub's
	// deadlines (the hello timeout, then the token's expiry), 0 when it has
	// none. Guarded by deadlines.mu.
	deadline int

	mu sync.Mutex
	// rooms the session is a member of, its inbox included. A slice: most
	// sessions are in a room or two, and a map costs hundreds of bytes.
	rooms []sessionRoom
	dirty bool
	// closing is set once the connection stops being open.
	closing bool
	// cancelCall cancels the broker call in flight for the session, if
	// any (see call).
	cancelCall context.CancelFunc
	// waiter is the hello waiting for an accept token, if any (see admit).
	waiter *admission.Waiter
}

// grants is what the session's token allows. The session keeps these
// parts of its claims only: its user is Session.user, and its expiry is in
// the hub's deadlines.
type grants struct {
	rooms, publish       []string
	hasRooms, hasPublish bool
}

func grantsOf(c auth.Claims) grants {
	return grants{rooms: c.Rooms, publish: c.Publish, hasRooms: c.HasRooms, hasPublish: c.HasPublish}
}

// claims returns the session's claims for their permission checks.
func (s *Session) claims() auth.Claims {
	g := s.grants
	return auth.Claims{User: s.user, Rooms: g.rooms, Publish: g.publish, HasRooms: g.hasRooms, HasPublish: g.hasPublish}
}

// sessionRoom is a room a session is in.
type sessionRoom struct {
	r *room
	// sent is the position of the last message written to the socket:
	// what hello.session resumes from. Its Epoch is empty until the join
	// has set where the session's stream starts.
	sent broker.Position
}

// roomLocked returns the index of room name in s.rooms, or -1. s.mu must
// be held.
func (s *Session) roomLocked(name string) int {
	for i := range s.rooms {
		if s.rooms[i].r.name == name {
			return i
		}
	}
	return -1
}

// removeRoomLocked drops room name from s.rooms and returns it, or nil.
// s.mu must be held.
func (s *Session) removeRoomLocked(name string) *room {
	i := s.roomLocked(name)
	if i < 0 {
		return nil
	}
	r := s.rooms[i].r
	s.rooms = slices.Delete(s.rooms, i, i+1)
	return r
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// User returns the session's user.
func (s *Session) User() string { return s.user }

// call returns a context for one broker call made for the session: bounded
// by the broker timeout unless unbounded is set, and cancelled when the
// session closes, so that a session that ends does not leave its reader
// waiting for the broker. Call done when the call returns. One call at a
// time is in flight per session: its frames are handled in order.
func (s *Session) call(unbounded bool) (ctx context.Context, done func()) {
	var cancel context.CancelFunc
	if unbounded {
		ctx, cancel = context.WithCancel(context.Background())
	} else {
		ctx, cancel = context.WithTimeout(context.Background(), s.hub.cfg.BrokerTimeout)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		cancel()
		return ctx, func() {}
	}
	s.cancelCall = cancel
	s.mu.Unlock()
	return ctx, func() {
		s.mu.Lock()
		s.cancelCall = nil
		s.mu.Unlock()
		cancel()
	}
}

// send encodes and queues a control frame (anything but a room message).
func (s *Session) send(v any) {
	s.conn.Send(transport.Frame{Data: protocol.Encode(v)})
}

// sendWait encodes and queues an answer the client asked for, waiting for
// room in the send queue (see transport.Conn.SendWait).
func (s *Session) sendWait(v any) {
	s.conn.SendWait(transport.Frame{Data: protocol.Encode(v)})
}

// sendError queues an error frame.
func (s *Session) sendError(id json.RawMessage, e *protocol.Error) {
	s.hub.metrics.errorFrame(e.Code)
	s.send(&protocol.ErrorFrame{Type: protocol.TypeError, ID: id, Code: e.Code, Message: e.Message})
}

// enqueueReset queues a reset frame and records the new position.
func (s *Session) enqueueReset(room string, pos broker.Position) {
	s.mu.Lock()
	if i := s.roomLocked(room); i >= 0 {
		s.rooms[i].sent = pos
		s.dirty = true
	}
	s.mu.Unlock()
	s.send(&protocol.Reset{Type: protocol.TypeReset, Room: room, Epoch: pos.Epoch, Offset: pos.Offset})
}

// close ends the session with code after the frames already queued.
func (s *Session) close(code int, reason string) { s.conn.Close(code, reason) }

// Written implements transport.Handler: it records the position of the
// last message written per room, for hello.session.
func (s *Session) Written(frames []transport.Frame) {
	now := time.Now()
	for _, f := range frames {
		if m, ok := f.Ref.(*broker.Message); ok && len(f.Data) > 0 {
			s.hub.metrics.written(m.Time, now)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range frames {
		m, ok := f.Ref.(*broker.Message)
		if !ok {
			continue
		}
		if i+1 < len(frames) {
			if next, ok := frames[i+1].Ref.(*broker.Message); ok && next.Room == m.Room {
				continue // only a room's last message in this write counts
			}
		}
		if j := s.roomLocked(m.Room); j >= 0 { // not if left meanwhile
			s.rooms[j].sent = m.Position()
			s.dirty = true
		}
	}
}

// Closing implements transport.Handler: nothing more is handled, and the
// broker call in flight, if any, ends now.
func (s *Session) Closing() {
	s.mu.Lock()
	s.closing = true
	cancel := s.cancelCall
	w := s.waiter
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if w != nil {
		s.hub.gate.Cancel(w)
	}
}

// Closed implements transport.Handler: the connection is gone.
func (s *Session) Closed() {
	s.hub.deadlines.clear(s, anyDeadline)
	if s.welcomed.Load() {
		s.hub.endSession(s)
	}
	s.hub.admitted.Release(s.addr)
	s.hub.conns.Add(-1)
}

// state returns the session's resumable state.
func (s *Session) state() broker.SessionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := broker.SessionState{ID: s.id, User: s.user, Rooms: make(map[string]broker.Position, len(s.rooms))}
	for _, sr := range s.rooms {
		if sr.sent.Epoch != "" {
			st.Rooms[sr.r.name] = sr.sent
		}
	}
	s.dirty = false
	return st
}

// takeDirty reports and clears whether the state changed since last saved.
func (s *Session) takeDirty() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dirty
	s.dirty = false
	return d
}

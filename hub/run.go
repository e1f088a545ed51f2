package hub

import (
	"context"
	"errors"

	"golang.org/x/time/rate"

	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// badFrameBurst is how many invalid frames in a row (refilled at one per
// second) a session may send before it is closed with 1008.
const badFrameBurst = 10

// frame handles one client message after hello.
func (s *Session) frame(data []byte, text, limited bool) {
	if !text {
		s.invalid(nil, protocol.Errorf(protocol.CodeBadRequest, "frames must be text frames holding JSON"))
		return
	}
	// Decode before the rate limit so that a refusal names the frame's
	// id; the decode is bounded by --max-frame.
	f, derr := protocol.Decode(data)
	if limited {
		s.sendError(f.ID, protocol.Errorf(protocol.CodeRateLimited, "more than %g frames per second; slow down", s.hub.cfg.Rate))
		return
	}
	if derr != nil {
		var pe *protocol.Error
		errors.As(derr, &pe)
		s.invalid(f.ID, pe)
		return
	}
	s.handle(f)
}

// invalid answers a malformed frame, and closes a session that keeps
// sending them with 1008.
func (s *Session) invalid(id []byte, e *protocol.Error) {
	s.sendError(id, e)
	if s.badFrames == nil {
		// Made on the first bad frame: most sessions never send one.
		s.badFrames = rate.NewLimiter(rate.Limit(1), badFrameBurst)
	}
	if !s.badFrames.Allow() {
		s.close(closePolicy, "too many invalid frames")
	}
}

// armExpiry closes the session with 4003 when its token stops being valid:
// at c.ValidUntil, exp plus the verifier's leeway, the moment from which the
// same token would be refused at hello. A token accepted inside the leeway
// thus keeps its session for the rest of it, rather than getting welcome
// and 4003 a moment later.
func (s *Session) armExpiry(c auth.Claims) {
	until := c.ValidUntil
	if until.IsZero() {
		until = c.Expires // a Verifier that reports no leeway
	}
	if until.IsZero() {
		s.hub.deadlines.clear(s, anyDeadline)
		return
	}
	s.hub.deadlines.set(s, until, tokenDeadline)
}

// deadlineReached closes a session whose deadline came.
func (h *Hub) deadlineReached(s *Session, kind deadlineKind) {
	switch kind {
	case helloDeadline:
		if !s.helloSeen.Load() {
			h.metrics.authFailure("hello_timeout")
			s.conn.Close(closeUnauthorized, "no hello in time")
		}
	case tokenDeadline:
		s.close(closeUnauthorized, "token expired")
	}
}

// endSession removes an ended session from its rooms and the hub and saves
// its state for hello.session.
func (h *Hub) endSession(s *Session) {
	s.mu.Lock()
	rooms := make([]*room, 0, len(s.rooms))
	for _, sr := range s.rooms {
		rooms = append(rooms, sr.r)
	}
	s.mu.Unlock()

	h.saveStates(s)
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.BrokerTimeout)
	defer cancel()
	for _, r := range rooms {
		h.removeMember(ctx, s, r)
	}
	h.removeSession(s)
}

// removeMember takes s out of r and the room's presence.
func (h *Hub) removeMember(ctx context.Context, s *Session, r *room) {
	r.mu.Lock()
	r.members.Delete(s)
	r.mu.Unlock()
	if err := h.broker.RemovePresence(ctx, r.name, s.id); err != nil && !errors.Is(err, broker.ErrClosed) {
		h.log.Warn("remove presence", "room", r.name, "session", s.id, "err", err)
	}
	h.release(r)
}

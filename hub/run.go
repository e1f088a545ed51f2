package hub

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// run starts a session after hello and reads its frames until it ends.
func (h *Hub) run(s *Session, hello *protocol.ClientFrame) {
	h.addSession(s)
	h.metrics.sessionOpened()
	s.conn.SetPongHandler(func(string) error { s.touch(); return nil })
	// Only the session's writers write to the socket (see wire.go).
	s.conn.SetPingHandler(s.pingReceived)
	s.conn.SetCloseHandler(s.closeReceived)
	s.armExpiry(s.claims.Expires)
	if err := h.welcome(s, hello); err != nil {
		h.log.Warn("hello failed", "session", s.id, "user", s.user, "err", err)
		s.close(websocket.CloseTryAgainLater, "broker unavailable, try again", true)
		s.waitClosed()
		h.endSession(s)
		return
	}
	// Reading continues on fresh goroutines (see awaitFrames); the
	// connection is handed over with its count.
	h.conns.Add(1)
	go h.readFrames(s)
}

// awaitFrames waits until the session's socket has data, then hands the
// session to readFrames. It runs on a goroutine of its own, started with
// the minimal stack and never growing it: that stack is all an idle session
// holds. (A parked reader would hold at least 4 KiB: the collector does not
// shrink a grown stack to the minimum again.)
func (h *Hub) awaitFrames(s *Session) {
	waitReadable(s.raw)
	// Data arrived: the client is alive, whatever the frame (a pong is
	// read by the next reader, which may start a little later).
	s.touch()
	go h.readFrames(s)
}

// readFrames reads and handles the session's frames while they come, and
// ends the session when its connection ends. When no frame is left in the
// read buffer it hands the session back to a fresh awaitFrames goroutine
// and returns.
func (h *Hub) readFrames(s *Session) {
	for {
		typ, buf, err := s.readFrame()
		if err != nil {
			s.readFailed(err)
			h.endSession(s)
			h.conns.Add(-1)
			return
		}
		s.frame(typ, buf.Bytes())
		if buf.Cap() <= maxPooledFrame {
			frameBuffers.Put(buf)
		}
		if shallowWait && s.raw != nil && s.br != nil && s.br.Buffered() == 0 {
			go h.awaitFrames(s)
			return
		}
	}
}

// frameBuffers holds read buffers between frames: handling a frame copies
// what it keeps (JSON decoding does), so the buffer is free once it returns.
var frameBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledFrame is the largest read buffer kept for reuse.
const maxPooledFrame = 64 << 10

// readFrame reads the next frame into a buffer from frameBuffers.
func (s *Session) readFrame() (int, *bytes.Buffer, error) {
	typ, r, err := s.conn.NextReader()
	if err != nil {
		return 0, nil, err
	}
	buf := frameBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		frameBuffers.Put(buf)
		return 0, nil, err
	}
	return typ, buf, nil
}

// readFailed logs why the session's connection ended.
//
//go:noinline
func (s *Session) readFailed(err error) {
	log := s.hub.log.With("session", s.id, "user", s.user)
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		log.Debug("session closed by client", "code", ce.Code)
	case errors.Is(err, websocket.ErrReadLimit):
		s.hub.metrics.closed(protocol.CloseTooLarge)
		log.Warn("frame too large", "code", protocol.CloseTooLarge)
	default:
		log.Debug("session connection ended", "err", err)
	}
}

// frame handles one client frame.
//
//go:noinline
func (s *Session) frame(typ int, data []byte) {
	s.touch()
	s.hub.metrics.frameIn(len(data))
	if typ != websocket.TextMessage {
		s.invalid(nil, protocol.Errorf(protocol.CodeBadRequest, "frames must be text frames holding JSON"))
		return
	}
	// Decode before the rate limit so that a refusal names the frame's
	// id; the decode is bounded by --max-frame.
	f, derr := protocol.Decode(data)
	if !s.allow(f.ID) {
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

// allow applies the session's rate limit to one frame.
func (s *Session) allow(id []byte) bool {
	if s.limiter.Allow() {
		s.refused = 0
		return true
	}
	s.refused++
	if s.refused > s.hub.cfg.Burst {
		s.close(closeRateLimited, "rate limited too long", true)
		return false
	}
	s.sendError(id, protocol.Errorf(protocol.CodeRateLimited, "more than %g frames per second; slow down", s.hub.cfg.Rate))
	return false
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
		s.close(closePolicy, "too many invalid frames", true)
	}
}

// armExpiry closes the session with 4003 when its token expires.
func (s *Session) armExpiry(exp time.Time) {
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	if exp.IsZero() {
		return
	}
	s.expiry = time.AfterFunc(time.Until(exp), func() {
		s.close(closeUnauthorized, "token expired", true)
	})
}

// waitClosed keeps reading until the client answers a close or the
// connection drops, so that the close frame is not lost under a reset.
func (s *Session) waitClosed() {
	_ = s.conn.SetReadDeadline(time.Now().Add(closeGrace + time.Second))
	for {
		if _, _, err := s.conn.NextReader(); err != nil {
			return
		}
	}
}

// endSession removes an ended session from its rooms and the hub and saves
// its state for hello.session.
func (h *Hub) endSession(s *Session) {
	if s.expiry != nil {
		s.expiry.Stop()
	}
	s.mu.Lock()
	s.closing, s.closeSent = true, true
	s.queue, s.queued = nil, 0
	rooms := make([]*room, 0, len(s.rooms))
	for _, sr := range s.rooms {
		rooms = append(rooms, sr.r)
	}
	s.mu.Unlock()
	_ = s.conn.Close()

	h.saveStates(s)
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.BrokerTimeout)
	defer cancel()
	for _, r := range rooms {
		h.removeMember(ctx, s, r)
	}
	h.removeSession(s)
	h.metrics.sessionClosed()
}

// removeMember takes s out of r and the room's presence.
func (h *Hub) removeMember(ctx context.Context, s *Session, r *room) {
	r.mu.Lock()
	delete(r.members, s)
	r.mu.Unlock()
	if err := h.broker.RemovePresence(ctx, r.name, s.id); err != nil && !errors.Is(err, broker.ErrClosed) {
		h.log.Warn("remove presence", "room", r.name, "session", s.id, "err", err)
	}
	h.release(r)
}

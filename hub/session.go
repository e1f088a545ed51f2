package hub

import (
	"bufio"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Close codes used by the hub (PROTOCOL.md).
const (
	closePolicy       = protocol.ClosePolicy
	closeRestarting   = protocol.CloseRestarting
	closeUnauthorized = protocol.CloseUnauthorized
	closeDisconnected = protocol.CloseDisconnected
	closeSlowConsumer = protocol.CloseSlowConsumer
	closeRateLimited  = protocol.CloseRateLimited
	closeGoingAway    = websocket.CloseGoingAway
)

// maxBatchBytes caps one batched WebSocket frame.
const maxBatchBytes = 64 << 10

// closeGrace is how long a closing session waits for the client's close
// frame before dropping the connection.
const closeGrace = 2 * time.Second

// Session is one WebSocket connection of an authenticated user.
type Session struct {
	hub  *Hub
	conn *websocket.Conn
	// raw is the socket for non-blocking writes; nil if it is not TCP.
	raw syscall.RawConn
	// br is conn's read buffer; nil if the hub could not supply it.
	br   *bufio.Reader
	id   string
	user string
	// flushSlice is when in each second flushStates saves the session.
	flushSlice uint8
	// batch and echo are fixed by hello.
	batch bool
	echo  bool

	// Owned by the reader goroutine.
	claims     auth.Claims
	limiter    *rate.Limiter
	badFrames  *rate.Limiter // nil until the first invalid frame
	refused    int           // consecutive rate-limited frames
	expiry     *time.Timer
	lastSeenNS atomic.Int64

	mu sync.Mutex
	// rooms the session is a member of, its inbox included. A slice: most
	// sessions are in a room or two, and a map costs hundreds of bytes.
	rooms []sessionRoom
	dirty bool
	// queue holds encoded frames for the writer; queued counts their bytes.
	queue  []outFrame
	spare  []outFrame
	queued int
	// writing is set while a flusher worker or the session's own writer
	// goroutine owns the socket's write side (nothing else writes to it).
	writing bool
	pingDue bool
	// pong is the payload of a pong owed to the client, if pongDue.
	pong    []byte
	pongDue bool
	// closing is set once; closeCode/closeReason are sent by the writer,
	// after the queue when flush is set.
	closing    bool
	closeFlush bool
	closeSent  bool
	// farewell, when set, is saved state then written right before the
	// close frame: a drained client that reconnects at once finds its
	// session state already saved.
	farewell    []byte
	closeCode   int
	closeReason string
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

// outFrame is one encoded server frame; msg is set for room messages so the
// writer can record what was sent.
type outFrame struct {
	data []byte
	msg  *broker.Message
	// recovered frames (missed messages sent by a join) do not count
	// against the queue bound: history bounds them, and a recovery larger
	// than the queue must not close the session it is for.
	recovered bool
}

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// User returns the session's user.
func (s *Session) User() string { return s.user }

// enqueue hands a frame to the writer. It never blocks: a queue over its
// bound closes the session with 4008 instead.
func (s *Session) enqueue(f outFrame) {
	if s.push(f) {
		s.hub.flusher.schedule(s)
	}
}

// push queues f and reports whether the caller must hand the session to
// the flusher (nothing was writing it).
func (s *Session) push(f outFrame) bool {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	size := len(f.data)
	switch {
	case f.recovered:
		size = 0
	case size == 0:
		size = markerBytes
	}
	if s.queued+size > s.hub.cfg.SendQueueBytes {
		// Drop what is queued: the session is over and will resume from
		// its last sent position.
		s.queue, s.queued = nil, 0
		s.startClosingLocked(closeSlowConsumer, "slow consumer", false)
		s.mu.Unlock()
		s.hub.metrics.overflow()
		s.hub.log.Warn("slow consumer closed", "session", s.id, "user", s.user, "code", closeSlowConsumer)
		return false
	}
	s.queue = append(s.queue, f)
	s.queued += size
	start := !s.writing
	s.writing = true
	s.mu.Unlock()
	return start
}

// markerBytes is what a skipped-message marker counts against the queue
// bound, so that markers cannot pile up without limit either.
const markerBytes = 32

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

// send encodes and queues a control frame (anything but a room message).
func (s *Session) send(v any) {
	s.enqueue(outFrame{data: protocol.Encode(v)})
}

// sendError queues an error frame.
func (s *Session) sendError(id json.RawMessage, e *protocol.Error) {
	s.hub.metrics.errorFrame(e.Code)
	s.send(&protocol.ErrorFrame{Type: protocol.TypeError, ID: id, Code: e.Code, Message: e.Message})
}

// kickLocked starts the session's own writer if nothing is writing: closing
// is its job, as it may wait. s.mu must be held.
func (s *Session) kickLocked() {
	if !s.writing {
		s.writing = true
		go s.writeLoop(nil)
	}
}

// ping asks for a heartbeat ping and reports whether the caller must hand
// the session to the flusher.
func (s *Session) ping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.pingDue = true
	start := !s.writing
	s.writing = true
	return start
}

// pingReceived answers a client's ping with a pong through the writers, so
// that nothing else writes to the socket. It runs on the reader goroutine.
func (s *Session) pingReceived(data string) error {
	s.touch()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.pong, s.pongDue = []byte(data), true
	start := !s.writing
	s.writing = true
	s.mu.Unlock()
	if start {
		s.hub.flusher.schedule(s)
	}
	return nil
}

// closeReceived answers the client's close frame with one of its own
// (unless it is the answer to ours). It runs on the reader goroutine, which
// ends the session next; nothing more is queued, and a writer that owns
// the socket is given a moment to finish the frame it is writing.
func (s *Session) closeReceived(code int, _ string) error {
	s.mu.Lock()
	if s.closeSent {
		s.mu.Unlock()
		return nil
	}
	s.closing, s.closeSent = true, true
	s.queue, s.queued = nil, 0
	s.mu.Unlock()
	for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		s.mu.Lock()
		if !s.writing {
			s.writing = true
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			return nil
		}
	}
	_ = s.writeBlocking(appendFrame(nil, opClose, websocket.FormatCloseMessage(code, "")), time.Second)
	return nil
}

// drain ends the session for a drain: after the queued frames, its state
// is saved, then farewell (server:reconnect) and close code 4001 are sent.
// It never blocks.
func (s *Session) drain(farewell []byte) {
	s.mu.Lock()
	if !s.closing {
		s.farewell = farewell
	}
	s.startClosingLocked(closeRestarting, "server restarting", true)
	s.mu.Unlock()
}

// close ends the session with code: after the queued frames if flush is
// set, at once otherwise. It never blocks.
func (s *Session) close(code int, reason string, flush bool) {
	s.mu.Lock()
	s.startClosingLocked(code, reason, flush)
	s.mu.Unlock()
}

func (s *Session) startClosingLocked(code int, reason string, flush bool) {
	if s.closing {
		return
	}
	s.closing, s.closeFlush = true, flush
	s.closeCode, s.closeReason = code, reason
	if !flush {
		s.queue, s.queued = nil, 0
	}
	s.kickLocked()
}

// pending is what a write left unwritten: the rest of its bytes and the
// frames they carry.
type pending struct {
	rest   []byte
	frames []outFrame
	wire   wireBatch // counts only
}

// takeLocked takes everything there is to write. s.mu must be held.
func (s *Session) takeLocked() (frames []outFrame, ping bool, pong []byte, pongDue bool) {
	frames = s.queue
	s.queue, s.spare = s.spare[:0], nil
	s.queued = 0
	ping, s.pingDue = s.pingDue, false
	pong, pongDue = s.pong, s.pongDue
	s.pong, s.pongDue = nil, false
	return frames, ping, pong, pongDue
}

// appendWire appends what takeLocked took as WebSocket frames.
func (s *Session) appendWire(w *wireBatch, frames []outFrame, ping bool, pong []byte, pongDue bool) {
	if pongDue {
		w.appendControl(opPong, pong)
	}
	if ping {
		w.appendControl(opPing, nil)
	}
	w.appendData(frames, s.batch)
}

// flush writes what is queued with one non-blocking write, on a flusher
// worker. It reports whether more was queued meanwhile, so the session
// needs flushing again. What the socket does not take, and closing, are
// left to the session's own writer goroutine.
func (s *Session) flush(w *wireBatch) (again bool) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		go s.writeLoop(nil)
		return false
	}
	frames, ping, pong, pongDue := s.takeLocked()
	if len(frames) == 0 && !ping && !pongDue {
		s.writing = false
		s.mu.Unlock()
		return false
	}
	s.mu.Unlock()

	w.reset()
	s.appendWire(w, frames, ping, pong, pongDue)
	n, err := 0, error(nil)
	if len(w.buf) > 0 {
		n, err = tryWrite(s.raw, w.buf)
	}
	if err != nil {
		s.abort()
		return false
	}
	if n < len(w.buf) {
		go s.writeLoop(&pending{
			rest:   append([]byte(nil), w.buf[n:]...),
			frames: frames,
			wire:   wireBatch{frames: w.frames, bytes: w.bytes},
		})
		return false
	}
	s.wrote(frames, w)

	s.mu.Lock()
	again = len(s.queue) > 0 || s.pingDue || s.pongDue || s.closing
	if !again {
		s.writing = false
	}
	s.mu.Unlock()
	return again
}

// writeLoop is the session's own writer, for writes that may wait: the
// rest of a write the socket did not take (p, if not nil), whatever is
// queued meanwhile, and closing. It exits when the queue is empty.
func (s *Session) writeLoop(p *pending) {
	timeout := s.hub.cfg.WriteTimeout
	if p != nil {
		if err := s.writeBlocking(p.rest, timeout); err != nil {
			s.abort()
			return
		}
		s.wrote(p.frames, &p.wire)
	}
	w := s.hub.flusher.getWire()
	defer s.hub.flusher.putWire(w)
	for {
		s.mu.Lock()
		frames, ping, pong, pongDue := s.takeLocked()
		sendClose := len(frames) == 0 && s.closing && !s.closeSent
		if sendClose {
			s.closeSent = true
		}
		if len(frames) == 0 && !ping && !pongDue && !sendClose {
			s.writing = false
			s.mu.Unlock()
			return
		}
		code, reason, farewell := s.closeCode, s.closeReason, s.farewell
		s.mu.Unlock()

		w.reset()
		s.appendWire(w, frames, ping, pong, pongDue)
		if len(w.buf) > 0 {
			if err := s.writeBlocking(w.buf, timeout); err != nil {
				s.abort()
				return
			}
		}
		s.wrote(frames, w)
		if sendClose {
			s.writeClose(w, code, reason, farewell)
			return
		}
	}
}

// writeClose ends the session's writing: the saved state and farewell
// first if set, then the close frame.
func (s *Session) writeClose(w *wireBatch, code int, reason string, farewell []byte) {
	if farewell != nil {
		s.hub.saveStates(s)
		w.reset()
		w.appendData([]outFrame{{data: farewell}}, false)
		if err := s.writeBlocking(w.buf, s.hub.cfg.WriteTimeout); err != nil {
			s.abort()
			return
		}
		s.hub.metrics.wroteFrames(w.frames, w.bytes)
	}
	w.reset()
	w.appendControl(opClose, websocket.FormatCloseMessage(code, reason))
	_ = s.writeBlocking(w.buf, time.Second)
	s.hub.metrics.closed(code)
	// The reader ends when the client answers; don't wait forever.
	time.AfterFunc(closeGrace, func() { _ = s.conn.Close() })
	s.mu.Lock()
	s.writing = false
	s.mu.Unlock()
}

// abort drops the connection after a failed write; the reader then ends
// the session.
func (s *Session) abort() {
	_ = s.conn.Close()
	s.mu.Lock()
	s.closing, s.closeSent = true, true
	s.queue, s.queued = nil, 0
	s.writing = false
	s.mu.Unlock()
}

// wrote counts a completed write and records what it sent.
func (s *Session) wrote(frames []outFrame, w *wireBatch) {
	s.hub.metrics.wroteFrames(w.frames, w.bytes)
	s.recordSent(frames)
}

// recordSent notes the position of the last message written per room.
func (s *Session) recordSent(frames []outFrame) {
	now := time.Now()
	for _, f := range frames {
		if f.msg != nil && len(f.data) > 0 {
			s.hub.metrics.written(f.msg.Time, now)
		}
	}
	s.mu.Lock()
	for i, f := range frames {
		m := f.msg
		if m == nil {
			continue
		}
		if i+1 < len(frames) && frames[i+1].msg != nil && frames[i+1].msg.Room == m.Room {
			continue // only a room's last message in this write counts
		}
		if j := s.roomLocked(m.Room); j >= 0 { // not if left meanwhile
			s.rooms[j].sent = m.Position()
			s.dirty = true
		}
	}
	clear(frames)
	if s.spare == nil {
		s.spare = frames[:0]
	}
	s.mu.Unlock()
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

func (s *Session) touch() { s.lastSeenNS.Store(time.Now().UnixNano()) }

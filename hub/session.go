package hub

import (
	"encoding/json"
	"sync"
	"sync/atomic"
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
	id   string
	user string
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
	// rooms the session is a member of, its inbox included.
	rooms map[string]*room
	// sent is, per room, the position of the last message written to the
	// socket: what hello.session resumes from.
	sent  map[string]broker.Position
	dirty bool
	// queue holds encoded frames for the writer; queued counts their bytes.
	queue   []outFrame
	spare   []outFrame
	queued  int
	writing bool
	pingDue bool
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
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
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
		return
	}
	s.queue = append(s.queue, f)
	s.queued += size
	s.kickLocked()
	s.mu.Unlock()
}

// markerBytes is what a skipped-message marker counts against the queue
// bound, so that markers cannot pile up without limit either.
const markerBytes = 32

// enqueueSkipped queues a marker for a message the session is not sent (its
// own publish): when the writer reaches it, the session's saved position
// moves past it, so hello.session does not replay the session's own
// messages.
func (s *Session) enqueueSkipped(m *broker.Message) {
	s.enqueue(outFrame{msg: m})
}

// enqueueMessage queues a room message frame shared with other sessions.
func (s *Session) enqueueMessage(frame []byte, m *broker.Message) {
	s.enqueue(outFrame{data: frame, msg: m})
}

// enqueueReset queues a reset frame and records the new position.
func (s *Session) enqueueReset(room string, pos broker.Position) {
	s.mu.Lock()
	if s.sent != nil {
		s.sent[room] = pos
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

// kickLocked starts the writer if it is not running. s.mu must be held.
func (s *Session) kickLocked() {
	if !s.writing {
		s.writing = true
		go s.writeLoop()
	}
}

// ping asks the writer to send a heartbeat ping.
func (s *Session) ping() {
	s.mu.Lock()
	if !s.closing {
		s.pingDue = true
		s.kickLocked()
	}
	s.mu.Unlock()
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

// writeLoop writes queued frames until the queue is empty, then exits.
func (s *Session) writeLoop() {
	for {
		s.mu.Lock()
		frames := s.queue
		s.queue, s.spare = s.spare[:0], nil
		s.queued = 0
		ping := s.pingDue
		s.pingDue = false
		sendClose := len(frames) == 0 && s.closing && !s.closeSent
		if sendClose {
			s.closeSent = true
		}
		if len(frames) == 0 && !ping && !sendClose {
			s.writing = false
			s.mu.Unlock()
			return
		}
		code, reason, farewell := s.closeCode, s.closeReason, s.farewell
		s.mu.Unlock()

		if ping {
			if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.hub.cfg.WriteTimeout)); err != nil {
				s.abort()
				return
			}
		}
		if len(frames) > 0 {
			if err := s.writeFrames(frames); err != nil {
				s.abort()
				return
			}
			s.recordSent(frames)
			clear(frames)
			s.mu.Lock()
			if s.spare == nil {
				s.spare = frames[:0]
			}
			s.mu.Unlock()
		}
		if sendClose {
			if farewell != nil {
				s.hub.saveStates(s)
				if err := s.writeFrames([]outFrame{{data: farewell}}); err != nil {
					s.abort()
					return
				}
			}
			msg := websocket.FormatCloseMessage(code, reason)
			_ = s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			s.hub.metrics.closed(code)
			// The reader ends when the client answers; don't wait forever.
			time.AfterFunc(closeGrace, func() { _ = s.conn.Close() })
			s.mu.Lock()
			s.writing = false
			s.mu.Unlock()
			return
		}
	}
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

// writeFrames writes frames, joined into as few WebSocket frames as batch
// mode allows.
func (s *Session) writeFrames(frames []outFrame) error {
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.hub.cfg.WriteTimeout)); err != nil {
		return err
	}
	if !s.batch {
		for _, f := range frames {
			if len(f.data) == 0 {
				continue // a marker
			}
			if err := s.conn.WriteMessage(websocket.TextMessage, f.data); err != nil {
				return err
			}
			s.hub.metrics.frameOut(len(f.data))
		}
		return nil
	}
	for len(frames) > 0 {
		// Skip markers so that a batch never starts or ends with one.
		for len(frames) > 0 && len(frames[0].data) == 0 {
			frames = frames[1:]
		}
		if len(frames) == 0 {
			return nil
		}
		w, err := s.conn.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		n := 0
		i := 0
		for ; i < len(frames); i++ {
			data := frames[i].data
			if len(data) == 0 {
				continue
			}
			if n > 0 && n+len(data)+1 > maxBatchBytes {
				break
			}
			if n > 0 {
				if _, err := w.Write(newline); err != nil {
					return err
				}
				n++
			}
			if _, err := w.Write(data); err != nil {
				return err
			}
			n += len(data)
		}
		if err := w.Close(); err != nil {
			return err
		}
		s.hub.metrics.frameOut(n)
		frames = frames[i:]
	}
	return nil
}

var newline = []byte{'\n'}

// recordSent notes the position of the last message written per room.
func (s *Session) recordSent(frames []outFrame) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range frames {
		if m := f.msg; m != nil {
			if len(f.data) > 0 {
				s.hub.metrics.written(m.Time, now)
			}
			if _, joined := s.rooms[m.Room]; joined {
				s.sent[m.Room] = m.Position()
				s.dirty = true
			}
		}
	}
}

// state returns the session's resumable state.
func (s *Session) state() broker.SessionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := broker.SessionState{ID: s.id, User: s.user, Rooms: make(map[string]broker.Position, len(s.sent))}
	for room, pos := range s.sent {
		if _, joined := s.rooms[room]; joined {
			st.Rooms[room] = pos
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

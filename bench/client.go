package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// writeTimeout bounds every frame a client writes.
const writeTimeout = 5 * time.Second

// adapter speaks one server's protocol for a conn. Its methods are called
// from the conn's goroutines; it keeps no per-connection state of its own.
type adapter interface {
	// handshake authenticates on a fresh connection and joins rooms
	// (inbox too when the protocol does not join it by itself), reading
	// the answers synchronously.
	handshake(ctx context.Context, c *conn, rooms []string) error
	// appendPublish appends a frame that publishes data to room with id.
	appendPublish(dst []byte, id uint64, room string, data []byte) []byte
	// control handles a line of a frame that holds no benchmark payload.
	control(c *conn, line []byte)
}

func newAdapter(t Target) adapter {
	if t == Centrifugo {
		return centrifugoAdapter{}
	}
	return switchboardAdapter{}
}

// conn is one client connection. After the handshake one goroutine reads
// it (readLoop); publishes are written by the worker's senders under wmu.
type conn struct {
	idx   int    // the connection's number, the source id of its publishes
	user  string // the user it authenticated as
	token string // its token, if any
	w     *worker
	proto adapter
	ws    *websocket.Conn

	wmu sync.Mutex

	// pubRoom is the room the connection publishes to (empty: none), and
	// receivers how many connections should receive each of its messages.
	pubRoom   string
	receivers int
	seq       int64 // next sequence number; only the pacer's goroutine uses it

	pmu     sync.Mutex
	pending map[uint64]int // publish id → step, until the answer
	nextID  atomic.Uint64

	// pong says the server expects answers to its application pings
	// (Centrifugo).
	pong bool

	// inbox asks the adapter to join the user's inbox itself (Centrifugo;
	// Switchboard joins it on hello).
	inbox bool

	seen map[int]*seenWindow // by source; only readLoop uses it
	done atomic.Bool
}

// dialer returns a WebSocket dialer that binds sockets to src when valid.
func dialer(src netip.Addr, timeout time.Duration) *websocket.Dialer {
	nd := &net.Dialer{Timeout: timeout}
	if src.IsValid() {
		nd.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	return &websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: timeout,
		ReadBufferSize:   2048,
		WriteBufferSize:  1024,
		TLSClientConfig:  loopbackTLS(),
	}
}

// writeFrame writes one text frame.
func (c *conn) writeFrame(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// pingAnswerTimeout bounds the answer to a WebSocket ping (a variable for
// tests).
var pingAnswerTimeout = writeTimeout

// errPongLate ends a read loop whose answer to a WebSocket ping could not be
// written in time. A pong to a loopback server does not wait for the socket,
// so it means this process fell that far behind (or another write of the
// connection held it up).
var errPongLate = errors.New("could not answer a ping in time")

// answerPing is the connection's ping handler. gorilla's default gives the
// pong one second and, past it, ends the read with a bare "i/o timeout" that
// reads like the server's doing; a generator falling behind under its own
// load should neither give up that soon nor blur the cause.
func (c *conn) answerPing(data string) error {
	err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(pingAnswerTimeout))
	var ne net.Error
	switch {
	case err == nil || errors.Is(err, websocket.ErrCloseSent):
		return nil
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w (%v): %w", errPongLate, pingAnswerTimeout, err)
	default:
		return err
	}
}

// readFrame reads one whole frame before deadline, for handshakes.
func (c *conn) readFrame(deadline time.Time) ([]byte, error) {
	_ = c.ws.SetReadDeadline(deadline)
	_, b, err := c.ws.ReadMessage()
	return b, err
}

// lines calls fn for each non-empty newline-separated line of b.
func lines(b []byte, fn func([]byte)) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			fn(line)
		}
	}
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readLoop reads frames until the connection ends, counting benchmark
// messages and handing everything else to the adapter. How much work it
// does per frame and per message is the worker's Receiver mode.
func (c *conn) readLoop() {
	var err error
	defer func() { c.w.connEnded(c, err) }()
	_ = c.ws.SetReadDeadline(time.Time{})
	switch c.w.setup.Receiver {
	case ReceiveScan, ReceiveDecode:
		decode := c.w.setup.Receiver == ReceiveDecode
		for {
			var frame []byte
			if _, frame, err = c.ws.ReadMessage(); err != nil {
				return
			}
			now := time.Now().UnixNano()
			if decode {
				c.decodeFrame(frame, now)
			} else {
				c.handleFrame(frame, now)
			}
		}
	default:
		for {
			var r io.Reader
			_, r, err = c.ws.NextReader()
			if err != nil {
				return
			}
			bp := framePool.Get().(*[]byte)
			buf := bytes.NewBuffer((*bp)[:0])
			_, err = buf.ReadFrom(r)
			if err != nil {
				framePool.Put(bp)
				return
			}
			frame := buf.Bytes()
			now := time.Now().UnixNano()
			c.handleFrame(frame, now)
			if cap(frame) <= 1<<20 {
				*bp = frame[:0]
				framePool.Put(bp)
			}
		}
	}
}

// handleFrame counts the benchmark messages of a frame and passes its other
// lines to the adapter.
func (c *conn) handleFrame(frame []byte, now int64) {
	if !bytes.Contains(frame, payloadMark) {
		lines(frame, func(line []byte) { c.proto.control(c, line) })
		return
	}
	var counted int64
	lines(frame, func(line []byte) {
		s, _, ok := nextSample(line)
		if !ok {
			c.proto.control(c, line)
			return
		}
		if c.count(s, now) {
			counted++
		}
	})
	if counted > 0 {
		c.w.received.Add(counted)
	}
}

// decodeFrame is handleFrame for the decode receiver: every object of the
// frame is decoded into generic JSON values, as a browser's JSON.parse
// does, and the payload is read from the decoded message's data.
func (c *conn) decodeFrame(frame []byte, now int64) {
	var counted int64
	lines(frame, func(line []byte) {
		var v map[string]any
		if json.Unmarshal(line, &v) != nil {
			c.proto.control(c, line)
			return
		}
		data, _ := messageData(v).(string)
		s, ok := sampleOf(data)
		if !ok {
			c.proto.control(c, line)
			return
		}
		if c.count(s, now) {
			counted++
		}
	})
	if counted > 0 {
		c.w.received.Add(counted)
	}
}

// messageData returns the data of a decoded message object: "data" of a
// Switchboard message, "push.pub.data" of a Centrifugo publication; nil
// for anything else.
func messageData(v map[string]any) any {
	if t, _ := v["type"].(string); t == "message" {
		return v["data"]
	}
	if push, ok := v["push"].(map[string]any); ok {
		if pub, ok := push["pub"].(map[string]any); ok {
			return pub["data"]
		}
	}
	return nil
}

// count records one received message and reports whether it was a new
// delivery.
func (c *conn) count(s sample, now int64) bool {
	st := c.w.step(s.step)
	if st == nil {
		c.w.stray.Add(1)
		return false
	}
	if s.source == c.idx {
		st.self.Add(1) // Centrifugo delivers a client's own publications
		return false
	}
	if c.seen == nil {
		c.seen = make(map[int]*seenWindow, 1)
	}
	win := c.seen[s.source]
	if win == nil {
		win = &seenWindow{}
		c.seen[s.source] = win
	}
	if win.add(s.seq) {
		st.dups.Add(1)
		return false
	}
	st.received.Add(1)
	st.lat.record(c.idx, (now-s.sent)/1000)
	return true
}

// publish writes one benchmark message to the connection's room.
func (c *conn) publish(step int, seq int64, size int) error {
	// Ids fit Centrifugo's uint32 and stay above the handshake's.
	id := uint64(uint32(c.nextID.Add(1) + 1<<20))
	c.pmu.Lock()
	if c.pending == nil {
		c.pending = make(map[uint64]int)
	}
	c.pending[id] = step
	c.pmu.Unlock()
	bp := framePool.Get().(*[]byte)
	data := appendPayload((*bp)[:0], step, seq, time.Now().UnixNano(), c.idx, size)
	frame := c.proto.appendPublish(data[len(data):], id, c.pubRoom, data)
	err := c.writeFrame(frame)
	*bp = data[:0]
	framePool.Put(bp)
	if err != nil {
		c.answered(id, false)
	}
	return err
}

// answered settles a publish: acknowledged (the message is published and
// expected at every receiver) or refused.
func (c *conn) answered(id uint64, ok bool) {
	c.pmu.Lock()
	step, found := c.pending[id]
	delete(c.pending, id)
	c.pmu.Unlock()
	if !found {
		return
	}
	st := c.w.step(step)
	if st == nil {
		return
	}
	if ok {
		st.acked.Add(1)
		st.expected.Add(int64(c.receivers))
		c.w.acked.Add(1)
	} else {
		st.pubErrors.Add(1)
		c.w.errors.Add(1)
	}
}

// close ends the connection with a normal close frame.
func (c *conn) close() {
	if c.done.Swap(true) {
		return
	}
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	_ = c.ws.Close()
}

// errClosed is a connection closed by the server during a handshake.
var errClosed = errors.New("closed by the server")

// closeReason describes err when it is a WebSocket close.
func closeReason(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("%w: code %d %q", errClosed, ce.Code, ce.Text)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errClosed
	}
	return err
}

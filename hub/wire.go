package hub

import (
	"encoding/binary"
	"time"

	"github.com/gorilla/websocket"
)

// The hub writes its WebSocket frames itself rather than through
// websocket.Conn, which offers only blocking writes: a server frame is a
// header and an unmasked payload (RFC 6455, section 5.2), and owning the
// bytes lets the flusher try a non-blocking write from a shared goroutine
// and hand only the rest to a goroutine of the session's own. The
// websocket.Conn still does the handshake and all reading.

// WebSocket opcodes the hub writes.
const (
	opText  = websocket.TextMessage
	opClose = websocket.CloseMessage
	opPing  = websocket.PingMessage
	opPong  = websocket.PongMessage
)

// appendFrame appends one final (unfragmented) server frame with opcode op
// and payload p.
func appendFrame(b []byte, op int, p []byte) []byte {
	b = appendHeader(b, op, len(p))
	return append(b, p...)
}

// appendHeader appends the header of a final server frame with opcode op
// and a payload of n bytes.
func appendHeader(b []byte, op int, n int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// wireBatch is what one write carries: the frames' bytes, and what they
// count for the metrics.
type wireBatch struct {
	buf    []byte
	frames int
	bytes  int
}

// appendData appends frames as WebSocket text frames: one frame each, or in
// batch mode joined by newlines into frames of at most maxBatchBytes.
// Markers (frames without data) write nothing.
func (w *wireBatch) appendData(frames []outFrame, batch bool) {
	if !batch {
		for _, f := range frames {
			if len(f.data) > 0 {
				w.buf = appendFrame(w.buf, opText, f.data)
				w.count(len(f.data))
			}
		}
		return
	}
	for len(frames) > 0 {
		// Measure the next group, then write its header and its frames.
		n, end := 0, 0
		for ; end < len(frames); end++ {
			size := len(frames[end].data)
			if size == 0 {
				continue
			}
			if n > 0 && n+1+size > maxBatchBytes {
				break
			}
			if n > 0 {
				n++
			}
			n += size
		}
		if n > 0 {
			w.buf = appendHeader(w.buf, opText, n)
			first := true
			for _, f := range frames[:end] {
				if len(f.data) == 0 {
					continue
				}
				if !first {
					w.buf = append(w.buf, '\n')
				}
				w.buf = append(w.buf, f.data...)
				first = false
			}
			w.count(n)
		}
		frames = frames[end:]
	}
}

// appendControl appends a control frame (ping, pong, close).
func (w *wireBatch) appendControl(op int, p []byte) {
	w.buf = appendFrame(w.buf, op, p)
	w.count(len(p))
}

func (w *wireBatch) count(n int) {
	w.frames++
	w.bytes += n
}

func (w *wireBatch) reset() {
	w.buf, w.frames, w.bytes = w.buf[:0], 0, 0
}

// maxPooledWire is the largest buffer the pool keeps.
const maxPooledWire = 256 << 10

// writeBlocking writes b to the session's connection, waiting at most the
// hub's write timeout.
func (s *Session) writeBlocking(b []byte, timeout time.Duration) error {
	nc := s.conn.NetConn()
	if err := nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	_, err := nc.Write(b)
	return err
}

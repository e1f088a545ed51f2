package transport

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// reader is the read side of a Conn: an incremental RFC 6455 frame parser
// fed with whatever bytes the socket had. It holds no buffer while the
// connection is idle, and only what a peer actually sent of an unfinished
// frame otherwise. Only the reading goroutine touches it.
type reader struct {
	// The byte-sized fields come first, together, so that the struct has
	// no padding: every connection has one.

	// hdr holds the first bytes of a frame header split across reads.
	hdr  [maxHeaderBytes]byte
	hdrN uint8

	// The frame being read, once its header is complete.
	inFrame bool
	fin     bool
	op      byte
	key     [4]byte
	keyPos  uint8 // 0-3

	// msgOp is the opcode of a fragmented data message in progress, or 0.
	msgOp byte
	// limited is set when the message was over the rate limit.
	limited bool
	// greeted is set once the first message began: that one (the
	// protocol's hello) is not charged to the rate limit.
	greeted bool
	// broken is set after a protocol error: the rest is discarded.
	broken bool
	// first is what a TLS reader waits with (see readTLS).
	first [1]byte

	remain uint64 // of the frame being read
	// frags counts the frames of the message so far.
	frags int
	// refused counts frames over the rate limit in a row.
	refused int
	// msg collects a data message that did not arrive in one piece.
	msg []byte
	// ctrl collects a control frame split across reads.
	ctrl []byte
}

// readBufferBytes is the size of the pooled buffers reads go into.
const readBufferBytes = 8 << 10

// readBuffer is where a connection's reads go, with the call that makes a
// non-blocking read without an allocation.
type readBuffer struct {
	buf  []byte
	call *rawCall
}

// readBuffers holds read buffers between reads: an idle connection holds
// none. readBuffersOut counts those taken and not given back (the tests
// check that idle connections hold none).
var (
	readBuffers = sync.Pool{New: func() any {
		return &readBuffer{buf: make([]byte, readBufferBytes), call: newRawRead()}
	}}
	readBuffersOut atomic.Int64
)

func getReadBuffer() *readBuffer {
	readBuffersOut.Add(1)
	return readBuffers.Get().(*readBuffer)
}

func putReadBuffer(rb *readBuffer) {
	readBuffersOut.Add(-1)
	readBuffers.Put(rb)
}

// maxPooledMessage is the largest message buffer kept for reuse.
const maxPooledMessage = 64 << 10

var messageBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getMessageBuffer() []byte { return (*messageBuffers.Get().(*[]byte))[:0] }

func putMessageBuffer(b []byte) {
	if cap(b) <= maxPooledMessage {
		messageBuffers.Put(&b)
	}
}

// feed parses b, a chunk the socket had, handling every complete frame.
// b is the connection's read buffer: complete frames in it are unmasked in
// place and handed over without a copy.
func (c *Conn) feed(b []byte) {
	r := &c.r
	for len(b) > 0 && !r.broken {
		if !r.inFrame {
			n, ok := c.readHeader(b)
			b = b[n:]
			if !ok {
				return
			}
			continue
		}
		n := len(b)
		if uint64(n) > r.remain {
			n = int(r.remain)
		}
		c.payload(b[:n])
		b = b[n:]
	}
}

// readHeader takes header bytes from b; it returns how many it used and
// whether the header is complete (then c.r describes the frame).
func (c *Conn) readHeader(b []byte) (int, bool) {
	r := &c.r
	var h []byte
	used := 0
	if r.hdrN == 0 && len(b) >= 2 && len(b) >= headerLen(b) {
		// The common case: the whole header is in b.
		h = b[:headerLen(b)]
		used = len(h)
	} else {
		if r.hdrN == 0 {
			c.markStarted()
		}
		for used < len(b) {
			r.hdr[r.hdrN] = b[used]
			r.hdrN++
			used++
			if r.hdrN >= 2 && int(r.hdrN) == headerLen(r.hdr[:r.hdrN]) {
				break
			}
		}
		if r.hdrN < 2 || int(r.hdrN) < headerLen(r.hdr[:r.hdrN]) {
			if r.hdrN >= 2 {
				// Check what can be checked early: a peer that announces a
				// bad frame is failed before it sends the rest.
				if code, reason := c.checkStart(r.hdr[0], r.hdr[1]); code != 0 {
					c.fail(code, reason)
				}
			}
			return used, false
		}
		h = r.hdr[:r.hdrN]
		r.hdrN = 0
	}
	if code, reason := c.startFrame(h); code != 0 {
		c.fail(code, reason)
		return used, false
	}
	if r.remain == 0 {
		c.endFrame(nil)
	}
	return used, true
}

// headerLen returns the length of the header whose first two bytes are h.
func headerLen(h []byte) int {
	n := 2 + 4 // masking key; an unmasked frame is refused anyway
	switch h[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	return n
}

// checkStart checks a frame's first two bytes (section 5.2). It returns a
// close code and reason when the frame is not acceptable.
func (c *Conn) checkStart(b0, b1 byte) (int, string) {
	r := &c.r
	fin, op := b0&0x80 != 0, b0&0x0f
	if b0&0x70 != 0 {
		return CloseProtocolError, "reserved bits set without an extension"
	}
	if b1&0x80 == 0 {
		return CloseProtocolError, "client frames must be masked"
	}
	n := b1 & 0x7f
	switch op {
	case opText, opBinary:
		if r.msgOp != 0 {
			return CloseProtocolError, "a new message began before the last one ended"
		}
	case opContinuation:
		if r.msgOp == 0 {
			return CloseProtocolError, "continuation frame without a message"
		}
	case opClose, opPing, opPong:
		if !fin {
			return CloseProtocolError, "fragmented control frame"
		}
		if n > maxControlPayload {
			return CloseProtocolError, "control frame payload over 125 bytes"
		}
	default:
		return CloseProtocolError, "unknown opcode"
	}
	return 0, ""
}

// startFrame checks a complete header h and sets up the frame it starts.
func (c *Conn) startFrame(h []byte) (int, string) {
	r := &c.r
	if code, reason := c.checkStart(h[0], h[1]); code != 0 {
		return code, reason
	}
	var n uint64
	i := 2
	switch l := h[1] & 0x7f; l {
	case 126:
		n = uint64(binary.BigEndian.Uint16(h[2:]))
		i += 2
		if n < 126 {
			return CloseProtocolError, "length not in its shortest form"
		}
	case 127:
		n = binary.BigEndian.Uint64(h[2:])
		i += 8
		if n>>63 != 0 {
			return CloseProtocolError, "64-bit length with its most significant bit set"
		}
		if n <= 0xffff {
			return CloseProtocolError, "length not in its shortest form"
		}
	default:
		n = uint64(l)
	}
	r.fin, r.op = h[0]&0x80 != 0, h[0]&0x0f
	if r.op < opClose && n+uint64(len(r.msg)) > uint64(c.srv.cfg.MaxMessageBytes) {
		return CloseTooLarge, "message larger than the limit"
	}
	copy(r.key[:], h[i:i+4])
	r.keyPos, r.remain, r.inFrame = 0, n, true
	c.countFrame(len(h) + int(n))
	switch {
	case r.op == opContinuation:
		// Fragments are not charged to the rate limit (a client library
		// may well cut a large message in its write buffer's size), but a
		// message has only so many: empty fragments cannot go on for
		// ever.
		r.frags++
		if r.frags > c.srv.maxFragments() {
			return ClosePolicy, "message cut into too many fragments"
		}
	case r.op < opClose && !r.greeted:
		r.greeted = true
	case !c.allowFrame():
		if r.op < opClose {
			r.limited = true
		}
		if r.op == opPing {
			r.op = opPong // not answered: handled like an unsolicited pong
		}
	}
	if r.op < opClose && r.msgOp == 0 {
		r.msgOp, r.frags = r.op, 1
	}
	if !r.fin {
		c.markStarted() // a fragmented message
	}
	return 0, ""
}

// payload takes the next part (at most what remains) of the frame's
// payload.
func (c *Conn) payload(p []byte) {
	r := &c.r
	r.keyPos = uint8(maskBytes(r.key, int(r.keyPos), p))
	r.remain -= uint64(len(p))
	whole := r.remain == 0
	if !whole {
		c.markStarted()
	}
	switch {
	case r.op >= opClose:
		if whole && r.ctrl == nil {
			c.endFrame(p) // the whole control frame was in one read
			return
		}
		r.ctrl = append(r.ctrl, p...)
		if whole {
			ctrl := r.ctrl
			r.ctrl = nil
			c.endFrame(ctrl)
		}
	case whole && r.fin && r.msg == nil:
		c.endFrame(p) // an unfragmented message in one read: no copy
	default:
		if r.msg == nil {
			r.msg = getMessageBuffer()
		}
		r.msg = append(r.msg, p...)
		if whole {
			c.endFrame(nil)
		}
	}
}

// endFrame handles a complete frame. p is a control frame's payload, or an
// unfragmented message's when it came in one read; otherwise the message
// is in r.msg.
func (c *Conn) endFrame(p []byte) {
	r := &c.r
	r.inFrame = false
	switch r.op {
	case opPing:
		c.queuePong(p)
		c.doneStarted()
		return
	case opPong:
		c.doneStarted()
		return
	case opClose:
		c.doneStarted()
		code, fail := parseClose(p)
		if fail != 0 {
			c.fail(fail, "invalid close frame")
			return
		}
		c.peerClose(code)
		return
	}
	if !r.fin {
		return // more fragments follow
	}
	data := p
	if data == nil {
		data = r.msg
	}
	text, limited := r.msgOp == opText, r.limited
	r.msgOp, r.limited = 0, false
	c.doneStarted()
	if text && !utf8.Valid(data) {
		c.fail(CloseInvalidData, "text message is not valid UTF-8")
	} else if c.open() {
		c.h.Message(data, text, limited)
	}
	if r.msg != nil {
		putMessageBuffer(r.msg)
		r.msg = nil
	}
}

// allowFrame charges one frame to the connection's rate limit: a data
// message or a control frame. A connection over the limit for more than
// Burst frames in a row is closed with 4029.
func (c *Conn) allowFrame() bool {
	if c.limiter == nil || c.limiter.Allow() {
		c.r.refused = 0
		return true
	}
	c.r.refused++
	if c.r.refused > c.srv.cfg.Burst {
		// What was queued (the answers to the refused frames) goes first.
		c.r.broken = true
		c.Close(CloseRateLimited, "rate limited too long")
	}
	return false
}

// markStarted records when an unfinished frame or message began, for
// Conn.Unfinished.
func (c *Conn) markStarted() {
	if c.started.Load() == 0 {
		c.started.Store(time.Now().UnixNano())
	}
}

// doneStarted clears the mark once nothing is unfinished.
func (c *Conn) doneStarted() {
	if c.r.msgOp == 0 && !c.r.inFrame && c.r.hdrN == 0 && c.started.Load() != 0 {
		c.started.Store(0)
	}
}

// releaseBuffers returns the reader's buffers when the connection ends.
func (r *reader) releaseBuffers() {
	if r.msg != nil {
		putMessageBuffer(r.msg)
		r.msg = nil
	}
	r.ctrl = nil
}

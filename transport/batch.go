package transport

import (
	"net"
	"sync"
	"syscall"
)

// IOUring reports whether flusher workers write through io_uring: nil if
// they do (unless Config.NoIOUring), otherwise why they write each socket
// with write(2).
func IOUring() error { return uringError() }

// sendBatch gathers the direct writes of a chunk of detached connections
// and sends them with one io_uring submission (see uring_linux.go).
type sendBatch struct {
	ring  *sendRing
	wires *sync.Pool
	n     int
	conns [flushChunk]*Conn
	outs  [flushChunk]outgoing
	wire  [flushChunk]*wire
	fds   [flushChunk]int32
	bufs  [flushChunk][]byte
	res   [flushChunk]int32
}

// newSendBatch returns a batch with a ring of its own, or nil when there
// is no ring to be had.
func newSendBatch(wires *sync.Pool) *sendBatch {
	r := getRing()
	if r == nil {
		return nil
	}
	return &sendBatch{ring: r, wires: wires}
}

// takes reports whether c's write can go in the batch: the batch has a
// ring, and c writes its descriptor itself.
func (b *sendBatch) takes(c *Conn) bool { return b != nil && b.ring != nil && c.nc == nil }

// add takes what is queued on c for the next send; f is for a connection
// that has more to write at once (an empty write).
func (b *sendBatch) add(f *flusher, c *Conn) {
	w := b.wire[b.n]
	if w == nil {
		w = b.wires.Get().(*wire)
		b.wire[b.n] = w
	}
	o, ok := c.flushPrepare(w)
	switch {
	case !ok:
		return
	case len(w.buf) == 0:
		if c.flushFinish(w, o, 0, nil) {
			f.schedule(c)
		}
		return
	case !c.fdAcquire():
		c.flushFinish(w, o, 0, net.ErrClosed)
		return
	}
	b.conns[b.n], b.outs[b.n], b.fds[b.n], b.bufs[b.n] = c, o, c.fd, w.buf
	b.n++
}

// send sends what add took, all in one submission, and finishes each
// connection's write as flush does.
func (b *sendBatch) send(f *flusher) {
	if b.n == 0 {
		return
	}
	n := b.n
	_, err := b.ring.send(b.fds[:n], b.bufs[:n], b.res[:n], true)
	b.conns[0].srv.metrics.submitted()
	var kept [flushChunk]*wire
	if err != nil {
		// The sends whose outcome is unknown fail their connections
		// below (their clients resume); the next chunks, and every
		// worker from now on, write socket by socket.
		copy(kept[:], b.wire[:n])
		clear(b.wire[:n])
		putRing(b.ring, true, kept[:n]...)
		b.ring = nil
	}
	for i := range n {
		c := b.conns[i]
		c.fdRelease()
		written, werr := 0, error(nil)
		switch r := b.res[i]; {
		case r >= 0:
			written = int(r)
		case r == -int32(syscall.EAGAIN):
		default:
			werr = syscall.Errno(-r)
		}
		w := b.wire[i]
		if w == nil {
			w = kept[i]
		}
		if c.flushFinish(w, b.outs[i], written, werr) {
			f.schedule(c)
		}
		b.conns[i], b.outs[i], b.bufs[i] = nil, outgoing{}, nil
	}
	b.n = 0
}

// release gives back the ring and the write buffers.
func (b *sendBatch) release() {
	if b == nil {
		return
	}
	if b.ring != nil {
		putRing(b.ring, false)
		b.ring = nil
	}
	for i, w := range b.wire {
		if w != nil {
			putWire(b.wires, w)
			b.wire[i] = nil
		}
	}
}

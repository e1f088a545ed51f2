package transport

import (
	"net"
	"os"
	"time"
)

// maxBatchBytes caps one batched WebSocket frame.
const maxBatchBytes = 64 << 10

// closeWriteTimeout bounds the write of a close frame: a peer that takes
// nothing gets its socket closed instead.
const closeWriteTimeout = time.Second

// wire is what one write carries: the frames' bytes, and what they count
// for the metrics.
type wire struct {
	buf    []byte
	frames int
	bytes  int
	// call makes the direct write without an allocation.
	call *rawCall
}

// appendData appends frames as WebSocket text frames: one frame each, or in
// batch mode joined by newlines into frames of at most maxBatchBytes.
// Markers write nothing.
func (w *wire) appendData(frames []Frame, batch bool) {
	if !batch {
		for _, f := range frames {
			if len(f.Data) > 0 {
				w.buf = appendFrame(w.buf, opText, f.Data)
				w.count(len(f.Data))
			}
		}
		return
	}
	for len(frames) > 0 {
		// Measure the next group, then write its header and its frames.
		n, end := 0, 0
		for ; end < len(frames); end++ {
			size := len(frames[end].Data)
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
				if len(f.Data) == 0 {
					continue
				}
				if !first {
					w.buf = append(w.buf, '\n')
				}
				w.buf = append(w.buf, f.Data...)
				first = false
			}
			w.count(n)
		}
		frames = frames[end:]
	}
}

// appendControl appends a control frame (ping, pong, close).
func (w *wire) appendControl(op byte, p []byte) {
	w.buf = appendFrame(w.buf, op, p)
	w.count(len(p))
}

func (w *wire) count(n int) {
	w.frames++
	w.bytes += n
}

func (w *wire) reset() {
	w.buf, w.frames, w.bytes = w.buf[:0], 0, 0
}

// outgoing is what a writer takes from the connection in one go.
type outgoing struct {
	frames  []Frame
	bytes   int // the frames' size, as counted in Conn.queued
	batch   bool
	ping    bool
	pong    []byte
	pongDue bool
}

func (o *outgoing) empty() bool { return len(o.frames) == 0 && !o.ping && !o.pongDue }

// takeLocked takes everything there is to write. With hold, the bytes
// taken stay counted until the writer releases them
// (releaseWrittenLocked); otherwise they are released now. c.mu must be
// held.
func (c *Conn) takeLocked(hold bool) outgoing {
	o := outgoing{frames: c.queue, bytes: c.queued - c.inflight, batch: c.batch, ping: c.pingDue, pongDue: c.pongDue}
	if c.pongDue {
		o.pong = append([]byte(nil), c.pong...)
	}
	c.queue, c.spare = c.spare[:0], nil
	c.pingDue, c.pongDue = false, false
	if hold {
		c.inflight = c.queued
	} else {
		c.releaseLocked(o.bytes)
	}
	return o
}

// holdLocked counts again n bytes a writer took without holding them:
// the rest of a direct write the socket did not take. c.mu must be held.
func (c *Conn) holdLocked(n int) {
	if n > 0 {
		c.countLocked(n)
		c.inflight += n
	}
}

// appendTo appends what o holds as WebSocket frames: control frames first.
func (o *outgoing) appendTo(w *wire) {
	if o.pongDue {
		w.appendControl(opPong, o.pong)
	}
	if o.ping {
		w.appendControl(opPing, nil)
	}
	w.appendData(o.frames, o.batch)
}

// flush writes what is queued with one non-blocking write, on a flusher
// worker. The bytes it takes are released at once, as a write that the
// socket takes whole is the rule: a writer the scheduler set aside for a
// moment does not make a client that reads a slow consumer. Only when the
// socket refuses part of the write (the client is behind) are they
// counted again, until written. It reports whether the connection needs
// flushing again (more was queued meanwhile). What the socket does not
// take, and closing, are left to the connection's own writer goroutine.
// A sendBatch does the same for many connections, with flushPrepare and
// flushFinish around one submission.
func (c *Conn) flush(w *wire) (again bool) {
	o, ok := c.flushPrepare(w)
	if !ok {
		return false
	}
	n, err := 0, error(nil)
	if len(w.buf) > 0 {
		n, err = c.tryWrite(w)
	}
	return c.flushFinish(w, o, n, err)
}

// flushPrepare takes what is queued and puts its frames in w. It reports
// false when there is nothing to write (the write side is released) or the
// connection is closing (its own writer takes over).
func (c *Conn) flushPrepare(w *wire) (o outgoing, ok bool) {
	c.mu.Lock()
	switch c.state {
	case stateClosing:
		c.mu.Unlock()
		go c.writeLoop(nil)
		return o, false
	case stateClosed:
		finish := c.releaseWriterLocked()
		c.mu.Unlock()
		c.finishIf(finish)
		return o, false
	}
	o = c.takeLocked(false)
	if o.empty() {
		c.writer = writerNone
		c.mu.Unlock()
		return o, false
	}
	c.mu.Unlock()
	w.reset()
	o.appendTo(w)
	return o, true
}

// flushFinish completes a flush whose write of w took n bytes or failed
// with err, and reports whether the connection needs flushing again.
func (c *Conn) flushFinish(w *wire, o outgoing, n int, err error) (again bool) {
	if err != nil {
		c.writeFailed(err)
		return false
	}
	if n < len(w.buf) {
		c.mu.Lock()
		c.holdLocked(o.bytes)
		c.mu.Unlock()
		go c.writeLoop(&pending{
			rest:   append([]byte(nil), w.buf[n:]...),
			frames: o.frames,
			bytes:  o.bytes,
			wire:   wire{frames: w.frames, bytes: w.bytes},
		})
		return false
	}
	c.srv.metrics.write(pathDirect)
	c.wrote(o.frames, w)

	c.mu.Lock()
	again = len(c.queue) > 0 || c.pingDue || c.pongDue || c.state != stateOpen
	if !again {
		c.writer = writerNone
	}
	c.mu.Unlock()
	return again
}

// pending is what a direct write left unwritten: the rest of its bytes
// and the frames they carry.
type pending struct {
	rest   []byte
	frames []Frame
	bytes  int  // the frames' share of Conn.queued
	wire   wire // counts only
}

// writeLoop is the connection's own writer, for writes that may wait: the
// rest of a direct write the socket did not take (p, if not nil), whatever
// is queued meanwhile, and closing. On a plain socket it runs only when a
// write had to wait, so what it takes stays counted until written; a TLS
// connection, which has no direct writes, releases at take as flush does. It returns when the queue is empty, or
// after the close frame.
func (c *Conn) writeLoop(p *pending) {
	timeout := c.srv.cfg.WriteTimeout
	hold := c.direct() // see the doc comment
	if p != nil {
		if err := c.writeBlocking(p.rest, timeout); err != nil {
			c.writeFailed(err)
			return
		}
		c.wrote(p.frames, &p.wire)
	}
	written := 0
	if p != nil {
		written = p.bytes
	}
	w := c.srv.getWire()
	defer c.srv.putWire(w)
	for {
		c.mu.Lock()
		c.releaseWrittenLocked(written)
		written = 0
		if c.state == stateClosed {
			finish := c.releaseWriterLocked()
			c.mu.Unlock()
			c.finishIf(finish)
			return
		}
		o := c.takeLocked(hold)
		if o.empty() {
			if c.state == stateClosing {
				// The writer keeps the write side for good: nothing is
				// written after the close frame.
				code, reason, last := int(c.closeCode), c.closeReason, c.closeLast
				c.closeLast = nil
				// It reports nothing more, so an end need not wait
				// for it (and none waits yet: the state is not closed).
				c.writer = writerClosing
				c.mu.Unlock()
				c.writeClose(w, code, reason, last)
				return
			}
			c.writer = writerNone
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		w.reset()
		o.appendTo(w)
		if err := c.writeBlocking(w.buf, timeout); err != nil {
			c.writeFailed(err)
			return
		}
		c.wrote(o.frames, w)
		if hold {
			written = o.bytes
		}
	}
}

// writeClose writes the last frame (if last gives one) and the close
// frame, then closes the socket when the peer answers, or after the grace.
func (c *Conn) writeClose(w *wire, code int, reason string, last func() []byte) {
	if last != nil {
		if b := last(); len(b) > 0 {
			w.reset()
			w.appendData([]Frame{{Data: b}}, false)
			if err := c.writeBlocking(w.buf, c.srv.cfg.WriteTimeout); err != nil {
				c.writeFailed(err)
				return
			}
			c.srv.metrics.wrote(w.frames, w.bytes)
		}
	}
	w.reset()
	w.appendControl(opClose, closePayload(code, reason))
	if err := c.writeBlocking(w.buf, closeWriteTimeout); err != nil {
		c.closeNet()
		return
	}
	c.srv.metrics.wrote(w.frames, w.bytes)
	// Nothing follows the close frame: the peer reads an end right after
	// it, so that it closes even when it cannot answer (after a protocol
	// error its answer is not read anyway).
	if c.nc == nil {
		c.fdShutdownWrite()
	} else if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	c.mu.Lock()
	c.closeWritten = true
	if c.peerClosed || c.state == stateClosed {
		c.mu.Unlock()
		c.closeNet()
		return
	}
	c.grace = time.AfterFunc(c.srv.cfg.CloseGrace, c.closeNet)
	c.mu.Unlock()
}

// writeBlocking writes b, waiting at most timeout.
func (c *Conn) writeBlocking(b []byte, timeout time.Duration) error {
	if c.nc == nil {
		c.srv.metrics.write(pathBlocking)
		return c.writeDetached(b, timeout)
	}
	if err := c.nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	c.srv.metrics.write(pathBlocking)
	_, err := c.nc.Write(b)
	if c.raw != nil {
		// Direct writes go through the raw socket, which refuses every
		// write once a deadline has passed: clear it for them.
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	return err
}

// writeDetached writes b to a detached socket, waiting in writeWaits
// whenever the socket is full, for at most timeout in all. Running out of
// time is os.ErrDeadlineExceeded, as for a net.Conn.
func (c *Conn) writeDetached(b []byte, timeout time.Duration) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		n, err := c.fdWrite(b)
		if err != nil {
			return err
		}
		if b = b[n:]; len(b) == 0 {
			return nil
		}
		if n > 0 {
			continue // it may take more at once
		}
		ready, err := c.fdWaitWritable()
		if err != nil {
			return err
		}
		if timer == nil {
			timer = time.NewTimer(timeout)
		}
		select {
		case <-ready:
		case <-timer.C:
			c.fdCancelWait()
			return os.ErrDeadlineExceeded
		}
	}
}

// writeFailed drops a connection whose write failed. A write that timed
// out means the peer takes nothing: a slow consumer, counted as closed
// with 4008, though no close frame can follow a frame cut short.
func (c *Conn) writeFailed(err error) {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.mu.Lock()
		wasOpen := c.state == stateOpen
		if wasOpen {
			c.state = stateClosing
		}
		c.mu.Unlock()
		if wasOpen {
			c.srv.metrics.overflow(false)
			c.closed(CloseSlowConsumer)
		}
	}
	c.closeNet()
	c.mu.Lock()
	finish := c.releaseWriterLocked()
	// Nothing more can be written: what was taken or queued is gone.
	c.dropQueueLocked()
	c.releaseWrittenLocked(c.inflight)
	c.mu.Unlock()
	c.finishIf(finish)
}

// finishIf finishes the connection, if finish is set, on a goroutine of its
// own: the handler's Closed may block (it may save state to a broker), and
// the caller may be a flusher worker.
func (c *Conn) finishIf(finish bool) {
	if finish {
		go c.finish()
	}
}

// wrote counts a completed write and reports its frames.
func (c *Conn) wrote(frames []Frame, w *wire) {
	c.srv.metrics.wrote(w.frames, w.bytes)
	if len(frames) == 0 {
		return
	}
	c.h.Written(frames)
	clear(frames)
	c.mu.Lock()
	if c.spare == nil {
		c.spare = frames[:0]
	}
	c.mu.Unlock()
}

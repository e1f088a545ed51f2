package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Close codes of this server's protocol that the transport sends itself.
const (
	// CloseSlowConsumer: the send queue overflowed (PROTOCOL.md).
	CloseSlowConsumer = protocol.CloseSlowConsumer
	// CloseRateLimited: over the frame rate for too long (PROTOCOL.md).
	CloseRateLimited = protocol.CloseRateLimited
)

// Handler receives what a Conn reads and hears what it wrote. A Conn calls
// its Handler from its reading goroutine (Message, Closed) and from its
// writers (Written), and Closing from whichever goroutine closes it.
type Handler interface {
	// Message handles one complete data message: text (valid UTF-8) or
	// binary. data is valid only until Message returns. limited is set
	// when a frame of the message was over the rate limit. Messages are
	// handled one at a time, in the order they arrived; the connection
	// reads nothing more until Message returns, so it may block (a broker
	// call, SendWait). Message is not called once the connection stopped
	// being open.
	Message(data []byte, text, limited bool)
	// Written reports frames once they were written to the socket, in the
	// order they were sent. It must not block; frames is reused after it
	// returns.
	Written(frames []Frame)
	// Closing is called once, when the connection stops being open: closed
	// by either side, failed, or dropped. It must not block.
	Closing()
	// Closed is called once, last, after the socket was closed and the
	// writers reported their last frames: on the reading goroutine, or on
	// a goroutine of its own when a writer was still reporting.
	Closed()
}

// Frame is one encoded server message queued for a connection.
type Frame struct {
	// Data is the message's bytes, written as one text frame (or joined
	// with others in batch mode). A Frame without Data writes nothing: it
	// is a marker that comes back through Handler.Written in its place in
	// the order.
	Data []byte
	// Ref is handed back to Handler.Written with the frame.
	Ref any
}

// markerBytes is what a marker counts against the send queue, so that
// markers cannot pile up without bound either.
const markerBytes = 32

func (f *Frame) size() int {
	if len(f.Data) == 0 {
		return markerBytes
	}
	return len(f.Data)
}

// state is a connection's life: open, then closing (a close was decided:
// nothing more is queued or handled, the close frame is on its way), then
// closed (the socket is closed).
type state uint8

const (
	stateOpen state = iota
	stateClosing
	stateClosed
)

// Conn is one server-side WebSocket connection, the only owner of its
// socket: every byte written (messages, pongs, pings, close frames) goes
// through it, bounded by one send queue, and it alone reads. It is safe
// for concurrent use.
type Conn struct {
	srv *Server
	// nc is the connection, nil once detached (a plain TCP socket on
	// Linux, see detach): the Conn then owns the descriptor fd.
	nc net.Conn
	// raw is nc's socket for non-blocking reads and writes; nil when the
	// connection is detached, not plain TCP (TLS), or the platform has
	// none.
	raw     syscall.RawConn
	h       Handler
	limiter *rate.Limiter
	// lastSeen is when bytes last arrived (Unix nanoseconds).
	lastSeen atomic.Int64
	// started is when an unfinished frame or message began, or 0.
	started atomic.Int64
	// early holds bytes the client sent right after its handshake.
	early []byte
	// fd is the socket's descriptor for the poller, or -1. registered is
	// set once the poller knows the connection (the reading side's);
	// parked is set while it waits there for input.
	fd         int32
	registered bool
	// netClosed is set once the socket is closed; guarded by pollMu.
	netClosed bool
	// closeCode is the close's code (with closeReason, below, here to
	// leave no padding).
	closeCode uint16
	parked    atomic.Bool
	// wroteAt is when a flusher worker last wrote the socket, on the
	// flusher's millisecond clock (see pace.go); only the worker that
	// holds the write side touches it.
	wroteAt uint32
	// fdRefs counts the system calls under way on a detached descriptor
	// (see fdAcquire).
	fdRefs atomic.Int32
	// pollMu orders arming the descriptor in the poller against closing
	// the socket. The kernel gives a closed descriptor's number to the
	// next socket it opens, so arming after the close could register
	// another connection's socket and leave this one waiting for an event
	// that never comes.
	pollMu sync.Mutex

	mu      sync.Mutex
	state   state
	batch   bool
	writer  writerState // who holds the socket's write side
	pingDue bool
	pongDue bool
	// Whether the peer's close frame arrived, and whether ours was written
	// (with the other byte-sized fields: a Conn has no padding to spare).
	peerClosed   bool
	closeWritten bool
	// endWaits is set when the input ended while a writer could still
	// report frames: the writer finishes the connection (see end).
	endWaits bool

	pong  []byte
	queue []Frame
	spare []Frame
	// queued counts the bytes held for the connection against the send
	// queue and the instance's ceiling: those in queue, and inflight,
	// those a writer holds because the socket did not take them whole
	// (see takeLocked).
	queued   int
	inflight int
	// space, when not nil, is closed when written bytes are released or
	// the queue is dropped: SendWait waits on it.
	space chan struct{}
	// The close: its reason (the code is above), and what to write just
	// before it.
	closeReason string
	closeLast   func() []byte
	grace       *time.Timer

	r reader
}

// Start begins reading. Call it once, after the Conn's owner is ready for
// Handler calls.
func (c *Conn) Start() {
	c.srv.conns.Add(1)
	go c.readLoop()
}

// SetBatch sets whether queued messages are joined, separated by
// newlines, into frames of up to 64 KiB (PROTOCOL.md "batch").
func (c *Conn) SetBatch(batch bool) {
	c.mu.Lock()
	c.batch = batch
	c.mu.Unlock()
}

// LastSeen returns when bytes last arrived from the peer.
func (c *Conn) LastSeen() time.Time { return time.Unix(0, c.lastSeen.Load()) }

// Unfinished returns when the frame or message the peer is sending began,
// or the zero time when none is unfinished: a peer that never finishes
// one can be closed by its age.
func (c *Conn) Unfinished() time.Time {
	if ns := c.started.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

func (c *Conn) touch() { c.lastSeen.Store(time.Now().UnixNano()) }

// open reports whether the connection is open.
func (c *Conn) open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state == stateOpen
}

// Send queues f without waiting. It returns false when f was not queued:
// the connection is not open, or f would overflow the send queue (or the
// instance's ceiling), in which case the connection is closed with 4008.
func (c *Conn) Send(f Frame) bool {
	ok, kick := c.enqueue(f)
	if kick {
		c.kick()
	}
	return ok
}

// enqueue queues f and reports whether it did and whether the caller must
// start a writer.
func (c *Conn) enqueue(f Frame) (ok, kick bool) {
	size := f.size()
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return false, false
	}
	if c.queued+size > c.srv.cfg.SendQueueBytes || c.srv.overCeiling(c.queued, size) {
		instance := c.queued+size <= c.srv.cfg.SendQueueBytes
		c.closeLocked(CloseSlowConsumer, "slow consumer", false, nil)
		c.mu.Unlock()
		c.srv.metrics.overflow(instance)
		c.closed(CloseSlowConsumer)
		return false, false
	}
	c.pushLocked(f, size)
	kick = c.claimLocked()
	c.mu.Unlock()
	return true, kick
}

// SendWait queues f, waiting while the send queue has no room for it; a
// frame larger than the whole queue waits until the queue is empty. It is
// for answers a client asked for (replays, history): a client that reads
// is never closed for asking. A queue that makes no room for
// Config.WriteTimeout closes the connection with 4008. It returns false
// when f was not queued because the connection is not open or was closed.
func (c *Conn) SendWait(f Frame) bool {
	if _, ok := c.wait(f.size(), &f); !ok {
		return false
	}
	return true
}

// WaitRoom waits, as SendWait does, until the send queue has room for n
// bytes (or is empty), and returns how many bytes it has room for then:
// a reader of a long answer (a replay read page by page) sizes its next
// page by it, so that the page in memory and the queue together stay
// within the queue's bound. ok is false when the connection is not open.
func (c *Conn) WaitRoom(n int) (free int, ok bool) {
	return c.wait(n, nil)
}

// wait waits for room for size bytes, then queues f if it is not nil, and
// returns the room left.
func (c *Conn) wait(size int, f *Frame) (free int, ok bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	budget := c.srv.cfg.SendQueueBytes
	for {
		c.mu.Lock()
		if c.state != stateOpen {
			c.mu.Unlock()
			return 0, false
		}
		if c.queued == 0 || c.queued+size <= budget {
			kick := false
			if f != nil {
				c.pushLocked(*f, size)
				kick = c.claimLocked()
			}
			free = max(0, budget-c.queued)
			c.mu.Unlock()
			if kick {
				c.kick()
			}
			return free, true
		}
		if c.space == nil {
			c.space = make(chan struct{})
		}
		space := c.space
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(c.srv.cfg.WriteTimeout)
		}
		select {
		case <-space:
		case <-timer.C:
			c.mu.Lock()
			wasOpen := c.closeLocked(CloseSlowConsumer, "slow consumer", false, nil)
			c.mu.Unlock()
			if wasOpen {
				c.srv.metrics.overflow(false)
				c.closed(CloseSlowConsumer)
			}
			return 0, false
		}
	}
}

// Free returns how many bytes the send queue has room for now.
func (c *Conn) Free() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(0, c.srv.cfg.SendQueueBytes-c.queued)
}

// pushLocked appends f to the queue. c.mu must be held.
func (c *Conn) pushLocked(f Frame, size int) {
	c.queue = append(c.queue, f)
	c.countLocked(size)
}

// countLocked adds n held bytes to the connection's and the instance's
// counts; releaseLocked takes them off. c.mu must be held.
func (c *Conn) countLocked(n int) {
	if c.queued == 0 {
		c.srv.queuedConns.Add(1)
	}
	c.queued += n
	c.srv.queued.Add(int64(n))
}

// claimLocked takes the write side for a new writer if nobody has it, and
// reports whether the caller must start one (kick). c.mu must be held.
func (c *Conn) claimLocked() bool {
	if c.writer != writerNone {
		return false
	}
	c.writer = writerBusy
	return true
}

// writerState is who holds a connection's write side.
type writerState uint8

const (
	// writerNone: nobody; the next frame queued starts a writer.
	writerNone writerState = iota
	// writerBusy: a writer, which may still report frames (Written).
	writerBusy
	// writerClosing: a writer that only writes the close and reports
	// nothing more. It keeps the write side for good.
	writerClosing
)

// releaseWriterLocked gives up the write side of a closed connection. It
// returns whether the connection's end waited for that: the caller must
// then finish the connection, with c.mu released. (Only a closed
// connection's end waits, so a writer that gives up the write side of an
// open one just sets writerNone.)
func (c *Conn) releaseWriterLocked() (finish bool) {
	c.writer = writerNone
	finish, c.endWaits = c.endWaits, false
	return finish
}

// kick starts a writer for a connection whose write side the caller
// claimed: a flusher worker for direct writes, the connection's own
// goroutine otherwise.
func (c *Conn) kick() {
	if c.direct() {
		c.srv.flusher.schedule(c)
	} else {
		go c.writeLoop(nil)
	}
}

// Ping queues a WebSocket ping (the heartbeat). A ping still unwritten
// counts once.
func (c *Conn) Ping() {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.pingDue = true
	// The heartbeat is also when the connection lets go of its queue's
	// arrays (two, as the writer swaps them): one written to since keeps
	// them until the next heartbeat, an idle one holds none from then on.
	if len(c.queue) == 0 {
		c.queue = nil
	}
	c.spare = nil
	kick := c.claimLocked()
	c.mu.Unlock()
	if kick {
		c.kick()
	}
}

// queuePong answers a ping with its payload. Only the latest unanswered
// ping is answered (RFC 6455, section 5.5.3).
func (c *Conn) queuePong(p []byte) {
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return
	}
	c.pong = append(c.pong[:0], p...)
	c.pongDue = true
	kick := c.claimLocked()
	c.mu.Unlock()
	if kick {
		c.kick()
	}
}

// Close closes the connection with code and reason after the frames
// already queued; nothing queued later is sent. The client's close frame
// is awaited for Config.CloseGrace, then the socket is closed. Only the
// first close of a connection counts.
func (c *Conn) Close(code int, reason string) { c.close(code, reason, true, nil) }

// CloseNow closes the connection with code and reason, dropping what is
// queued.
func (c *Conn) CloseNow(code int, reason string) { c.close(code, reason, false, nil) }

// CloseAfter is Close, and calls last on the writer once the queue is
// written, right before the close frame: the text frame it returns (if
// any) is the last one sent. last may block briefly.
func (c *Conn) CloseAfter(code int, reason string, last func() []byte) {
	c.close(code, reason, true, last)
}

func (c *Conn) close(code int, reason string, flush bool, last func() []byte) {
	c.mu.Lock()
	wasOpen := c.closeLocked(code, reason, flush, last)
	c.mu.Unlock()
	if wasOpen {
		c.closed(code)
	}
}

// Abort closes the socket at once, without a close frame.
func (c *Conn) Abort() { c.closeNet() }

// closeLocked moves an open connection to closing and makes sure a writer
// will send the close frame; it reports whether the connection was open.
// The caller must call c.closed(code) after unlocking when it was. c.mu
// must be held.
func (c *Conn) closeLocked(code int, reason string, flush bool, last func() []byte) bool {
	if c.state != stateOpen {
		return false
	}
	c.state = stateClosing
	c.closeCode, c.closeReason, c.closeLast = uint16(code), reason, last
	if !flush {
		c.dropQueueLocked()
	}
	if c.claimLocked() {
		// Closing may wait: it is never a flusher worker's job.
		go c.writeLoop(nil)
	}
	return true
}

// closed counts a close the server decided and tells the handler.
func (c *Conn) closed(code int) {
	c.srv.metrics.closed(code)
	c.h.Closing()
}

// fail closes the connection after a protocol error of the peer: what is
// queued is dropped and the rest of its input discarded.
func (c *Conn) fail(code int, reason string) {
	c.r.broken = true
	c.close(code, reason, false, nil)
}

// peerClose handles the peer's close frame: it answers the peer's close
// (an open connection echoes its code), or ends the close handshake the
// server started.
func (c *Conn) peerClose(code int) {
	c.mu.Lock()
	c.peerClosed = true
	if c.closeWritten {
		c.mu.Unlock()
		c.closeNet() // the answer to ours: the server closes TCP first
		return
	}
	wasOpen := c.state == stateOpen
	if wasOpen {
		c.state = stateClosing
		c.closeCode, c.closeReason = uint16(code), ""
	}
	// The peer is leaving: what is queued would not be read.
	c.dropQueueLocked()
	c.closeLast = nil
	if c.claimLocked() {
		go c.writeLoop(nil)
	}
	c.mu.Unlock()
	if wasOpen {
		c.h.Closing()
	}
}

// closeNet closes the socket, once. A connection still open counts as
// closed without a close frame (the peer vanished, a write failed).
func (c *Conn) closeNet() {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	wasOpen := c.state == stateOpen
	c.state = stateClosed
	c.dropQueueLocked()
	if c.grace != nil {
		c.grace.Stop()
		c.grace = nil
	}
	c.mu.Unlock()
	c.pollMu.Lock()
	if c.nc != nil {
		_ = c.nc.Close()
	} else {
		c.fdClose()
	}
	c.netClosed = true
	// A closed socket leaves the epoll set without an event: read it
	// here, so that the reader sees the end.
	armed := c.parked.CompareAndSwap(true, false)
	c.pollMu.Unlock()
	if armed {
		go c.readLoop()
	}
	if wasOpen {
		c.h.Closing()
	}
}

// dropQueueLocked empties the queue and wakes SendWait. The bytes a writer
// holds stay counted until it is done with them. c.mu must be held.
func (c *Conn) dropQueueLocked() {
	clear(c.queue)
	c.queue = c.queue[:0]
	c.releaseLocked(c.queued - c.inflight)
	c.pingDue, c.pongDue = false, false
}

// releaseWrittenLocked releases n bytes a writer took and is done with:
// the socket took them, or the write failed. c.mu must be held.
func (c *Conn) releaseWrittenLocked(n int) {
	c.inflight -= n
	c.releaseLocked(n)
}

// releaseLocked takes n held bytes off the connection's and the
// instance's counts and wakes SendWait. c.mu must be held.
func (c *Conn) releaseLocked(n int) {
	if n > 0 {
		c.queued -= n
		c.srv.queued.Add(-int64(n))
		if c.queued == 0 {
			c.srv.queuedConns.Add(-1)
		}
	}
	if c.space != nil {
		close(c.space)
		c.space = nil
	}
}

// readLoop reads and handles frames. With direct I/O it reads only what
// the socket has, then leaves the connection to the poller (or a park
// goroutine) and returns; a TLS connection does the same through
// crypto/tls where the poller is available; otherwise it blocks in its
// reads until the connection ends.
func (c *Conn) readLoop() {
	if c.early != nil {
		early := c.early
		c.early = nil
		c.touch()
		c.feed(early)
	}
	switch _, isTLS := c.nc.(*tls.Conn); {
	case c.parks():
		c.readDirect()
	case isTLS:
		c.readTLS()
	default:
		c.readHeld()
	}
}

// readDirect reads with non-blocking system calls until the socket is
// empty, then goes idle.
func (c *Conn) readDirect() {
	rb := getReadBuffer()
	buf := rb.buf
	for {
		n, err := c.tryRead(rb, buf)
		if n > 0 {
			c.touch()
			c.feed(buf[:n])
		}
		switch {
		case err == nil:
		case errors.Is(err, errWouldBlock):
			putReadBuffer(rb)
			c.idle()
			return
		default:
			putReadBuffer(rb)
			c.end()
			return
		}
	}
}

// readTLS reads a TLS connection. crypto/tls reads only blocking, and may
// hold records it has read from the socket but not yet returned, so it
// reads one byte, waiting if need be (on a wake-up from the poller the
// socket has input), then, under a deadline already past, everything
// crypto/tls holds: such reads return buffered records and never touch
// the socket, and a read that times out leaves crypto/tls usable. Then the
// connection goes idle in the poller like a plain one, so that an idle TLS
// connection holds neither a goroutine nor a read buffer (it kept both,
// 16 KiB). Without the poller it loops, waiting in the one-byte read.
func (c *Conn) readTLS() {
	for {
		n, err := c.nc.Read(c.r.first[:])
		if n > 0 {
			c.touch()
			c.feed(c.r.first[:n])
		}
		if err == nil {
			err = c.readBuffered()
		}
		if err != nil {
			c.end()
			return
		}
		if c.fd >= 0 && sharedPoller() != nil {
			c.idle()
			return
		}
	}
}

// readBuffered reads what the connection holds without waiting (see
// readTLS).
func (c *Conn) readBuffered() error {
	rb := getReadBuffer()
	defer putReadBuffer(rb)
	_ = c.nc.SetReadDeadline(longAgo)
	defer func() { _ = c.nc.SetReadDeadline(time.Time{}) }()
	for {
		n, err := c.nc.Read(rb.buf)
		if n > 0 {
			c.touch()
			c.feed(rb.buf[:n])
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readHeld reads with blocking reads into one read buffer until the
// connection ends: plain connections where there is no poller.
func (c *Conn) readHeld() {
	rb := getReadBuffer()
	defer putReadBuffer(rb)
	for {
		n, err := c.nc.Read(rb.buf)
		if n > 0 {
			c.touch()
			c.feed(rb.buf[:n])
		}
		if err != nil {
			c.end()
			return
		}
	}
}

// longAgo is a deadline that has passed.
var longAgo = time.Unix(1, 0)

// parks reports whether the connection waits for input on a parked
// goroutine (or in the poller) rather than in a blocking read.
func (c *Conn) parks() bool { return shallowWait && c.direct() }

// direct reports whether the connection reads and writes with
// non-blocking system calls: a plain TCP socket, detached or not.
func (c *Conn) direct() bool { return c.raw != nil || c.nc == nil }

// tryRead reads what the socket has without waiting (see the package's
// tryRead).
func (c *Conn) tryRead(rb *readBuffer, b []byte) (int, error) {
	if c.nc == nil {
		return c.fdRead(b)
	}
	return tryRead(c.raw, rb.call, b)
}

// tryWrite writes what the socket takes now (see the package's tryWrite).
func (c *Conn) tryWrite(w *wire) (int, error) {
	if c.nc == nil {
		return c.fdWrite(w.buf)
	}
	return tryWrite(c.raw, w.call, w.buf)
}

// idle waits for the socket's next input without a goroutine: the shared
// epoll poller starts a reader when input comes. Without the poller a
// goroutine parks instead.
func (c *Conn) idle() {
	p := sharedPoller()
	if p == nil || c.fd < 0 {
		go c.park()
		return
	}
	c.pollMu.Lock()
	if c.netClosed {
		// Closed since the last read found it empty: its descriptor
		// number may already be another socket's. End here instead.
		c.pollMu.Unlock()
		c.end()
		return
	}
	err := p.arm(c)
	c.pollMu.Unlock()
	if err != nil && c.parked.CompareAndSwap(true, false) {
		// epoll refused the socket: the reader finds out why and ends
		// the connection.
		go c.readLoop()
	}
}

// park waits until the socket has input, then reads it on a fresh
// goroutine. Its call chain is short, so the goroutine parked here keeps
// the minimal stack: that stack is all an idle connection holds. (A reader
// parked in its read would keep the stack handling frames grew it to.)
func (c *Conn) park() {
	waitReadable(c.raw)
	go c.readLoop()
}

// end finishes a connection whose input ended. Handler.Closed comes last:
// when a writer is between its write and reporting it (Written), the
// writer finishes the connection once it is done, so that the handler
// never hears of frames written after it heard the end. (The peer may have
// read those frames and closed before the writer got to report them.)
func (c *Conn) end() {
	c.closeNet()
	if p := sharedPoller(); p != nil {
		p.remove(c)
	}
	c.r.releaseBuffers()
	c.mu.Lock()
	if c.writer == writerBusy {
		// The socket is closed, so the writer's next write fails or its
		// next look at the state ends it: it does not wait long.
		c.endWaits = true
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.finish()
}

// finish tells the handler the connection is gone and stops counting it.
func (c *Conn) finish() {
	c.h.Closed()
	c.srv.conns.Add(-1)
}

// errWouldBlock is tryRead's answer when the socket has nothing to read.
var errWouldBlock = errors.New("transport: would block")

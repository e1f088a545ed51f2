//go:build linux

package transport

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// poller waits for input on idle connections with one epoll instance, so
// that an idle connection needs no goroutine of its own: it costs an entry
// in the epoll set and a slot in conns. The goroutine that reads its
// events runs only while connections are registered.
//
// Each connection is registered with EPOLLONESHOT: an event disarms it
// until its reader, having read what there was, arms it again. Arming
// re-checks the socket, so input that arrives in between is not missed.
type poller struct {
	set *epollSet

	mu sync.Mutex
	// conns maps file descriptors to the connections registered on them.
	conns   []*Conn
	live    int
	running bool
}

// epollSet is an epoll instance whose own descriptor waits in the Go
// runtime's poller, so that the goroutine reading its events parks like
// any other instead of holding a thread in epoll_wait.
type epollSet struct {
	epfd int
	file *os.File
	rc   syscall.RawConn
}

// errPollerUnavailable means the epoll instance could not be made; the
// connections then wait on goroutines of their own.
var errPollerUnavailable = errors.New("transport: epoll unavailable")

func newEpollSet() (*epollSet, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, errors.Join(errPollerUnavailable, err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		_ = syscall.Close(epfd)
		return nil, errors.Join(errPollerUnavailable, err)
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, errors.Join(errPollerUnavailable, err)
	}
	return &epollSet{epfd: epfd, file: f, rc: rc}, nil
}

// wait returns the next events, waiting for them; it returns an error
// when interrupt woke it.
func (e *epollSet) wait(events []syscall.EpollEvent) (int, error) {
	var n int
	var werr error
	err := e.rc.Read(func(fd uintptr) bool {
		n, werr = syscall.EpollWait(int(fd), events, 0)
		return n > 0 || (werr != nil && werr != syscall.EINTR)
	})
	if err == nil {
		err = werr
	}
	return n, err
}

// interrupt makes wait return (its goroutine then decides whether to
// stop); resume lets it wait again.
func (e *epollSet) interrupt() { _ = e.file.SetReadDeadline(time.Now()) }
func (e *epollSet) resume()    { _ = e.file.SetReadDeadline(time.Time{}) }

// arm registers fd for one event of kind events (EPOLLONESHOT), adding it
// to the set if it is not in it: the kernel drops a descriptor from the set
// when it is closed.
func (e *epollSet) arm(fd int32, events uint32, added bool) error {
	ev := syscall.EpollEvent{Events: events | syscall.EPOLLONESHOT, Fd: fd}
	op := syscall.EPOLL_CTL_MOD
	if !added {
		op = syscall.EPOLL_CTL_ADD
	}
	err := syscall.EpollCtl(e.epfd, op, int(fd), &ev)
	switch {
	case err == syscall.ENOENT && added:
		err = syscall.EpollCtl(e.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	case err == syscall.EEXIST && !added:
		err = syscall.EpollCtl(e.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
	}
	return err
}

func newPoller() (*poller, error) {
	set, err := newEpollSet()
	if err != nil {
		return nil, err
	}
	return &poller{set: set}, nil
}

// arm registers c, whose socket has nothing to read, to be read again on a
// fresh goroutine when input arrives (or the peer hangs up). It marks c
// parked first; whoever takes the mark back (an event, the connection's
// close, or arm's caller after an error) starts the reader.
func (p *poller) arm(c *Conn) error {
	p.mu.Lock()
	first := !c.registered
	if first {
		for len(p.conns) <= int(c.fd) {
			p.conns = append(p.conns, nil)
		}
		p.conns[c.fd] = c
		p.live++
		if !p.running {
			p.running = true
			p.set.resume()
			go p.run()
		}
	}
	p.mu.Unlock()
	c.registered = true
	c.parked.Store(true)
	return p.set.arm(c.fd, syscall.EPOLLIN|syscall.EPOLLRDHUP, !first)
}

// remove forgets an ended connection; its descriptor left the epoll set
// when it was closed. The last one stops the goroutine.
func (p *poller) remove(c *Conn) {
	if !c.registered {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if int(c.fd) < len(p.conns) && p.conns[c.fd] == c {
		p.conns[c.fd] = nil
	}
	p.live--
	if p.live == 0 {
		p.set.interrupt() // wakes run, which stops
	}
}

// run hands each connection with input to a reader goroutine.
func (p *poller) run() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := p.set.wait(events)
		if err != nil {
			p.mu.Lock()
			if p.live == 0 {
				p.running = false
				p.mu.Unlock()
				return
			}
			p.set.resume()
			p.mu.Unlock()
			continue
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			if fd := int(ev.Fd); fd < len(p.conns) {
				if c := p.conns[fd]; c != nil && c.parked.CompareAndSwap(true, false) {
					go c.readLoop()
				}
			}
		}
		p.mu.Unlock()
	}
}

// fdOf returns the descriptor of raw, or -1 without one.
func fdOf(raw syscall.RawConn) int {
	fd := -1
	if raw != nil {
		_ = raw.Control(func(s uintptr) { fd = int(s) })
	}
	return fd
}

// writeWaits is where the writers of detached connections (see detach)
// wait for a socket that refused part of a write (the peer is behind) to
// take more. It is an epoll set of its own, apart from the poller's, so
// that a socket can wait for input and for room at once; its goroutine
// runs only while some writer waits.
type writeWaits struct {
	set *epollSet

	mu sync.Mutex
	// waiting maps descriptors to their waiting writers.
	waiting map[int32]writeWait
	running bool
}

// writeWait is one waiting writer: ready is closed when its socket can
// take more, has failed, or the connection was closed.
type writeWait struct {
	c     *Conn
	ready chan struct{}
}

// wait arms c's socket to tell when it can take more, and returns the
// channel closed then. c's writer must hold a reference on the descriptor
// (Conn.fdAcquire) across the call.
func (w *writeWaits) wait(c *Conn) (<-chan struct{}, error) {
	ready := make(chan struct{})
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.set.arm(c.fd, syscall.EPOLLOUT, true); err != nil {
		return nil, err
	}
	if old, ok := w.waiting[c.fd]; ok && old.c != c {
		// The descriptor's number was another connection's, closed before
		// its wait was cancelled: wake that writer to find it closed.
		close(old.ready)
	}
	w.waiting[c.fd] = writeWait{c: c, ready: ready}
	if !w.running {
		w.running = true
		w.set.resume()
		go w.run()
	}
	return ready, nil
}

// cancel ends c's wait, if it has one: its writer timed out, or the
// connection is closing.
func (w *writeWaits) cancel(c *Conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ww, ok := w.waiting[c.fd]; ok && ww.c == c {
		close(ww.ready)
		w.forgetLocked(c.fd)
	}
}

func (w *writeWaits) forgetLocked(fd int32) {
	delete(w.waiting, fd)
	if len(w.waiting) == 0 {
		w.set.interrupt() // wakes run, which stops
	}
}

// run wakes the writers whose sockets are ready.
func (w *writeWaits) run() {
	events := make([]syscall.EpollEvent, 32)
	for {
		n, err := w.set.wait(events)
		w.mu.Lock()
		if err != nil {
			if len(w.waiting) == 0 {
				w.running = false
				w.mu.Unlock()
				return
			}
			w.set.resume()
		}
		for _, ev := range events[:n] {
			if ww, ok := w.waiting[ev.Fd]; ok {
				close(ww.ready)
				w.forgetLocked(ev.Fd)
			}
		}
		w.mu.Unlock()
	}
}

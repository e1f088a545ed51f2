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
// in the epoll set and a slot in conns. The epoll descriptor itself waits
// in the Go runtime's poller, so the goroutine that reads its events parks
// like any other instead of holding a thread in epoll_wait. That goroutine
// runs only while connections are registered.
//
// Each connection is registered with EPOLLONESHOT: an event disarms it
// until its reader, having read what there was, arms it again. Arming
// re-checks the socket, so input that arrives in between is not missed.
type poller struct {
	epfd int
	file *os.File
	rc   syscall.RawConn

	mu sync.Mutex
	// conns maps file descriptors to the connections registered on them.
	conns   []*Conn
	live    int
	running bool
}

// errPollerUnavailable means the epoll instance could not be made; the
// connections then wait on goroutines of their own.
var errPollerUnavailable = errors.New("transport: epoll unavailable")

func newPoller() (*poller, error) {
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
	return &poller{epfd: epfd, file: f, rc: rc}, nil
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
			_ = p.file.SetReadDeadline(time.Time{})
			go p.run()
		}
	}
	p.mu.Unlock()
	c.registered = true
	c.parked.Store(true)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: c.fd}
	op := syscall.EPOLL_CTL_MOD
	if first {
		op = syscall.EPOLL_CTL_ADD
	}
	return syscall.EpollCtl(p.epfd, op, int(c.fd), &ev)
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
		_ = p.file.SetReadDeadline(time.Now()) // wakes run, which stops
	}
}

// run hands each connection with input to a reader goroutine.
func (p *poller) run() {
	events := make([]syscall.EpollEvent, 128)
	for {
		var n int
		var werr error
		err := p.rc.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), events, 0)
			return n > 0 || (werr != nil && werr != syscall.EINTR)
		})
		if err != nil || werr != nil {
			p.mu.Lock()
			if p.live == 0 {
				p.running = false
				p.mu.Unlock()
				return
			}
			_ = p.file.SetReadDeadline(time.Time{})
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

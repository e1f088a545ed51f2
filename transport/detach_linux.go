//go:build linux

package transport

import (
	"io"
	"net"
	"sync"
	"syscall"
)

// detach takes a plain TCP socket away from package net: it returns a
// descriptor of its own for the same socket, and the caller closes the
// net.Conn. A detached connection then costs neither the net.Conn (with
// its two addresses, about 290 bytes of heap) nor the Go runtime's poll
// descriptor (about 0.55 KiB outside the heap, never returned to the
// OS): its input waits in the poller, its writes are non-blocking system
// calls, and a writer whose socket is full waits in writeWaits. The
// descriptor is non-blocking, as the net.Conn's was (the flag belongs to
// the socket, not the descriptor).
func detach(raw syscall.RawConn) (int, error) {
	fd := -1
	var derr error
	err := raw.Control(func(s uintptr) {
		r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			derr = errno
			return
		}
		fd = int(r)
	})
	if err == nil {
		err = derr
	}
	return fd, err
}

// canDetach reports whether connections can be detached here: the poller
// and the write waits are needed for them.
func canDetach() bool { return sharedPoller() != nil && sharedWriteWaits() != nil }

var (
	writeWaitsOnce sync.Once
	theWriteWaits  *writeWaits
)

// sharedWriteWaits returns the process's writeWaits, or nil without epoll.
func sharedWriteWaits() *writeWaits {
	writeWaitsOnce.Do(func() {
		if set, err := newEpollSet(); err == nil {
			theWriteWaits = &writeWaits{set: set, waiting: make(map[int32]writeWait)}
		}
	})
	return theWriteWaits
}

// A detached descriptor is closed only when no system call is using it:
// the kernel gives a closed descriptor's number to the next socket it
// opens, and a write still under way on the old number would go to that
// other client. fdRefs counts the calls under way, with fdClosedBit set
// once the connection closed it; the last call out closes it.
const fdClosedBit = 1 << 30

// fdAcquire takes a reference for one system call on the descriptor; it
// returns false once the descriptor is closed.
func (c *Conn) fdAcquire() bool {
	for {
		v := c.fdRefs.Load()
		if v&fdClosedBit != 0 {
			return false
		}
		if c.fdRefs.CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// fdRelease gives the reference back, closing the descriptor if the
// connection closed it meanwhile.
func (c *Conn) fdRelease() {
	if c.fdRefs.Add(-1) == fdClosedBit {
		_ = syscall.Close(int(c.fd))
	}
}

// fdClose closes the descriptor now, or when the last call under way on
// it returns. A writer waiting for room is woken to find it closed.
func (c *Conn) fdClose() {
	for {
		v := c.fdRefs.Load()
		if v&fdClosedBit != 0 {
			return
		}
		if c.fdRefs.CompareAndSwap(v, v|fdClosedBit) {
			if v == 0 {
				_ = syscall.Close(int(c.fd))
			}
			break
		}
	}
	if w := sharedWriteWaits(); w != nil {
		w.cancel(c)
	}
}

// fdWrite writes as much of b as the socket takes now, without waiting,
// as tryWrite does for a net.Conn.
func (c *Conn) fdWrite(b []byte) (int, error) {
	if !c.fdAcquire() {
		return 0, net.ErrClosed
	}
	defer c.fdRelease()
	for {
		n, err := syscall.Write(int(c.fd), b)
		switch err {
		case nil:
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, err
	}
}

// fdRead reads what the socket has into b without waiting, as tryRead
// does for a net.Conn.
func (c *Conn) fdRead(b []byte) (int, error) {
	if !c.fdAcquire() {
		return 0, net.ErrClosed
	}
	defer c.fdRelease()
	for {
		n, err := syscall.Read(int(c.fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// fdShutdownWrite sends the peer an end of stream (CloseWrite).
func (c *Conn) fdShutdownWrite() {
	if c.fdAcquire() {
		_ = syscall.Shutdown(int(c.fd), syscall.SHUT_WR)
		c.fdRelease()
	}
}

// fdWaitWritable returns a channel closed when the socket can take more
// (or failed, or the connection closed it).
func (c *Conn) fdWaitWritable() (<-chan struct{}, error) {
	if !c.fdAcquire() {
		return nil, net.ErrClosed
	}
	defer c.fdRelease()
	return sharedWriteWaits().wait(c)
}

// fdCancelWait ends a wait of fdWaitWritable.
func (c *Conn) fdCancelWait() { sharedWriteWaits().cancel(c) }

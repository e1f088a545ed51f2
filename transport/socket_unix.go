//go:build unix

package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// rawConn returns the connection's file descriptor access for tryWrite and
// tryRead, or nil when the connection is not a plain TCP socket.
func rawConn(c net.Conn) syscall.RawConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// rawCall is a non-blocking system call on a raw socket, with its callback
// made once: a closure per call would be an allocation per write (it was
// the largest source of garbage under fan-out).
type rawCall struct {
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

func newRawWrite() *rawCall {
	c := &rawCall{}
	c.fn = c.write
	return c
}

func newRawRead() *rawCall {
	c := &rawCall{}
	c.fn = c.read
	return c
}

func (c *rawCall) write(fd uintptr) bool {
	for {
		c.n, c.err = syscall.Write(int(fd), c.b)
		if c.err != syscall.EINTR {
			// Returning true keeps the runtime from parking the goroutine
			// to wait: Go's sockets are non-blocking, so write(2) answers
			// EAGAIN instead of blocking.
			return true
		}
	}
}

func (c *rawCall) read(fd uintptr) bool {
	for {
		c.n, c.err = syscall.Read(int(fd), c.b)
		if c.err != syscall.EINTR {
			return true
		}
	}
}

// tryWrite writes as much of b as the socket takes now, without waiting:
// it returns how many bytes were written, and an error only when the
// connection failed.
func tryWrite(rc syscall.RawConn, call *rawCall, b []byte) (int, error) {
	if rc == nil {
		return 0, nil
	}
	call.b = b
	err := rc.Write(call.fn)
	n, werr := call.n, call.err
	call.b, call.err = nil, nil
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// A blocking write's deadline is still set; its writer clears it.
		return 0, nil
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return max(n, 0), nil
}

// tryRead reads what the socket has into b without waiting; with nothing
// to read it returns errWouldBlock.
func tryRead(rc syscall.RawConn, call *rawCall, b []byte) (int, error) {
	call.b = b
	err := rc.Read(call.fn)
	n, rerr := call.n, call.err
	call.b, call.err = nil, nil
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

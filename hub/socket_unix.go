//go:build unix

package hub

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// rawConn returns the connection's file descriptor access for tryWrite, or
// nil when the connection is not a plain TCP socket (TLS, tests' pipes).
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

// tryWrite writes as much of b as the socket takes now, without waiting:
// it returns how many bytes were written, and an error only when the
// connection failed. Go's sockets are non-blocking, so write(2) answers
// EAGAIN instead of blocking; returning true from the callback keeps the
// runtime from parking the goroutine to wait.
func tryWrite(rc syscall.RawConn, b []byte) (int, error) {
	if rc == nil {
		return 0, nil
	}
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), b)
		return true
	})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// A blocking write's deadline passed earlier; that writer sets a
		// fresh one.
		return 0, nil
	case err != nil:
		return 0, err
	case werr == syscall.EAGAIN || werr == syscall.EINTR:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return max(n, 0), nil
}

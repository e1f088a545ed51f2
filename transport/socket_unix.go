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
		for {
			n, werr = syscall.Write(int(fd), b)
			if werr != syscall.EINTR {
				return true
			}
		}
	})
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
func tryRead(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), b)
			if rerr != syscall.EINTR {
				return true
			}
		}
	})
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

//go:build linux

package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestConn_DetachedCloseWaitsForCallsUnderWay: closing a detached
// connection while a system call holds its descriptor leaves the
// descriptor open, the same socket, until that call is done, and refuses
// new calls at once; the last call out closes it. Otherwise the number
// could go to a new socket while a write on it was under way.
func TestConn_DetachedCloseWaitsForCallsUnderWay(t *testing.T) {
	ts := startServer(t, tcpMode, Config{})
	c := ts.dial(t, "noecho")
	conn := c.rec.c
	if conn.nc != nil {
		t.Fatal("the connection was not detached")
	}
	fd := int(conn.fd)
	socket := func() (uint64, error) {
		var st syscall.Stat_t
		err := syscall.Fstat(fd, &st)
		return st.Ino, err
	}
	ino, err := socket()
	if err != nil {
		t.Fatal(err)
	}
	if !conn.fdAcquire() { // a call under way
		t.Fatal("fdAcquire refused an open descriptor")
	}
	conn.Abort()
	if got, err := socket(); err != nil || got != ino {
		t.Fatalf("after the close, with a call under way: inode %d, %v; want the socket, %d", got, err, ino)
	}
	if conn.fdAcquire() {
		t.Fatal("fdAcquire took a closed descriptor")
	}
	if n, err := conn.fdWrite([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("fdWrite on a closed descriptor: %d, %v; want net.ErrClosed", n, err)
	}
	// The client sees no end yet...
	_ = c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [1]byte
	if _, err := c.conn.Read(b[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read before the last call ended: %v, want a timeout", err)
	}
	// ...until the call is done.
	conn.fdRelease()
	if got, err := socket(); err == nil && got == ino {
		t.Fatal("the descriptor is still the socket after the last call ended")
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := c.conn.Read(b[:]); err != io.EOF {
		t.Fatalf("client read after the close: %v, want EOF", err)
	}
}

//go:build !unix

package transport

import (
	"net"
	"syscall"
)

// rawConn returns nil: without Unix write(2) every write is a blocking one.
func rawConn(net.Conn) syscall.RawConn { return nil }

// rawCall is unused without Unix system calls.
type rawCall struct{}

func newRawWrite() *rawCall { return nil }

func newRawRead() *rawCall { return nil }

// tryWrite writes nothing, so the connection's own writer writes b.
func tryWrite(syscall.RawConn, *rawCall, []byte) (int, error) { return 0, nil }

// tryRead is never called: connections without a raw socket read with
// blocking reads.
func tryRead(syscall.RawConn, *rawCall, []byte) (int, error) { return 0, errWouldBlock }

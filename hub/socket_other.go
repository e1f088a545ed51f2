//go:build !unix

package hub

import (
	"net"
	"syscall"
)

// rawConn returns nil: without Unix write(2) every write is a blocking one.
func rawConn(net.Conn) syscall.RawConn { return nil }

// tryWrite writes nothing, so the session's own writer goroutine writes b.
func tryWrite(syscall.RawConn, []byte) (int, error) { return 0, nil }

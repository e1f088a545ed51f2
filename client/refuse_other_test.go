//go:build !unix

package client

import (
	"net"
	"testing"
)

// refusingAddr returns a loopback address that refuses connections: a port
// listened on and closed again (on unix a port held without listening, which
// no parallel test can take meanwhile).
func refusingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

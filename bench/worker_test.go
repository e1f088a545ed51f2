package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestDropReason: a dropped connection is noted by how it ended, without
// the addresses its error holds, so that drops add up under one note.
func TestDropReason(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "read", Net: "tcp", Source: &net.TCPAddr{Port: 1}, Addr: &net.TCPAddr{Port: 2}, Err: err}
	}
	tests := []struct {
		err  error
		want string
	}{
		{op(os.NewSyscallError("read", syscall.ECONNRESET)), "reset by the peer"},
		{io.ErrUnexpectedEOF, "closed without a close frame"},
		{fmt.Errorf("frame: %w", io.EOF), "closed without a close frame"},
		{op(os.ErrDeadlineExceeded), "read deadline passed"},
		{op(os.NewSyscallError("read", syscall.ETIMEDOUT)), "timed out in TCP (ETIMEDOUT)"},
		{op(errors.New("something else")), "something else (*net.OpError)"},
	}
	for _, tt := range tests {
		if got := dropReason(tt.err); got != tt.want {
			t.Errorf("dropReason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

//go:build !linux

package transport

import (
	"errors"
	"syscall"
)

// poller is Linux's epoll; elsewhere idle connections wait on goroutines
// of their own.
type poller struct{}

func newPoller() (*poller, error) { return nil, errors.New("transport: no epoll on this platform") }

func (*poller) arm(*Conn) error { return errors.ErrUnsupported }

func (*poller) remove(*Conn) {}

func fdOf(syscall.RawConn) int { return -1 }

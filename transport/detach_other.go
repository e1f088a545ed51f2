//go:build !linux

package transport

import (
	"errors"
	"net"
	"syscall"
)

// detach is Linux's: elsewhere connections keep their net.Conn.
func detach(syscall.RawConn) (int, error) { return -1, errors.ErrUnsupported }

func canDetach() bool { return false }

// The descriptor calls of detached connections; never called here.

func (c *Conn) fdClose()                                 {}
func (c *Conn) fdWrite([]byte) (int, error)              { return 0, net.ErrClosed }
func (c *Conn) fdRead([]byte) (int, error)               { return 0, net.ErrClosed }
func (c *Conn) fdShutdownWrite()                         {}
func (c *Conn) fdWaitWritable() (<-chan struct{}, error) { return nil, net.ErrClosed }
func (c *Conn) fdCancelWait()                            {}
func (c *Conn) fdAcquire() bool                          { return false }
func (c *Conn) fdRelease()                               {}

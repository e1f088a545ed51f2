//go:build linux

package transport

import (
	"syscall"
	"unsafe"
)

// shallowWait says that waitReadable really waits, so an idle session can
// park on a goroutine of its own (see Conn.park).
const shallowWait = true

// waitReadable parks the calling goroutine until the socket has data, or an
// end or error for the next read to find (errors are left to that read).
// Its call chain is short, so the goroutine parked here keeps the minimal
// stack.
func waitReadable(rc syscall.RawConn) {
	if rc == nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		return errno != syscall.EAGAIN
	})
}

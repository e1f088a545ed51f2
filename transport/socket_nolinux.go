//go:build !linux

package transport

import "syscall"

// shallowWait is false: waitReadable does not wait, so the reader waits in
// its reads instead.
const shallowWait = false

// waitReadable returns at once.
func waitReadable(syscall.RawConn) {}

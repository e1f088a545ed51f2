//go:build linux

package bench

import "syscall"

// childProcAttr makes a worker process die with its parent.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

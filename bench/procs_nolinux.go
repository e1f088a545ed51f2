//go:build !linux

package bench

import "syscall"

// childProcAttr sets nothing: only Linux can make a child die with its
// parent; elsewhere a worker ends on EOF of its input.
func childProcAttr() *syscall.SysProcAttr { return nil }

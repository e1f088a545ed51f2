//go:build unix

package switchboard

import "syscall"

// openFileLimit returns the process's soft limit of open files, or 0 when
// it is unknown. (Go raises the soft limit to the hard one at start on
// Linux and macOS.) Unlimited is a huge number.
func openFileLimit() uint64 {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 0
	}
	return uint64(l.Cur)
}

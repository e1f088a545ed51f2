//go:build !unix

package switchboard

// openFileLimit returns 0: there is no open-file limit to derive from.
func openFileLimit() uint64 { return 0 }

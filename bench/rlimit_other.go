//go:build !unix

package bench

// raiseFileLimit does nothing where there is no open-file limit to raise.
func raiseFileLimit() {}

package main

import (
	"fmt"
	"io"
	"runtime"

	switchboard "github.com/switchboard-rt/switchboard"
)

// versionUsage is the usage of version.
const versionUsage = `usage: switchboard version

Prints the version of this build, the Go release and the platform.
`

func version(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
			_, err := io.WriteString(stdout, versionUsage)
			return err
		}
		return fmt.Errorf("%w %q: version takes no arguments", errExtraArgs, args[0])
	}
	_, err := fmt.Fprintf(stdout, "switchboard %s (%s %s/%s)\n", switchboard.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

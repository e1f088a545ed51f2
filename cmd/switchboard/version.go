package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

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
	bi, _ := debug.ReadBuildInfo()
	_, err := fmt.Fprintf(stdout, "switchboard %s (%s %s/%s)\n", buildVersion(switchboard.Version, bi), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

// buildVersion is the version stamped in by `make build` (-ldflags -X), or
// else the module's version that `go install ...@v1.2.3` records, or
// "dev".
func buildVersion(stamped string, bi *debug.BuildInfo) string {
	if stamped != "dev" && stamped != "" {
		return stamped
	}
	if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

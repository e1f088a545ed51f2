package main

import (
	"fmt"
	"io"
	"runtime"

	switchboard "github.com/switchboard-rt/switchboard"
)

func version(stdout io.Writer) error {
	_, err := fmt.Fprintf(stdout, "switchboard %s (%s %s/%s)\n", switchboard.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

// Command switchboard runs and operates Switchboard, a horizontally scalable
// WebSocket messaging server.
//
//	switchboard serve [flags]          run an instance
//	switchboard token --user ID        print a HS256 token (uses --jwt-secret)
//	switchboard bench idle|fanout|rooms [flags]   load-test instances on this machine
//	switchboard version
//
// Every serve flag is also read from SWITCHBOARD_<NAME> (upper case, '-'
// as '_'); the command line wins. A malformed value stops the process at
// start with one line naming the flag.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `usage:
  switchboard serve [flags]                                 run an instance
  switchboard token --user ID [--rooms P,..] [--ttl 1h]     print a HS256 token (uses --jwt-secret)
  switchboard bench idle|fanout|rooms [flags]               load-test running instances on this machine
  switchboard version                                       print the version
Run 'switchboard serve -h' (or 'switchboard help serve') for the flags of a
command; serve reads each flag from SWITCHBOARD_<FLAG> too.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks an error already explained to the user.
var errUsage = errors.New("usage")

// run executes one command and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], os.LookupEnv, stdout, stderr)
	case "token":
		err = token(args[1:], os.LookupEnv, stdout)
	case "bench":
		err = benchCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		err = version(args[1:], stdout)
	case "help", "-h", "--help", "-help":
		if len(args) == 2 && args[0] == "help" && args[1] != "help" {
			// switchboard help serve: the usage of serve.
			return run([]string{args[1], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "switchboard: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	// One line, whatever the error chain holds.
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	fmt.Fprintf(stderr, "switchboard %s: %s\n", args[0], strings.TrimPrefix(msg, "switchboard: "))
	var fe *flagError
	if errors.As(err, &fe) || errors.Is(err, errExtraArgs) {
		return 2
	}
	return 1
}

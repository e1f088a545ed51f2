package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// The built binary answers -h and --help of every command with its usage on
// stdout and exit code 0, whatever the environment holds.
func TestProcess_Help(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	bin := switchboardBinary(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "-h"}, "usage: switchboard serve"},
		{[]string{"serve", "--help"}, "usage: switchboard serve"},
		{[]string{"token", "-h"}, "usage: switchboard token"},
		{[]string{"bench", "-h"}, "usage: switchboard bench"},
		{[]string{"bench", "rooms", "--help"}, "usage: switchboard bench rooms"},
		{[]string{"version", "-h"}, "usage: switchboard version"},
		{[]string{"--help"}, "usage:"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(bin, tt.args...)
			// A malformed value in the environment does not stand in the
			// way of the help.
			cmd.Env = append(cleanEnv(), "SWITCHBOARD_RATE=abc", "REDIS_URL=nonsense")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("run %q: %v", tt.args, err)
			}
			if code := cmd.ProcessState.ExitCode(); code != 0 || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), tt.want) {
				t.Fatalf("switchboard %q exited %d, stdout %q, stderr %q; want 0 and %q on stdout", tt.args, code, stdout.String(), stderr.String(), tt.want)
			}
			if tt.args[0] == "serve" {
				checkServeHelp(t, stdout.String())
			}
		})
	}
}

package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeEnv is a lookupEnv backed by a map.
type fakeEnv map[string]string

func (e fakeEnv) lookup(name string) (string, bool) {
	v, ok := e[name]
	return v, ok
}

// noEnv is an empty environment.
func noEnv(string) (string, bool) { return "", false }

// runCmd runs the command line args and returns the exit code and output.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// wantFlagError checks what run printed for a malformed flag: exit code 2
// and exactly one line on stderr that names the flag as --name.
func wantFlagError(t *testing.T, args []string, code int, stdout, stderr, flag string) {
	t.Helper()
	if code != 2 {
		t.Errorf("run(%q) = %d, want 2", args, code)
	}
	if stdout != "" {
		t.Errorf("run(%q) stdout = %q, want nothing", args, stdout)
	}
	if n := strings.Count(stderr, "\n"); n != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("run(%q) stderr = %q, want exactly one line", args, stderr)
	}
	if !strings.Contains(stderr, "--"+flag) {
		t.Errorf("run(%q) stderr = %q, want it to name --%s", args, stderr, flag)
	}
}

// wantFlagErr checks that err is a *flagError for flag whose message is one
// line naming --flag.
func wantFlagErr(t *testing.T, err error, flag string) {
	t.Helper()
	var fe *flagError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v (%T), want a *flagError for --%s", err, err, flag)
	}
	if fe.flag != flag {
		t.Errorf("err names --%s (%v), want --%s", fe.flag, err, flag)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "--"+flag) {
		t.Errorf("err = %q, want one line naming --%s", msg, flag)
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want int64
	}{
		{"PlainBytes", "65536", 65536},
		{"KiB", "512KiB", 512 << 10},
		{"MiB", "4MiB", 4 << 20},
		{"GiB", "1GiB", 1 << 30},
		{"BytesSuffix", "300B", 300},
		{"UnitIgnoresCase", "4mib", 4 << 20},
		{"SpaceBeforeUnit", "2 KiB", 2 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseSize(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("parseSize(%q) = %d, %v, want %d, nil", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseSize_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
	}{
		{"DecimalMegabytes", "1MB"},
		{"Negative", "-5"},
		{"Zero", "0"},
		{"ZeroWithUnit", "0KiB"},
		{"NotANumber", "abc"},
		{"Empty", ""},
		{"UnitOnly", "KiB"},
		{"Fraction", "1.5MiB"},
		{"TooLarge", "9999999999GiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, err := parseSize(tt.in); err == nil {
				t.Errorf("parseSize(%q) = %d, nil, want an error", tt.in, got)
			}
		})
	}
}

func TestSizeValue_Flag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		arg  string
		want sizeValue
	}{
		{"KiB", "512KiB", 512 << 10},
		{"MiB", "4MiB", 4 << 20},
		{"PlainBytes", "65536", 65536},
		{"GiB", "1GiB", 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := parseServeFlags([]string{"--dev", "--send-queue", tt.arg}, noEnv)
			if err != nil {
				t.Fatalf("parseServeFlags(--send-queue %s) = %v", tt.arg, err)
			}
			if f.sendQueue != tt.want {
				t.Errorf("--send-queue %s = %d, want %d", tt.arg, f.sendQueue, tt.want)
			}
		})
	}
}

func TestFlagSet_GivenTwice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		flag string
	}{
		{"String", []string{"--dev", "--listen", ":1", "--listen", ":2"}, "listen"},
		{"Duration", []string{"--dev", "--heartbeat", "1s", "--heartbeat=2s"}, "heartbeat"},
		{"Size", []string{"--dev", "--send-queue", "1MiB", "--send-queue", "2MiB"}, "send-queue"},
		{"List", []string{"--dev", "--allowed-origins", "a", "--allowed-origins", "b"}, "allowed-origins"},
		// A bool flag goes through a different message of package flag
		// ("invalid boolean flag dev: ..."), which explain does not parse.
		{"Bool", []string{"--dev", "--dev"}, "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseServeFlags(tt.args, noEnv)
			wantFlagErr(t, err, tt.flag)
		})
	}
}

func TestRun_Usage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{"NoArgsIsUsageError", nil, 2, "", "usage:"},
		{"UnknownCommandIsUsageError", []string{"frobnicate"}, 2, "", "frobnicate"},
		{"HelpPrintsUsage", []string{"help"}, 0, "usage:", ""},
		{"DashHelpPrintsUsage", []string{"--help"}, 0, "usage:", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(t, tt.args...)
			if code != tt.code {
				t.Errorf("run(%q) = %d, want %d", tt.args, code, tt.code)
			}
			if tt.wantStdout == "" && stdout != "" || !strings.Contains(stdout, tt.wantStdout) {
				t.Errorf("run(%q) stdout = %q, want %q in it", tt.args, stdout, tt.wantStdout)
			}
			if tt.wantStderr == "" && stderr != "" || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("run(%q) stderr = %q, want %q in it", tt.args, stderr, tt.wantStderr)
			}
			if tt.code == 2 && !strings.Contains(stderr, "usage:") {
				t.Errorf("run(%q) stderr = %q, want the usage", tt.args, stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version", "-version"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(t, arg)
			if code != 0 || stderr != "" {
				t.Errorf("run(%q) = %d, stderr %q, want 0 and no stderr", arg, code, stderr)
			}
			if !strings.HasPrefix(stdout, "switchboard dev (go1.26") || strings.Count(stdout, "\n") != 1 {
				t.Errorf("run(%q) stdout = %q, want one line starting with %q", arg, stdout, "switchboard dev (go1.26")
			}
		})
	}
}

// After parse has wrapped every value, the usage still shows each flag
// with the kind of value it takes and its default, once.
func TestFlagSet_UsageAfterParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		def  func(fs *flagSet)
		want string
	}{
		{"String", func(fs *flagSet) { fs.String("listen", ":8080", "address") }, "  --listen string\n        address (default :8080)\n"},
		{"Bool", func(fs *flagSet) { fs.Bool("dev", false, "development mode") }, "  --dev\n        development mode\n"},
		{"BoolTrue", func(fs *flagSet) { fs.Bool("batch", true, "batches") }, "  --batch\n        batches (default true)\n"},
		{"Int", func(fs *flagSet) { fs.Int("burst", 100, "burst") }, "  --burst int\n        burst (default 100)\n"},
		{"IntZero", func(fs *flagSet) { fs.Int("conns", 0, "conns (default 1000)") }, "  --conns int\n        conns (default 1000)\n"},
		{"Float", func(fs *flagSet) { fs.Float64("rate", 2.5, "rate") }, "  --rate number\n        rate (default 2.5)\n"},
		{"Duration", func(fs *flagSet) { fs.Duration("ttl", time.Hour, "ttl") }, "  --ttl duration\n        ttl (default 1h)\n"},
		{"DurationMinutes", func(fs *flagSet) { fs.Duration("ttl", 90*time.Minute, "ttl") }, "  --ttl duration\n        ttl (default 1h30m)\n"},
		{"Size", func(fs *flagSet) { v := sizeValue(1 << 20); fs.Var(&v, "send-queue", "queue (default 1MiB)") }, "  --send-queue size\n        queue (default 1MiB)\n"},
		{"List", func(fs *flagSet) { var v listValue; fs.Var(&v, "allowed-origins", "origins") }, "  --allowed-origins list\n        origins\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFlagSet("test", noEnv)
			tt.def(fs)
			if err := fs.parse(nil); err != nil {
				t.Fatalf("parse(nil) = %v", err)
			}
			if got := fs.usage(); !strings.Contains(got, tt.want) {
				t.Errorf("usage() = %q, want %q in it", got, tt.want)
			}
		})
	}
}

// The usage of a command that reads the environment names each flag's
// variables, aliases too.
func TestFlagSet_UsageNamesEnvironment(t *testing.T) {
	t.Parallel()
	fs := newFlagSet("test", noEnv)
	fs.showEnv = true
	fs.String("redis", "", "Redis URL")
	fs.alias["REDIS_URL"] = "redis"
	fs.Bool("dev", false, "development mode")
	got := fs.usage()
	for _, want := range []string{"  --redis string                   SWITCHBOARD_REDIS, REDIS_URL\n", "  --dev                            SWITCHBOARD_DEV\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("usage() = %q, want %q in it", got, want)
		}
	}
}

// Every command answers -h, --help and -help with its usage on stdout and
// exit code 0, and "help CMD" does the same as "CMD -h".
func TestRun_Help(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "-h"}, "usage: switchboard serve"},
		{[]string{"token", "-h"}, "usage: switchboard token"},
		{[]string{"token", "--help"}, "SWITCHBOARD_JWT_SECRET"},
		{[]string{"bench", "-h"}, "usage: switchboard bench"},
		{[]string{"bench", "fanout", "-h"}, "usage: switchboard bench fanout"},
		{[]string{"bench", "idle", "--help"}, "--conns int"},
		{[]string{"version", "-h"}, "usage: switchboard version"},
		{[]string{"version", "--help"}, "usage: switchboard version"},
		{[]string{"help", "serve"}, "usage: switchboard serve"},
		{[]string{"help", "token"}, "usage: switchboard token"},
		{[]string{"-help"}, "usage:"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(t, tt.args...)
			if code != 0 || stderr != "" || !strings.Contains(stdout, tt.want) {
				t.Errorf("run(%q) = %d, stdout %q, stderr %q; want 0 and %q on stdout", tt.args, code, stdout, stderr, tt.want)
			}
		})
	}
}

// version takes no arguments.
func TestRun_VersionArgument(t *testing.T) {
	t.Parallel()
	args := []string{"version", "extra"}
	code, stdout, stderr := runCmd(t, args...)
	if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "extra") {
		t.Errorf("run(%q) = %d, stdout %q, stderr %q; want 2 and one line naming the argument", args, code, stdout, stderr)
	}
}

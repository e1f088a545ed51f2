package main

import (
	"net"
	"testing"
)

// Bad values of the HTTP limit flags and --admin-listen stop serve at
// start with one line naming the flag.
func TestRun_ServeHTTPLimitFlagErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		flag string
	}{
		{"MaxHeaderBytesABC", []string{"--dev", "--max-header-bytes", "big"}, "max-header-bytes"},
		{"MaxHeaderBytesZero", []string{"--dev", "--max-header-bytes", "0"}, "max-header-bytes"},
		{"MaxHeaderBytesAtSlack", []string{"--dev", "--max-header-bytes", "4KiB"}, "max-header-bytes"},
		{"MaxHeaderBytesOver1MiB", []string{"--dev", "--max-header-bytes", "2MiB"}, "max-header-bytes"},
		{"HeaderTimeoutZero", []string{"--dev", "--header-timeout", "0s"}, "header-timeout"},
		{"HeaderTimeoutNegative", []string{"--dev", "--header-timeout=-1s"}, "header-timeout"},
		{"HeaderTimeoutABC", []string{"--dev", "--header-timeout", "soon"}, "header-timeout"},
		{"IdleTimeoutZero", []string{"--dev", "--idle-timeout", "0"}, "idle-timeout"},
		{"IdleTimeoutNegative", []string{"--dev", "--idle-timeout=-5s"}, "idle-timeout"},
		{"MaxBodyZero", []string{"--dev", "--max-body", "0"}, "max-body"},
		{"MaxBodyMB", []string{"--dev", "--max-body", "1MB"}, "max-body"},
		{"AdminListenWithoutPort", []string{"--dev", "--admin-listen", "localhost"}, "admin-listen"},
		{"AdminListenSameAsListen", []string{"--dev", "--listen", "127.0.0.1:9000", "--admin-listen", "127.0.0.1:9000"}, "admin-listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseServeFlags(tt.args, noEnv)
			wantFlagErr(t, err, tt.flag)
			args := append([]string{"serve"}, tt.args...)
			code, stdout, stderr := runCmd(t, args...)
			wantFlagError(t, args, code, stdout, stderr, tt.flag)
		})
	}
}

// An admin address that cannot be bound stops serve before it serves,
// naming --admin-listen.
func TestRun_ServeAdminListenBusy(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	args := []string{"serve", "--dev", "--listen", "127.0.0.1:0", "--admin-listen", busy.Addr().String()}
	code, stdout, stderr := runCmd(t, args...)
	wantFlagError(t, args, code, stdout, stderr, "admin-listen")
}

//go:build unix

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"testing"

	"github.com/gorilla/websocket"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProcess_Admission checks that the admission flags reach a real
// process: --max-conns answers 503 with Retry-After past its ceiling,
// --max-conns-per-user closes the extra hello with 4029, and without
// --max-conns the ceiling is derived from the process's open-file limit.
func TestProcess_Admission(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	in := startInstance(t, "admission", "--max-conns", "3", "--max-conns-per-user", "1")
	wstest.Dial(t, in.ws, wstest.Hello{User: "alice"})
	c := wstest.DialRaw(t, in.ws, nil)
	c.Send(wstest.Frame("hello", "user", "alice"))
	_, err := c.NextErr(wstest.Timeout)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.CloseRateLimited {
		t.Fatalf("second session of alice: %v, want close 4029", err)
	}
	wstest.Dial(t, in.ws, wstest.Hello{User: "bob"})
	wstest.Dial(t, in.ws, wstest.Hello{User: "carol"})
	eventually(t, wstest.Timeout, func() string {
		_, resp, err := wstest.Dialer().Dial(in.ws, nil)
		if err == nil {
			return "a fourth connection was upgraded past --max-conns 3"
		}
		if resp == nil {
			return fmt.Sprintf("dial: %v", err)
		}
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || e.Error.Code != "max_conns" {
			return fmt.Sprintf("got %d Retry-After %q code %q, want 503 with Retry-After and max_conns", resp.StatusCode, resp.Header.Get("Retry-After"), e.Error.Code)
		}
		return ""
	})
	if got := in.mustMetric(t, "switchboard_admission_max_conns"); got != 3 {
		t.Fatalf("switchboard_admission_max_conns = %v, want 3", got)
	}

	// The child inherits this process's limits; Go raises the soft limit
	// to the hard one in both.
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatal(err)
	}
	want := switchboard.DefaultMaxConns(uint64(l.Cur))
	def := startInstance(t, "admission-default")
	if got := def.mustMetric(t, "switchboard_admission_max_conns"); got != float64(want) {
		t.Fatalf("default switchboard_admission_max_conns = %v, want %d (open-file limit %d)", got, want, l.Cur)
	}
}

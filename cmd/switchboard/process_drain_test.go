package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProcess_Drain checks PROTOCOL.md's "Graceful drain" on a real
// process: on SIGTERM /readyz turns 503 while the listener stays open, new
// WebSocket sessions are refused, every one of 200 sessions receives
// server:reconnect with reconnectAfter spread over [0, --drain-spread] and
// then close 4001, and the process exits 0 well before --drain-timeout.
func TestProcess_Drain(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	const (
		sessions = 200
		dialers  = 8
		spreadMS = 2000
	)
	in := startInstance(t, "drain", "--drain-spread", "2s", "--drain-timeout", "10s")

	conns := make([]*wstest.Conn, sessions)
	dialErrs := make(chan error, dialers)
	var wg sync.WaitGroup
	for g := range dialers {
		wg.Go(func() {
			for i := g; i < sessions; i += dialers {
				c, err := wstest.TryDial(t, nil, in.ws, wstest.Hello{User: fmt.Sprintf("u%03d", i), Batch: i%2 == 0})
				if err != nil {
					dialErrs <- fmt.Errorf("session %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	close(dialErrs)
	if err := errorsOf(dialErrs); err != nil {
		t.Fatal(err)
	}

	// The sessions start reading only once the drain has been seen, so the
	// drain cannot finish before /readyz was polled.
	type outcome struct {
		frames []protocol.ServerFrame
		err    error
	}
	results := make([]outcome, sessions)
	start := make(chan struct{})
	var readers sync.WaitGroup
	for i, c := range conns {
		readers.Go(func() {
			<-start
			for {
				f, err := c.NextErr(15 * time.Second)
				if err != nil {
					results[i].err = err
					return
				}
				results[i].frames = append(results[i].frames, f)
			}
		})
	}

	signalled := time.Now()
	in.signal(t, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code := in.readyz()
		if code == http.StatusServiceUnavailable {
			break
		}
		if code != http.StatusOK {
			close(start)
			t.Fatalf("/readyz during the drain answered %d (0: no answer), want 503 with the listener open", code)
		}
		if time.Now().After(deadline) {
			close(start)
			t.Fatalf("/readyz still 200 %v after SIGTERM", time.Since(signalled))
		}
		time.Sleep(2 * time.Millisecond)
	}
	readyOff := time.Since(signalled)
	// New sessions are refused during the drain.
	if ws, resp, err := websocket.DefaultDialer.Dial(in.ws, nil); err == nil {
		ws.Close()
		t.Errorf("a new WebSocket session was accepted during the drain")
	} else if resp != nil && resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("upgrade during the drain answered %d, want 503", resp.StatusCode)
	}
	close(start)

	readers.Wait()
	code, err := in.waitExit(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	exitAfter := time.Since(signalled)
	if code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	if exitAfter >= 10*time.Second {
		t.Errorf("process exited %v after SIGTERM, want before the 10s drain timeout", exitAfter)
	}

	var after []int64
	for i, r := range results {
		who := fmt.Sprintf("session %d", i)
		var ce *websocket.CloseError
		if !errors.As(r.err, &ce) || ce.Code != protocol.CloseRestarting {
			t.Errorf("%s ended with %v, want close %d", who, r.err, protocol.CloseRestarting)
		}
		if len(r.frames) != 1 || r.frames[0].Type != protocol.TypeReconnect {
			t.Errorf("%s got %d frames before the close (%v), want exactly server:reconnect", who, len(r.frames), r.frames)
			continue
		}
		f := r.frames[0]
		if f.ReconnectAfter < 0 || f.ReconnectAfter > spreadMS {
			t.Errorf("%s: reconnectAfter = %d, want within [0, %d]", who, f.ReconnectAfter, spreadMS)
		}
		if f.Server != in.id {
			t.Errorf("%s: server:reconnect names server %q, want %q", who, f.Server, in.id)
		}
		after = append(after, f.ReconnectAfter)
	}
	if len(after) > 0 {
		slices.Sort(after)
		distinct := len(slices.Compact(slices.Clone(after)))
		lo, hi := after[0], after[len(after)-1]
		t.Logf("drain: /readyz 503 after %v, exit 0 after %v; reconnectAfter min %d, median %d, max %d ms, %d distinct of %d",
			readyOff.Round(time.Millisecond), exitAfter.Round(time.Millisecond), lo, after[len(after)/2], hi, distinct, len(after))
		if distinct < 50 || lo >= 500 || hi <= 1500 {
			t.Errorf("reconnectAfter not spread over the 2s window: %d distinct values, min %d, max %d; want at least 50 distinct, min < 500, max > 1500", distinct, lo, hi)
		}
	}
	if !in.logs.contains(`"msg":"drained"`) {
		t.Errorf("the log does not say the hub drained")
	}
}

// TestProcess_DrainSecondSignal checks that a second SIGTERM during a drain
// makes the process exit at once. The sessions never read again, so they
// never answer the close frames and the drain waits for them.
func TestProcess_DrainSecondSignal(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	in := startInstance(t, "drain2", "--drain-spread", "2s", "--drain-timeout", "30s")
	for i := range 20 {
		wstest.Dial(t, in.ws, wstest.Hello{User: fmt.Sprintf("mute%d", i)})
	}

	in.signal(t, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for in.readyz() != http.StatusServiceUnavailable {
		if time.Now().After(deadline) || in.hasExited() {
			t.Fatalf("/readyz never answered 503 after SIGTERM (exited: %v)", in.hasExited())
		}
		time.Sleep(2 * time.Millisecond)
	}
	second := time.Now()
	in.signal(t, syscall.SIGTERM)
	code, err := in.waitExit(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(second)
	t.Logf("second SIGTERM: exit code %d after %v", code, took.Round(time.Millisecond))
	if code == 0 {
		t.Errorf("exit code after a second SIGTERM = 0, want non-zero (a drain cut short)")
	}
	if took > time.Second {
		t.Errorf("process exited %v after the second SIGTERM, want within 1s", took)
	}
	if !in.logs.contains("second signal during drain") {
		t.Errorf("the log does not mention the second signal")
	}
}

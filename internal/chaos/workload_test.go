package chaos

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/broker/memory"
)

// server is an in-process instance.
type server struct {
	ws, api string
	stop    func() error
}

// serve starts an instance on b in dev mode on a loopback port; it is
// drained when the test ends, unless stopped before.
func serve(t *testing.T, b *memory.Broker) *server {
	t.Helper()
	inst, err := switchboard.New(switchboard.Config{
		Broker: b, Dev: true, DrainSpread: 200 * time.Millisecond, DrainTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inst.Serve(ctx, ln) }()
	stopped := false
	s := &server{
		ws:  "ws://" + ln.Addr().String() + "/ws",
		api: "http://" + ln.Addr().String(),
		stop: func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			return <-done
		},
	}
	t.Cleanup(func() { _ = s.stop() })
	return s
}

// waitAcks waits until at least n publishes were acknowledged.
func waitAcks(t *testing.T, w *Workload, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		w.ledger.mu.Lock()
		got := len(w.ledger.ids)
		w.ledger.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d publishes acknowledged after 20s, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWorkload_Drain runs a small workload on two in-process instances that
// share a memory broker and drains one of them meanwhile: the check finds
// nothing lost or duplicated, and the clients of the drained instance moved.
func TestWorkload_Drain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a workload for a few seconds")
	}
	t.Parallel()
	b := memory.New(memory.Config{HistorySize: 2000})
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	a, c := serve(t, b), serve(t, b)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	w, err := Start(ctx, Config{
		WS: []string{a.ws, c.ws}, API: []string{a.api, c.api},
		Users: 20, TwoSessions: 5, Rooms: 3, ClientPublishers: 5, APIPublishers: 2,
		Interval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Publish()
	waitAcks(t, w, 100)
	if err := a.stop(); err != nil {
		t.Fatalf("drain: %v", err)
	}
	w.ledger.mu.Lock()
	before := len(w.ledger.ids)
	w.ledger.mu.Unlock()
	waitAcks(t, w, before+100)
	w.Stop(ctx)
	if err := w.WaitCaughtUp(ctx); err != nil {
		t.Error(err)
	}
	if n := w.Connected(); n != w.Clients() {
		t.Errorf("%d of %d clients connected after the drain", n, w.Clients())
	}
	w.Close()
	r := w.Report()
	t.Log(r)
	t.Log(r.Details())
	if err := r.Err(); err != nil {
		t.Error(err)
	}
	if r.Disconnects == 0 {
		t.Errorf("no client was disconnected by the drain")
	}
	if want := fmt.Sprint(r.Published); r.Published < 200 {
		t.Errorf("published=%s, want at least 200", want)
	}
}

package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// checkStream fails unless msgs holds exactly the messages of room at
// offsets 1..n of one epoch, in order, and nothing else of room.
func checkStream(t *testing.T, who string, msgs []Message, room string, n int) {
	t.Helper()
	var got []uint64
	epoch := ""
	for _, m := range msgs {
		if m.Room != room {
			continue
		}
		if m.Kind != KindMessage {
			t.Errorf("%s: got %v in %s at %+v, want messages only", who, m.Kind, room, m.Position)
			continue
		}
		if epoch == "" {
			epoch = m.Epoch
		}
		if m.Epoch != epoch {
			t.Errorf("%s: message in epoch %s after %s", who, m.Epoch, epoch)
		}
		got = append(got, m.Offset)
	}
	for i, off := range got {
		if off != uint64(i+1) {
			t.Fatalf("%s: offsets of %s = %v..., want 1..%d each once in order (first wrong at index %d: %d)", who, room, got[:min(len(got), i+5)], n, i, off)
		}
	}
	if len(got) != n {
		t.Fatalf("%s: %d messages of %s, want %d", who, len(got), room, n)
	}
}

// TestClient_DisconnectUser: 4004 stops the client unless told otherwise.
func TestClient_DisconnectUser(t *testing.T) {
	t.Parallel()
	t.Run("Stops", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		rec := newRecorder()
		c := dial(t, rec.config(Config{URLs: []string{srv.WS}, User: "dan"}))
		if n := srv.Hub().DisconnectUser("dan"); n != 1 {
			t.Fatalf("DisconnectUser = %d sessions, want 1", n)
		}
		select {
		case <-c.Done():
		case <-time.After(waitTimeout):
			t.Fatal("client still running after 4004")
		}
		if code := CloseCode(c.Err()); code != protocol.CloseDisconnected {
			t.Errorf("Err() = %v, want close code 4004", c.Err())
		}
		_, err := c.Publish(ctxT(t), "r", 1)
		if !errors.Is(err, ErrClosed) || CloseCode(err) != protocol.CloseDisconnected {
			t.Errorf("Publish after 4004 = %v, want ErrClosed with code 4004", err)
		}
		if got := c.State(); got != StateClosed {
			t.Errorf("State() = %v, want closed", got)
		}
		rec.wait(t, "the closed state", func(_ []Message, states []State) bool { return len(states) == 3 })
		want := []State{StateConnecting, StateConnected, StateClosed}
		if got := rec.stateList(); !slices.Equal(got, want) {
			t.Errorf("states = %v, want %v", got, want)
		}
	})
	t.Run("ReconnectOnDisconnect", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		rec := newRecorder()
		c := dial(t, rec.config(Config{URLs: []string{srv.WS}, User: "dan", ReconnectOnDisconnect: true}))
		old := c.Session()
		srv.Hub().DisconnectUser("dan")
		rec.wait(t, "a second connection", func(_ []Message, states []State) bool { return connects(states) == 2 })
		if c.Session() == old {
			t.Errorf("Session() = %s after reconnecting, want a new one", old)
		}
		want := []State{StateConnecting, StateConnected, StateDisconnected, StateConnecting, StateConnected}
		if got := rec.stateList(); !slices.Equal(got, want) {
			t.Errorf("states = %v, want %v", got, want)
		}
		if errs := rec.errList(); CloseCode(errs[2]) != protocol.CloseDisconnected {
			t.Errorf("disconnected with %v, want code 4004", errs[2])
		}
	})
}

// TestClient_DrainToAnotherInstance: two instances share a broker (memory,
// or one Redis); the one holding the observer drains (4001 after
// server:reconnect) while another client keeps publishing. The observer
// moves to the other instance and gets every message once, in order, and
// every publish is acked once, in order.
func TestClient_DrainToAnotherInstance(t *testing.T) {
	t.Parallel()
	cfg := switchboard.Config{HistorySize: 1000, DrainSpread: 300 * time.Millisecond, Rate: 1000, Burst: 1000}
	t.Run("Memory", func(t *testing.T) {
		t.Parallel()
		b := memory.New(memory.Config{HistorySize: 1000})
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		cfg := cfg
		cfg.Broker = b
		testDrain(t, cfg)
	})
	t.Run("Redis", func(t *testing.T) {
		t.Parallel()
		cfg := cfg
		cfg.Redis = redistest.Start(t).URL()
		testDrain(t, cfg)
	})
}

func testDrain(t *testing.T, cfg switchboard.Config) {
	srvs := []*wstest.Server{wstest.Start(t, cfg), wstest.Start(t, cfg)}
	urls := []string{srvs[0].WS, srvs[1].WS}

	obsRec := newRecorder()
	obs := dial(t, obsRec.config(Config{URLs: urls, User: "obs"}))
	pub := dial(t, Config{URLs: urls, User: "pub"})
	ctx := ctxT(t)
	for _, c := range []*Client{obs, pub} {
		if _, err := c.Join(ctx, "live"); err != nil {
			t.Fatal(err)
		}
	}

	const n = 300
	acks := make(chan Position, n)
	errc := make(chan error, 1)
	go func() {
		for i := range n {
			p, err := pub.Publish(ctx, "live", i)
			if err != nil {
				errc <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
			acks <- p
		}
		errc <- nil
	}()
	obsRec.wait(t, "the first messages", func(msgs []Message, _ []State) bool { return len(msgs) >= 50 })
	var draining *wstest.Server
	for _, s := range srvs {
		if s.Hub().InstanceID() == obs.Instance() {
			draining = s
		}
	}
	if draining == nil {
		t.Fatalf("observer on instance %s, which is neither", obs.Instance())
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		draining.Stop(t)
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	<-stopped
	obsRec.wait(t, "every message", func(msgs []Message, _ []State) bool { return len(msgs) >= n })
	checkStream(t, "observer", obsRec.messages(), "live", n)
	close(acks)
	var offsets []uint64
	for p := range acks {
		offsets = append(offsets, p.Offset)
	}
	for i, off := range offsets {
		if off != uint64(i+1) {
			t.Fatalf("ack %d at offset %d, want %d: acks in order, one per publish", i, off, i+1)
		}
	}
	obsRec.wait(t, "the observer's second connection", func(_ []Message, states []State) bool { return connects(states) == 2 })
	if obs.Instance() == draining.Hub().InstanceID() {
		t.Errorf("observer still on the drained instance")
	}
	want := []State{StateConnecting, StateConnected, StateDisconnected, StateConnecting, StateConnected}
	if got := obsRec.stateList(); !slices.Equal(got, want) {
		t.Errorf("observer states = %v, want %v", got, want)
	}
	if code := CloseCode(obsRec.errList()[2]); code != protocol.CloseRestarting {
		t.Errorf("observer disconnected with %v, want 4001", obsRec.errList()[2])
	}
}

// TestClient_TokenRefetchedOn4003: the session's token expires (4003); the
// client fetches a new one, reconnects and resumes.
func TestClient_TokenRefetchedOn4003(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
	var mu sync.Mutex
	calls := 0
	token := func(ctx context.Context) (string, error) {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		ttl := time.Hour
		if first {
			ttl = 2 * time.Second // exp is rounded down to the second
		}
		return auth.Sign(secret, auth.Claims{User: "tess", Expires: time.Now().Add(ttl)})
	}
	rec := newRecorder()
	c := dial(t, rec.config(Config{URLs: []string{srv.WS}, Token: token}))
	ctx := ctxT(t)
	if _, err := c.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "a reconnect", func(_ []Message, states []State) bool { return connects(states) == 2 })
	if code := CloseCode(rec.errList()[2]); code != protocol.CloseUnauthorized {
		t.Errorf("disconnected with %v, want 4003", rec.errList()[2])
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	if n != 2 {
		t.Errorf("Token called %d times, want 2", n)
	}
	other := dial(t, Config{URLs: []string{srv.WS}, Token: func(context.Context) (string, error) {
		return auth.Sign(secret, auth.Claims{User: "other", Expires: time.Now().Add(time.Hour)})
	}})
	if _, err := other.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Publish(ctx, "r", "still there?"); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "the message after the reconnect", func(msgs []Message, _ []State) bool { return len(msgs) == 1 })

	t.Run("DialFailsFastOnBadToken", func(t *testing.T) {
		start := time.Now()
		_, err := Dial(ctx, Config{URLs: []string{srv.WS}, Token: func(context.Context) (string, error) { return "not-a-jwt", nil }})
		if code := CloseCode(err); code != protocol.CloseUnauthorized || !errors.Is(err, ErrClosed) {
			t.Errorf("Dial(bad token) = %v, want close code 4003", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Dial(bad token) took %v, want at once", d)
		}
	})
	t.Run("DialFailsOnTokenError", func(t *testing.T) {
		boom := errors.New("auth server down")
		_, err := Dial(ctx, Config{URLs: []string{srv.WS}, Token: func(context.Context) (string, error) { return "", boom }})
		var te *TokenError
		if !errors.As(err, &te) || !errors.Is(err, boom) {
			t.Errorf("Dial(token error) = %v, want a *TokenError wrapping it", err)
		}
	})
}

// TestClient_HeartbeatDetectsDeadConnection: a connection that goes silent
// without closing is dropped within HeartbeatTimeout, and the client
// reconnects.
func TestClient_HeartbeatDetectsDeadConnection(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	p := newProxy(t, srv.WS)
	const timeout = 600 * time.Millisecond
	rec := newRecorder()
	c := dial(t, rec.config(Config{URLs: []string{p.URL()}, User: "hb", HeartbeatTimeout: timeout}))
	ctx := ctxT(t)
	if _, err := c.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	// An idle but healthy connection is kept: the client's pings are
	// answered.
	idle := time.Now()
	eventually(t, "three timeouts of idleness", func() bool { return time.Since(idle) > 3*timeout })
	if got := rec.stateList(); len(got) != 2 {
		t.Fatalf("states while idle = %v, want connecting, connected", got)
	}

	frozen := time.Now()
	p.Freeze()
	rec.wait(t, "the dead connection to be dropped", func(_ []Message, states []State) bool { return len(states) >= 3 })
	took := time.Since(frozen)
	if took > timeout+500*time.Millisecond {
		t.Errorf("dead connection dropped after %v, want within %v (+ scheduling)", took, timeout)
	}
	if !errors.Is(rec.errList()[2], errDeadConnection) {
		t.Errorf("disconnected with %v, want errDeadConnection", rec.errList()[2])
	}
	rec.wait(t, "a new connection", func(_ []Message, states []State) bool { return connects(states) == 2 })
	pub := dial(t, Config{URLs: []string{srv.WS}, User: "pub"})
	if _, err := pub.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, "r", 1); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "a message on the new connection", func(msgs []Message, _ []State) bool { return len(msgs) == 1 })
}

// TestClient_RequestsWaitForTheConnection: requests made while no server
// is reachable wait for the connection within their ctx.
func TestClient_RequestsWaitForTheConnection(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	p := newProxy(t, srv.WS)
	rec := newRecorder()
	fast := Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}
	c := dial(t, rec.config(Config{URLs: []string{p.URL()}, User: "w", Backoff: fast}))
	obsRec := newRecorder()
	obs := dial(t, obsRec.config(Config{URLs: []string{srv.WS}, User: "obs"}))
	ctx := ctxT(t)
	for _, c := range []*Client{c, obs} {
		if _, err := c.Join(ctx, "r"); err != nil {
			t.Fatal(err)
		}
	}
	p.Refuse(true)
	p.Cut()
	rec.wait(t, "the disconnection", func(_ []Message, states []State) bool { return len(states) >= 3 })
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Publish(short, "r", "never"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish while away = %v, want DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Publish(ctx, "r", "later")
		done <- err
	}()
	eventually(t, "a few refused attempts", func() bool { return p.accepted.Load() >= 4 })
	if c.State() == StateConnected {
		t.Fatalf("connected while the proxy refuses")
	}
	p.Refuse(false)
	if err := <-done; err != nil {
		t.Fatalf("Publish issued while away: %v", err)
	}
	obsRec.wait(t, "the message", func(msgs []Message, _ []State) bool { return len(msgs) == 1 })
	if m := obsRec.messages()[0]; string(m.Data) != `"later"` {
		t.Errorf("observer got %s, want only the publish that waited", m.Data)
	}
}

package client

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait of these tests.
const waitTimeout = 10 * time.Second

// dial dials cfg and closes the client when the test ends.
func dial(t *testing.T, cfg Config) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial(%v): %v", cfg.URLs, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ctxT returns a context for one request of a test.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// recorder keeps what a Handler and OnStateChange were given.
type recorder struct {
	mu      sync.Mutex
	msgs    []Message
	states  []State
	errs    []error
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) handle(m Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.notifyLocked()
	r.mu.Unlock()
}

func (r *recorder) state(s State, err error) {
	r.mu.Lock()
	r.states = append(r.states, s)
	r.errs = append(r.errs, err)
	r.notifyLocked()
	r.mu.Unlock()
}

func (r *recorder) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// config returns cfg with the recorder as Handler and OnStateChange.
func (r *recorder) config(cfg Config) Config {
	cfg.Handler = r.handle
	cfg.OnStateChange = r.state
	return cfg
}

func (r *recorder) messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

func (r *recorder) errList() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// count returns how many messages were recorded.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// connects returns how many times the states went to connected.
func (r *recorder) connects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return connects(r.states)
}

func (r *recorder) stateList() []State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]State(nil), r.states...)
}

// wait waits until cond holds for what was recorded.
func (r *recorder) wait(t *testing.T, what string, cond func(msgs []Message, states []State) bool) {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		r.mu.Lock()
		ok := cond(r.msgs, r.states)
		n, states, changed := len(r.msgs), append([]State(nil), r.states...), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			t.Fatalf("timed out waiting for %s: %d messages, states %v", what, n, states)
		}
	}
}

// count returns the number of messages of kind in room.
func count(msgs []Message, room string, kind Kind) int {
	n := 0
	for _, m := range msgs {
		if m.Room == room && m.Kind == kind {
			n++
		}
	}
	return n
}

// connects returns how many times states went to connected.
func connects(states []State) int {
	n := 0
	for _, s := range states {
		if s == StateConnected {
			n++
		}
	}
	return n
}

// eventually polls f until it is true.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

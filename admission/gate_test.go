package admission

import (
	"testing"
	"time"
)

func newGate(t *testing.T, cfg GateConfig) *Gate {
	t.Helper()
	g, err := NewGate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// The burst passes at once; the next hello waits for a token.
func TestGateBurstThenWait(t *testing.T) {
	g := newGate(t, GateConfig{Rate: 20, Burst: 3, Queue: 10, Wait: 5 * time.Second})
	for i := range 3 {
		if w, r := g.Enter(Cold); w != nil || r != Admitted {
			t.Fatalf("hello %d of the burst: %v, want admitted at once", i, r)
		}
	}
	start := time.Now()
	w, r := g.Enter(Cold)
	if w == nil {
		t.Fatalf("hello past the burst: %v, want a wait", r)
	}
	if got := g.Waiting(Cold); got != 1 {
		t.Fatalf("waiting = %d, want 1", got)
	}
	if r := w.Wait(); r != Admitted {
		t.Fatalf("waited hello: %v, want admitted", r)
	}
	// One token at 20/s takes 50 ms; allow a slow machine either way.
	if d := time.Since(start); d < 20*time.Millisecond || d > 3*time.Second {
		t.Fatalf("admitted after %v, want about 50ms", d)
	}
}

// Tokens go to resuming hellos before cold ones, whatever the order they
// came in; within a kind, first come first served.
func TestGateResumeFirst(t *testing.T) {
	g := newGate(t, GateConfig{Rate: 50, Burst: 1, Queue: 100, Wait: 10 * time.Second})
	if _, r := g.Enter(Cold); r != Admitted {
		t.Fatal("the bucket's one token was not given")
	}
	type entry struct {
		kind Kind
		i    int
		w    *Waiter
	}
	var entries []entry
	for i := range 10 {
		kind := Cold
		if i%2 == 1 {
			kind = Resume
		}
		w, r := g.Enter(kind)
		if w == nil {
			t.Fatalf("hello %d: %v, want a wait", i, r)
		}
		entries = append(entries, entry{kind, i, w})
	}
	order := make(chan entry, len(entries))
	for _, e := range entries {
		go func() {
			if r := e.w.Wait(); r != Admitted {
				t.Errorf("hello %d: %v", e.i, r)
			}
			order <- e
		}()
	}
	// Results are decided in token order; receiving them in that order
	// needs each to be decided before the next: at 50/s they are 20 ms
	// apart, and the goroutines only forward them.
	var got []entry
	for range entries {
		got = append(got, <-order)
	}
	for i, e := range got {
		wantResume := i < 5
		if (e.kind == Resume) != wantResume {
			t.Fatalf("admission %d went to hello %d (%v); want the 5 resuming hellos first: %v", i, e.i, e.kind, got)
		}
	}
}

// A full queue refuses a cold hello at once; a resuming one takes the
// place of the newest cold hello, which is refused.
func TestGateFullQueue(t *testing.T) {
	g := newGate(t, GateConfig{Rate: 0.001, Burst: 1, Queue: 2, Wait: 10 * time.Second})
	g.Enter(Cold)
	c1, _ := g.Enter(Cold)
	c2, _ := g.Enter(Cold)
	if c1 == nil || c2 == nil {
		t.Fatal("want two waiting cold hellos")
	}
	if w, r := g.Enter(Cold); w != nil || r != Full {
		t.Fatalf("cold hello into a full queue: %v, want full", r)
	}
	r1, _ := g.Enter(Resume)
	if r1 == nil {
		t.Fatal("a resuming hello into a queue with cold ones was refused")
	}
	if r := c2.Wait(); r != Full {
		t.Fatalf("the newest cold hello: %v, want full (displaced)", r)
	}
	r2, _ := g.Enter(Resume)
	if r2 == nil {
		t.Fatal("second resuming hello was refused while a cold one waited")
	}
	if r := c1.Wait(); r != Full {
		t.Fatalf("the older cold hello: %v, want full (displaced)", r)
	}
	if w, r := g.Enter(Resume); w != nil || r != Full {
		t.Fatalf("resuming hello into a queue of resuming ones: %v, want full", r)
	}
	if g.Waiting(Resume) != 2 || g.Waiting(Cold) != 0 {
		t.Fatalf("waiting resume %d cold %d, want 2 and 0", g.Waiting(Resume), g.Waiting(Cold))
	}
	g.Cancel(r1)
	g.Cancel(r2)
	if r1.Wait() != Cancelled || r2.Wait() != Cancelled || g.Waiting(Resume) != 0 {
		t.Fatal("cancelled hellos were not withdrawn")
	}
}

// A hello that gets no token within the wait bound is refused; cancelling
// a decided waiter changes nothing.
func TestGateTimeout(t *testing.T) {
	g := newGate(t, GateConfig{Rate: 0.001, Burst: 1, Queue: 10, Wait: 100 * time.Millisecond})
	g.Enter(Cold)
	w, _ := g.Enter(Resume)
	start := time.Now()
	if r := w.Wait(); r != TimedOut {
		t.Fatalf("got %v, want timeout", r)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 3*time.Second {
		t.Fatalf("timed out after %v, want about 100ms", d)
	}
	g.Cancel(w)
	if g.Waiting(Resume) != 0 {
		t.Fatal("a timed-out hello still counts as waiting")
	}
}

// Many cancelled waiters in the middle of a queue do not stall the others
// or leak: the queue drains and counts zero.
func TestGateCancelInMiddle(t *testing.T) {
	g := newGate(t, GateConfig{Rate: 1000, Burst: 1, Queue: 1000, Wait: 10 * time.Second})
	g.Enter(Cold)
	var keep []*Waiter
	for i := range 500 {
		w, r := g.Enter(Cold)
		if w == nil {
			t.Fatalf("hello %d: %v", i, r)
		}
		if i%5 == 0 {
			keep = append(keep, w)
		} else {
			g.Cancel(w)
		}
	}
	for _, w := range keep {
		if r := w.Wait(); r != Admitted {
			t.Fatalf("got %v, want admitted", r)
		}
	}
	if n := g.Waiting(Cold); n != 0 {
		t.Fatalf("waiting = %d after the queue drained", n)
	}
}

func TestGateConfigChecked(t *testing.T) {
	for _, cfg := range []GateConfig{
		{Rate: 0, Burst: 1, Queue: 1, Wait: time.Second},
		{Rate: 1, Burst: 0, Queue: 1, Wait: time.Second},
		{Rate: 1, Burst: 1, Queue: 0, Wait: time.Second},
		{Rate: 1, Burst: 1, Queue: 1, Wait: 0},
	} {
		if _, err := NewGate(cfg); err == nil {
			t.Errorf("NewGate(%+v) accepted", cfg)
		}
	}
}

// CancelAll withdraws every waiting hello of both kinds.
func TestGateCancelAll(t *testing.T) {
	g := newGate(t, GateConfig{Rate: 0.001, Burst: 1, Queue: 10, Wait: 10 * time.Second})
	g.Enter(Cold)
	a, _ := g.Enter(Cold)
	b, _ := g.Enter(Resume)
	g.CancelAll()
	if a.Wait() != Cancelled || b.Wait() != Cancelled || g.Waiting(Cold)+g.Waiting(Resume) != 0 {
		t.Fatal("CancelAll left hellos waiting")
	}
}

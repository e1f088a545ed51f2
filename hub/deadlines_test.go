package hub

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestDeadlines sets, moves and clears the deadlines of many sessions and
// checks that exactly the ones left fire, each once, with its kind and not
// before its time. (Their order is not checked: deadlines due at nearly the
// same time may fire from two runs of the timer at once, as separate
// timers would.)
func TestDeadlines(t *testing.T) {
	type fired struct {
		s    *Session
		kind deadlineKind
		at   time.Time
	}
	var mu sync.Mutex
	var got []fired
	done := make(chan struct{})
	const n = 300
	want := map[*Session]time.Time{}
	d := newDeadlines(func(s *Session, kind deadlineKind) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fired{s, kind, time.Now()})
		if len(got) == len(want) {
			close(done)
		}
	})
	start := time.Now()
	wantKind := map[*Session]deadlineKind{}
	for i := range n {
		s := &Session{id: fmt.Sprint(i)}
		at := start.Add(time.Duration(20+rand.IntN(200)) * time.Millisecond)
		d.set(s, at, helloDeadline)
		switch i % 4 {
		case 0: // moved, to a token's expiry
			at = start.Add(time.Duration(20+rand.IntN(200)) * time.Millisecond)
			d.set(s, at, tokenDeadline)
			want[s], wantKind[s] = at, tokenDeadline
		case 1: // cleared
			d.clear(s, anyDeadline)
		case 2: // a clear of another kind leaves it
			d.clear(s, tokenDeadline)
			want[s], wantKind[s] = at, helloDeadline
		case 3: // cleared by kind
			d.clear(s, helloDeadline)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%d of %d deadlines fired", len(got), len(want))
	}
	time.Sleep(50 * time.Millisecond) // for any that should not fire
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("%d deadlines fired, want %d", len(got), len(want))
	}
	seen := map[*Session]bool{}
	for _, f := range got {
		at, ok := want[f.s]
		switch {
		case !ok:
			t.Fatalf("session %s fired but its deadline was cleared", f.s.id)
		case seen[f.s]:
			t.Fatalf("session %s fired twice", f.s.id)
		case f.kind != wantKind[f.s]:
			t.Fatalf("session %s fired as kind %d, want %d", f.s.id, f.kind, wantKind[f.s])
		case f.at.Before(at):
			t.Fatalf("session %s fired %v early", f.s.id, at.Sub(f.at))
		}
		seen[f.s] = true
		if f.s.deadline != 0 {
			t.Fatalf("session %s keeps index %d after firing", f.s.id, f.s.deadline)
		}
	}
	if len(d.queue) != 0 {
		t.Fatalf("%d deadlines left", len(d.queue))
	}
}

// TestDeadlinesShrink: once the sessions of a storm are gone, the queue
// gives back the memory of its peak, and the deadlines left still fire.
func TestDeadlinesShrink(t *testing.T) {
	fired := make(chan *Session, 10)
	d := newDeadlines(func(s *Session, _ deadlineKind) { fired <- s })
	far := time.Now().Add(time.Hour)
	ss := make([]*Session, 20000)
	for i := range ss {
		ss[i] = &Session{id: fmt.Sprint(i)}
		d.set(ss[i], far.Add(time.Duration(i)), tokenDeadline)
	}
	peak := cap(d.queue)
	for _, s := range ss[:len(ss)-3] {
		d.clear(s, anyDeadline)
	}
	if got := cap(d.queue); got > keptDeadlines {
		t.Fatalf("3 deadlines left keep a queue of capacity %d (peak %d)", got, peak)
	}
	// The three left fire, now moved to just after now.
	for _, s := range ss[len(ss)-3:] {
		d.set(s, time.Now().Add(10*time.Millisecond), tokenDeadline)
	}
	for range 3 {
		select {
		case <-fired:
		case <-time.After(5 * time.Second):
			t.Fatal("a deadline left after the shrink did not fire")
		}
	}
}

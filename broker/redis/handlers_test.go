package redis

import (
	"slices"
	"testing"
	"unsafe"

	"github.com/switchboard-rt/switchboard/broker"
)

// TestHandlerSet adds and removes handlers, the first one and others, and
// checks the set against the handlers it should hold, in order.
func TestHandlerSet(t *testing.T) {
	a, b, c := &counter{}, &counter{}, &counter{}
	var s handlerSet
	check := func(step string, want ...broker.Handler) {
		t.Helper()
		got := slices.Collect(s.all())
		if !slices.Equal(got, want) || s.len() != len(want) {
			t.Fatalf("%s: handlers %v (len %d), want %v", step, got, s.len(), want)
		}
		for _, h := range []broker.Handler{a, b, c} {
			if s.has(h) != slices.Contains(want, h) {
				t.Fatalf("%s: has(%p) = %v", step, h, s.has(h))
			}
		}
	}
	check("empty")
	s.add(a)
	s.add(a)
	check("one added twice", a)
	s.add(b)
	s.add(c)
	s.add(b)
	check("three", a, b, c)
	s.remove(a)
	check("first removed", b, c)
	s.remove(c)
	check("last removed", b)
	s.remove(a)
	check("absent removed", b)
	s.add(a)
	check("added again", b, a)
	s.remove(b)
	s.remove(a)
	check("all removed")
	if s.rest != nil {
		t.Errorf("an empty set keeps a slice for more handlers")
	}
}

// TestSizes keeps what the Broker holds for every subscribed room within
// the allocator's size classes it fits now: every idle connection has a
// room of its own (its inbox), so one field more can cost a class, 16
// bytes a connection.
func TestSizes(t *testing.T) {
	for _, c := range []struct {
		what        string
		size, class uintptr
	}{
		{"roomState", unsafe.Sizeof(roomState{}), 80},
		{"handlerSet", unsafe.Sizeof(handlerSet{}), 24},
		{"roomPresence", unsafe.Sizeof(roomPresence{}), 48},
	} {
		if c.size > c.class {
			t.Errorf("a %s is %d bytes, more than the %d of its size class", c.what, c.size, c.class)
		}
	}
}

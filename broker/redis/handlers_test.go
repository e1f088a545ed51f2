package redis

import (
	"fmt"
	"maps"
	"testing"
)

// TestPresenceSessions checks the slice-then-map set against a map, across
// the switch from one to the other.
func TestPresenceSessions(t *testing.T) {
	var p presenceSessions
	want := map[string]presenceValue{}
	check := func(step string) {
		t.Helper()
		got := map[string]presenceValue{}
		for s, v := range p.all {
			got[s] = v
		}
		if !maps.Equal(got, want) || p.len() != len(want) {
			t.Fatalf("%s: got %v (len %d), want %v", step, got, p.len(), want)
		}
	}
	for i := range 3 * presenceListMax {
		s := fmt.Sprint("s", i%(2*presenceListMax)) // the second half replaces
		v := presenceValue{user: fmt.Sprint("u", i), instance: "i"}
		p.set(s, v)
		want[s] = v
		check(fmt.Sprint("set ", i))
	}
	for i := range 2 * presenceListMax {
		s := fmt.Sprint("s", i)
		p.delete(s)
		p.delete(s) // absent: no-op
		delete(want, s)
		check(fmt.Sprint("delete ", i))
	}
	var h handlerSet
	h.add(nil)
	h.add(nil)
	if len(h) != 1 || !h.has(nil) {
		t.Fatalf("handlerSet after adding one handler twice: %v", h)
	}
	h.remove(nil)
	if len(h) != 0 {
		t.Fatalf("handlerSet after remove: %v", h)
	}
}

package redis

import "testing"

// TestHandlerSet checks that a handler added twice is there once, and that
// remove takes it out.
func TestHandlerSet(t *testing.T) {
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

package hub

import (
	"testing"
	"time"
	"unsafe"
)

// TestSizes keeps what every connection has in the hub within the
// allocator's size classes it fits now (a session, and its inbox as a
// room): one field more can cost a class, 16 to 32 bytes a connection.
func TestSizes(t *testing.T) {
	for _, c := range []struct {
		what        string
		size, class uintptr
	}{
		{"Session", unsafe.Sizeof(Session{}), 224},
		{"room", unsafe.Sizeof(room{}), 96},
		{"member", unsafe.Sizeof(member{}), 32},
	} {
		if c.size > c.class {
			t.Errorf("a %s is %d bytes, more than the %d of its size class", c.what, c.size, c.class)
		}
	}
}

// TestPingSlices: the heartbeat is cut into 25 slices, fewer when the
// interval is short, never into ticks under a millisecond, and each
// session is still pinged once an interval.
func TestPingSlices(t *testing.T) {
	for _, c := range []struct {
		heartbeat time.Duration
		want      uint32
	}{
		{25 * time.Second, 25},
		{time.Second, 25},
		{25 * time.Millisecond, 25},
		{10 * time.Millisecond, 10},
		{1500 * time.Microsecond, 1},
		{500 * time.Microsecond, 1},
		{1, 1},
	} {
		got := pingSlices(c.heartbeat)
		if got != c.want {
			t.Errorf("pingSlices(%v) = %d, want %d", c.heartbeat, got, c.want)
		}
		if tick := c.heartbeat / time.Duration(got); tick <= 0 || tick*time.Duration(got) > c.heartbeat {
			t.Errorf("heartbeat %v: %d slices of %v", c.heartbeat, got, tick)
		}
	}
}

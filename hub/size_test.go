package hub

import (
	"testing"
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

package admission

import (
	"net/netip"
	"testing"
	"time"
)

// The cost added to each connection: counting it in and out.
func BenchmarkConnsAcquireRelease(b *testing.B) {
	c := &Conns{Max: 1 << 30, MaxPerAddr: 100}
	b.RunParallel(func(pb *testing.PB) {
		a := netip.MustParseAddr("127.0.0.1")
		for pb.Next() {
			if c.Acquire(a) == "" {
				c.Release(a)
			}
		}
	})
}

// The cost added to each hello while tokens last.
func BenchmarkGateEnterAdmitted(b *testing.B) {
	g, err := NewGate(GateConfig{Rate: 1e12, Burst: 1 << 30, Queue: 1, Wait: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, r := g.Enter(Cold); r != Admitted {
				b.Error(r)
				return
			}
		}
	})
}

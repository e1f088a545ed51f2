package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestLoopback_BelowEphemeralRangeAndFree(t *testing.T) {
	lo, err := ephemeralLow()
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := Loopback(20)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 20 {
		t.Fatalf("Loopback(20) returned %d addresses", len(addrs))
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		host, ps, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(ps)
		if host != "127.0.0.1" || p < floor || p >= lo {
			t.Errorf("address %s: want 127.0.0.1 and a port in [%d, %d)", a, floor, lo)
		}
		if seen[a] {
			t.Errorf("address %s returned twice", a)
		}
		seen[a] = true
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("address %s is not free: %v", a, err)
			continue
		}
		_ = ln.Close()
	}
}

// A kernel that leaves no room below its ephemeral range still gets
// distinct free ports, from the kernel.
func TestBelow_NoRoomFallsBackToTheKernel(t *testing.T) {
	addrs, err := below(5, floor+10)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Errorf("address %s returned twice", a)
		}
		seen[a] = true
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("address %s is not free: %v", a, err)
			continue
		}
		_ = ln.Close()
	}
	if len(addrs) != 5 {
		t.Fatalf("below(5) returned %d addresses", len(addrs))
	}
}

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
	checkDistinctAndFree(t, addrs, 20)
	for _, a := range addrs {
		host, ps, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(ps)
		if host != "127.0.0.1" || p < floor || p >= lo {
			t.Errorf("address %s: want 127.0.0.1 and a port in [%d, %d)", a, floor, lo)
		}
	}
}

// A kernel that leaves no room below its ephemeral range still gets
// distinct free ports, from the kernel.
func TestBelow_NoRoomFallsBackToTheKernel(t *testing.T) {
	addrs, err := below(5, floor+10)
	if err != nil {
		t.Fatal(err)
	}
	checkDistinctAndFree(t, addrs, 5)
}

// checkDistinctAndFree checks that addrs holds n distinct addresses, each
// free to listen on.
func checkDistinctAndFree(t *testing.T, addrs []string, n int) {
	t.Helper()
	if len(addrs) != n {
		t.Fatalf("got %d addresses, want %d", len(addrs), n)
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
}

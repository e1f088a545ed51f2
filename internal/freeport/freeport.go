// Package freeport finds loopback ports for test servers that restart on
// the port they had.
//
// A port from listening on port 0 lies in the kernel's ephemeral range,
// where outgoing connections take their local ports: while a server is down
// for a restart, any client connecting anywhere may take its port, and the
// restart fails. The ports found here lie below that range, where only
// another explicit bind can take them.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// floor is the lowest port handed out: below it live well-known services.
const floor = 10000

// Loopback returns n distinct 127.0.0.1:port addresses that were free
// when it looked, on ports below the ephemeral range. Where that range
// leaves fewer than 1,000 ports above floor (a kernel tuned to use most
// ports for connections), it falls back to ports the kernel picks, which a
// connection may take while a server is down. It fails when no n free
// ports turn up in 1,000 tries.
func Loopback(n int) ([]string, error) {
	lo, err := ephemeralLow()
	if err != nil {
		return nil, err
	}
	return below(n, lo)
}

// below is Loopback for an ephemeral range that starts at lo.
func below(n, lo int) ([]string, error) {
	if lo-floor < 1000 {
		return fromKernel(n)
	}
	var addrs []string
	seen := map[int]bool{}
	for tries := 0; len(addrs) < n; tries++ {
		if tries == 1000 {
			return nil, fmt.Errorf("freeport: found only %d of %d free ports in [%d, %d)", len(addrs), n, floor, lo)
		}
		p := floor + rand.IntN(lo-floor)
		if seen[p] {
			continue
		}
		seen[p] = true
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		_ = ln.Close()
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// fromKernel returns n distinct free loopback addresses on ports the
// kernel picks, holding each until all are found so that none repeats.
func fromKernel(n int) ([]string, error) {
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("freeport: %w", err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

// Port returns one port as Loopback finds it.
func Port() (int, error) {
	addrs, err := Loopback(1)
	if err != nil {
		return 0, err
	}
	_, p, _ := net.SplitHostPort(addrs[0])
	return strconv.Atoi(p)
}

// ephemeralLow returns the first port of the kernel's ephemeral range:
// Linux's setting, or 32768 (its default) where there is none to read.
func ephemeralLow() (int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if os.IsNotExist(err) {
		return 32768, nil
	}
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, fmt.Errorf("freeport: ip_local_port_range %q: want two ports", b)
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil {
		return 0, fmt.Errorf("freeport: ip_local_port_range %q: %w", b, err)
	}
	return lo, nil
}

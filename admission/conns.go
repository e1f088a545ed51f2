package admission

import (
	"net/netip"
	"sync"
)

// Refusal reasons, used as metric labels and in the answers' bodies.
const (
	ReasonMaxConns      = "max_conns"
	ReasonMaxConnsPerIP = "max_conns_per_ip"
)

// Conns counts open connections against a ceiling for the instance and
// one per client address. The zero value counts without ceilings. It is
// safe for concurrent use.
type Conns struct {
	// Max is the most connections open at once; 0 for no ceiling.
	Max int
	// MaxPerAddr is the most connections open at once from one client
	// address (an IPv4 address, or an IPv6 /64 network: one host commonly
	// holds a whole /64); 0 for no ceiling.
	MaxPerAddr int

	mu     sync.Mutex
	total  int
	byAddr map[netip.Addr]int
}

// Acquire counts a connection from addr and returns "", or, when a ceiling
// is reached, counts nothing and returns the reason (ReasonMaxConns or
// ReasonMaxConnsPerIP). Every successful Acquire must be matched by one
// Release with the same addr.
func (c *Conns) Acquire(addr netip.Addr) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Max > 0 && c.total >= c.Max {
		return ReasonMaxConns
	}
	if c.MaxPerAddr > 0 {
		addr = addrKey(addr)
		if c.byAddr[addr] >= c.MaxPerAddr {
			return ReasonMaxConnsPerIP
		}
		if c.byAddr == nil {
			c.byAddr = make(map[netip.Addr]int)
		}
		c.byAddr[addr]++
	}
	c.total++
	return ""
}

// Release uncounts a connection from addr that Acquire counted.
func (c *Conns) Release(addr netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.MaxPerAddr > 0 {
		addr = addrKey(addr)
		if n := c.byAddr[addr] - 1; n > 0 {
			c.byAddr[addr] = n
		} else {
			delete(c.byAddr, addr)
		}
	}
}

// Open returns the number of connections counted now.
func (c *Conns) Open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Addrs returns the number of client addresses with a connection counted,
// when there is a per-address ceiling (0 otherwise).
func (c *Conns) Addrs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byAddr)
}

// addrKey is what addr is counted under: itself, or for IPv6 its /64.
func addrKey(addr netip.Addr) netip.Addr {
	if addr.Is6() && !addr.Is4In6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}

package admission

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	ps, err := ParseProxies("10.0.0.0/8, 192.168.1.7 ,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		want       string
	}{
		{"untrusted peer, no header", "203.0.113.5:4000", nil, "203.0.113.5"},
		{"untrusted peer's header is ignored", "203.0.113.5:4000", []string{"198.51.100.1"}, "203.0.113.5"},
		{"trusted peer without header", "10.1.2.3:4000", nil, "10.1.2.3"},
		{"trusted peer names the client", "10.1.2.3:4000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"spoofed left entries are skipped", "10.1.2.3:4000", []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", "10.1.2.3:4000", []string{"198.51.100.1, 192.168.1.7, 10.9.9.9"}, "198.51.100.1"},
		{"several header lines", "10.1.2.3:4000", []string{"1.1.1.1", "198.51.100.1, 10.9.9.9"}, "198.51.100.1"},
		{"all trusted", "10.1.2.3:4000", []string{"10.5.5.5, 10.6.6.6"}, "10.5.5.5"},
		{"entry with port", "10.1.2.3:4000", []string{"198.51.100.1:5555"}, "198.51.100.1"},
		{"IPv6 entry", "[fd00::1]:4000", []string{"[2001:db8::1]"}, "2001:db8::1"},
		{"garbage stops the walk at the last trusted hop", "10.1.2.3:4000", []string{"198.51.100.1, junk"}, "10.1.2.3"},
		{"mapped peer", "[::ffff:10.1.2.3]:4000", []string{"198.51.100.1"}, "198.51.100.1"},
	} {
		r := &http.Request{RemoteAddr: tc.peer, Header: http.Header{}}
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := ps.ClientAddr(r); got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: got %v, want %s", tc.name, got, tc.want)
		}
	}
	var none Proxies
	r := &http.Request{RemoteAddr: "10.1.2.3:4000", Header: http.Header{"X-Forwarded-For": {"198.51.100.1"}}}
	if got := none.ClientAddr(r); got != netip.MustParseAddr("10.1.2.3") {
		t.Errorf("no trusted proxies: got %v", got)
	}
}

func TestParseProxiesRefusesGarbage(t *testing.T) {
	for _, s := range []string{"10.0.0.0/33", "example.com", "10.0.0.1/x", "fe80::1%eth0"} {
		if _, err := ParseProxies(s); err == nil {
			t.Errorf("ParseProxies(%q) accepted", s)
		}
	}
}

func TestConnsCeilings(t *testing.T) {
	c := &Conns{Max: 3, MaxPerAddr: 2}
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	for i := range 1000 {
		for range 2 {
			if got := c.Acquire(a); got != "" {
				t.Fatalf("cycle %d: one of two from one address refused: %q", i, got)
			}
		}
		if got := c.Acquire(a); got != ReasonMaxConnsPerIP {
			t.Fatalf("cycle %d: third from one address: %q", i, got)
		}
		if c.Acquire(b) != "" {
			t.Fatalf("cycle %d: other address refused", i)
		}
		if got := c.Acquire(b); got != ReasonMaxConns {
			t.Fatalf("cycle %d: fourth overall: %q", i, got)
		}
		c.Release(a)
		c.Release(a)
		c.Release(b)
	}
	if c.Open() != 0 || c.Addrs() != 0 {
		t.Fatalf("after the cycles: %d open over %d addresses", c.Open(), c.Addrs())
	}
}

// IPv6 clients are counted per /64: one host commonly holds a whole one.
func TestConnsIPv6Per64(t *testing.T) {
	c := &Conns{MaxPerAddr: 2}
	if c.Acquire(netip.MustParseAddr("2001:db8:1:2::1")) != "" || c.Acquire(netip.MustParseAddr("2001:db8:1:2:ffff::9")) != "" {
		t.Fatal("refused under the ceiling")
	}
	if got := c.Acquire(netip.MustParseAddr("2001:db8:1:2:abcd::1")); got != ReasonMaxConnsPerIP {
		t.Fatalf("third address of one /64: %q, want refused", got)
	}
	if got := c.Acquire(netip.MustParseAddr("2001:db8:1:3::1")); got != "" {
		t.Fatalf("another /64: %q", got)
	}
	c.Release(netip.MustParseAddr("2001:db8:1:2::1"))
	c.Release(netip.MustParseAddr("2001:db8:1:2:ffff::9"))
	c.Release(netip.MustParseAddr("2001:db8:1:3::1"))
	if c.Open() != 0 || c.Addrs() != 0 {
		t.Fatalf("after release: %d open over %d keys", c.Open(), c.Addrs())
	}
}

package switchboard

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestPickInterfaceAddress(t *testing.T) {
	t.Parallel()
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	tests := []struct {
		name   string
		addrs  []netip.Addr
		onlyV4 bool
		want   string
	}{
		{"None", nil, false, "127.0.0.1"},
		{"OnlyLinkLocal", addrs("fe80::1", "169.254.3.4"), false, "127.0.0.1"},
		{"OnlyLoopback", addrs("127.0.0.1", "::1"), false, "127.0.0.1"},
		{"PrivateIPv4", addrs("fe80::1", "10.1.2.3"), false, "10.1.2.3"},
		{"FirstPrivateWins", addrs("192.168.1.5", "10.1.2.3"), false, "192.168.1.5"},
		{"PrivateBeforeGlobal", addrs("203.0.113.7", "172.16.0.9"), false, "172.16.0.9"},
		{"GlobalIPv4", addrs("fd00::2", "192.0.2.2", "fe80::fc:ff:fe00:1"), false, "192.0.2.2"},
		{"IPv6WhenNoIPv4", addrs("fe80::1", "2001:db8::5"), false, "2001:db8::5"},
		{"ULA", addrs("fd00::2"), false, "fd00::2"},
		{"IPv4ListenerSkipsIPv6", addrs("2001:db8::5"), true, "127.0.0.1"},
		{"MappedIPv4", addrs("::ffff:10.0.0.7"), true, "10.0.0.7"},
		{"Multicast", addrs("224.0.0.1", "ff02::1"), false, "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := pickInterfaceAddress(tt.addrs, tt.onlyV4); got.String() != tt.want {
				t.Errorf("pickInterfaceAddress(%v, %v) = %v, want %s", tt.addrs, tt.onlyV4, got, tt.want)
			}
		})
	}
}

// A listener on a specific address is advertised as it is; a wildcard one
// as an address of this machine with the bound port, never the wildcard.
func TestAdvertisedAddress(t *testing.T) {
	t.Parallel()
	tcp := func(ip string, port int) *net.TCPAddr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	for _, bound := range []*net.TCPAddr{tcp("127.0.0.1", 8080), tcp("10.0.0.5", 9000), tcp("::1", 8080), tcp("2001:db8::1", 443)} {
		if got := advertisedAddress(bound); got != bound.String() {
			t.Errorf("advertisedAddress(%v) = %q, want it unchanged", bound, got)
		}
	}
	for _, bound := range []*net.TCPAddr{tcp("0.0.0.0", 28081), tcp("::", 28081), {Port: 28081}} {
		got := advertisedAddress(bound)
		ap, err := netip.ParseAddrPort(got)
		if err != nil || ap.Addr().IsUnspecified() || ap.Port() != 28081 {
			t.Errorf("advertisedAddress(%v) = %q, want an address of this machine with port 28081", bound, got)
		}
		if bound.IP.To4() != nil && !ap.Addr().Is4() {
			t.Errorf("advertisedAddress(%v) = %q, want IPv4 for an IPv4 listener", bound, got)
		}
	}
	unix := &net.UnixAddr{Name: "/run/sb.sock", Net: "unix"}
	if got := advertisedAddress(unix); !strings.HasSuffix(got, "sb.sock") {
		t.Errorf("advertisedAddress(%v) = %q, want the socket's name", unix, got)
	}
}

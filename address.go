package switchboard

import (
	"net"
	"net/netip"
)

// advertisedAddress returns the address shown for an instance that listens
// on bound, when Config.Address does not name one. A listener on a
// specific address is reached there. A wildcard listener (:8080, 0.0.0.0,
// [::]) is not reachable at the wildcard, so the instance shows an address
// of one of its network interfaces with the bound port: see
// pickInterfaceAddress for which one. The host name is not used: it often
// does not resolve to an address that others can reach (Debian maps it to
// 127.0.1.1, and a container's or pod's name is rarely in DNS).
func advertisedAddress(bound net.Addr) string {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return bound.String()
	}
	ip := netip.IPv6Unspecified() // a nil IP is the wildcard too
	if len(tcp.IP) > 0 {
		var ok bool
		if ip, ok = netip.AddrFromSlice(tcp.IP); !ok || !ip.Unmap().IsUnspecified() {
			return bound.String()
		}
	}
	onlyV4 := ip.Is4() || ip.Is4In6()
	return netip.AddrPortFrom(pickInterfaceAddress(interfaceAddresses(), onlyV4), uint16(tcp.Port)).String()
}

// interfaceAddresses returns the unicast addresses of the network
// interfaces that are up and running, not loopback, in the order of the
// interfaces (the kernel's index: the first configured first).
func interfaceAddresses() []netip.Addr {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagRunning == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out = append(out, p.Addr())
			}
		}
	}
	return out
}

// pickInterfaceAddress chooses the address to advertise among an
// instance's interface addresses, in their order: a private IPv4 address
// (10/8, 172.16/12, 192.168/16) first, as peers in one deployment usually
// share a private network; then another global IPv4 address; then, unless
// onlyV4 (the listener takes IPv4 only), a global IPv6 address. Loopback,
// link-local and multicast addresses are never chosen. Without any, it is
// the IPv4 loopback address: an isolated machine is reached only from
// itself.
func pickInterfaceAddress(addrs []netip.Addr, onlyV4 bool) netip.Addr {
	rank := func(a netip.Addr) int {
		switch {
		case !a.IsGlobalUnicast():
			return 0 // loopback, link-local, multicast, unspecified
		case a.Is4() && a.IsPrivate():
			return 3
		case a.Is4():
			return 2
		case !onlyV4:
			return 1
		}
		return 0
	}
	best, bestRank := netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if r := rank(a); r > bestRank {
			best, bestRank = a, r
		}
	}
	return best
}

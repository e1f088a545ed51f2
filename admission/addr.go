package admission

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies is a list of trusted proxies: addresses and networks whose
// X-Forwarded-For and X-Forwarded-Host headers are believed. The zero
// value trusts nobody.
type Proxies []netip.Prefix

// ParseProxies parses a comma-separated list of IP addresses and CIDR
// networks, such as "10.0.0.0/8, 192.168.1.7, fd00::/8". Empty entries are
// skipped.
func ParseProxies(s string) (Proxies, error) {
	var ps Proxies
	for e := range strings.SplitSeq(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if strings.Contains(e, "/") {
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR network", e)
			}
			ps = append(ps, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address or CIDR network", e)
		}
		a = a.Unmap()
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	return ps, nil
}

// Trusted reports whether a is a trusted proxy.
func (ps Proxies) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Peer returns the TCP peer of r (its RemoteAddr), or the zero Addr when
// that is not an IP address and port.
func Peer(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// ClientAddr returns the address of r's client: the TCP peer, unless the
// peer is a trusted proxy; then, walking X-Forwarded-For from the right
// (the entry the nearest proxy added), the first address that is not a
// trusted proxy. If every entry is a trusted proxy, the left-most one is
// the client. An entry that is not an IP address ends the walk: the
// address reached before it (a trusted proxy) is returned, since nothing
// to its left can be believed.
func (ps Proxies) ClientAddr(r *http.Request) netip.Addr {
	peer := Peer(r)
	if len(ps) == 0 || !peer.IsValid() || !ps.Trusted(peer) {
		return peer
	}
	var entries []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		entries = append(entries, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(entries) - 1; i >= 0; i-- {
		a, ok := parseForwarded(entries[i])
		if !ok {
			return client
		}
		client = a
		if !ps.Trusted(a) {
			return a
		}
	}
	return client
}

// ForwardedHost returns the host a trusted proxy says the client asked
// for (the left-most X-Forwarded-Host entry, set by the first proxy), or
// "" when the peer is not a trusted proxy or said nothing.
func (ps Proxies) ForwardedHost(r *http.Request) string {
	if len(ps) == 0 || !ps.Trusted(Peer(r)) {
		return ""
	}
	v := r.Header.Get("X-Forwarded-Host")
	first, _, _ := strings.Cut(v, ",")
	return strings.TrimSpace(first)
}

// parseForwarded parses one X-Forwarded-For entry: an IP address,
// optionally with a port ("1.2.3.4:5678", "[::1]:5678") or in brackets.
func parseForwarded(e string) (netip.Addr, bool) {
	e = strings.TrimSpace(e)
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(e, "["), "]")); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(e); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

package main

import (
	"net"
	"net/netip"
	"testing"
)

// registryAddress returns the address GET /api/instances shows for in.
func (in *instance) registryAddress(t *testing.T) string {
	t.Helper()
	var l instanceList
	in.getJSON(t, "/api/instances", &l)
	for _, e := range l.Instances {
		if e.ID == in.id {
			return e.Address
		}
	}
	t.Fatalf("GET /api/instances on %s = %+v, want %s listed", in.name, l, in.id)
	return ""
}

// An instance that listens on a wildcard address shows an address of this
// machine in the registry, with the port it is bound to, rather than the
// wildcard; one that listens on a specific address shows that one; and
// --advertise overrides both.
func TestProcess_AdvertisedAddress(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	t.Run("Wildcard", func(t *testing.T) {
		t.Parallel()
		in := startInstanceAt(t, "wild", ":0")
		got := in.registryAddress(t)
		ap, err := netip.ParseAddrPort(got)
		if err != nil || ap.Addr().IsUnspecified() {
			t.Fatalf("registry address of an instance on --listen :0 = %q, want a reachable host:port", got)
		}
		_, port, _ := net.SplitHostPort(in.addr)
		if _, gotPort, _ := net.SplitHostPort(got); gotPort != port {
			t.Errorf("registry address = %q, want the bound port %s", got, port)
		}
		if !localAddress(t, ap.Addr()) {
			t.Errorf("registry address = %q, not an address of this machine", got)
		}
	})
	t.Run("SpecificAddress", func(t *testing.T) {
		t.Parallel()
		in := startInstance(t, "specific")
		if got := in.registryAddress(t); got != in.addr {
			t.Errorf("registry address of an instance on 127.0.0.1:0 = %q, want %q", got, in.addr)
		}
	})
	t.Run("Flag", func(t *testing.T) {
		t.Parallel()
		in := startInstance(t, "flag", "--advertise", "sb-1.internal:9000")
		if got := in.registryAddress(t); got != "sb-1.internal:9000" {
			t.Errorf("registry address with --advertise sb-1.internal:9000 = %q", got)
		}
	})
}

// localAddress reports whether ip is one of this machine's interface
// addresses.
func localAddress(t *testing.T, ip netip.Addr) bool {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().WithZone("") == ip {
			return true
		}
	}
	return false
}

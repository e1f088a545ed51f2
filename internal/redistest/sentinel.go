package redistest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Sentinel is a Sentinel-managed Redis on loopback owned by a test: a
// primary, one replica and three sentinels (quorum 2) that fail over within
// seconds, all stopped when the test ends.
type Sentinel struct {
	t testing.TB
	// Master is the name the sentinels monitor the primary under.
	Master string
	// Data are the two data servers: Data[0] started as the primary,
	// Data[1] as its replica. Failovers swap their roles (see Primary).
	Data      [2]*Server
	Sentinels []*Server
}

// SentinelDownAfter is how long the sentinels wait before they consider
// an unresponsive primary down.
const SentinelDownAfter = time.Second

// StartSentinel starts a primary, its replica and three sentinels
// (redis-server --sentinel) on free loopback ports, and waits until the
// replica is in sync and every sentinel knows the replica and the two
// other sentinels, so that a failover can start at once.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s := &Sentinel{t: t, Master: "sbmaster"}
	sync := []string{"--repl-diskless-sync-delay", "0"}
	s.Data[0] = Start(t, sync...)
	host, port, _ := net.SplitHostPort(s.Data[0].Addr)
	s.Data[1] = Start(t, append(sync, "--replicaof", host, port)...)
	for range 3 {
		s.Sentinels = append(s.Sentinels, s.startSentinel(host, port))
	}
	s.waitReady()
	return s
}

// startSentinel starts one sentinel monitoring host:port.
func (s *Sentinel) startSentinel(host, port string) *Server {
	s.t.Helper()
	return startWith(s.t, func(srv *Server) []string {
		conf := filepath.Join(srv.dir, "sentinel.conf")
		text := strings.Join([]string{
			"port " + srv.port(),
			"bind 127.0.0.1",
			"protected-mode no",
			"dir " + srv.dir,
			fmt.Sprintf("sentinel monitor %s %s %s 2", s.Master, host, port),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", s.Master, SentinelDownAfter.Milliseconds()),
			// A failed election is tried again after twice this.
			fmt.Sprintf("sentinel failover-timeout %s 3000", s.Master),
			"",
		}, "\n")
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			s.t.Fatal(err)
		}
		// Sentinel rewrites its configuration file, so it gets one of
		// its own.
		return []string{conf, "--sentinel"}
	})
}

// waitReady waits until the replica is in sync and every sentinel sees one
// replica and two other sentinels.
func (s *Sentinel) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		why := ""
		if st := s.Data[1].Info("replication", "master_link_status"); st != "up" {
			why = "replica link " + st
		}
		for _, sn := range s.Sentinels {
			if why != "" {
				break
			}
			kv, err := sn.Strings("SENTINEL", "MASTER", s.Master)
			if err != nil {
				why = err.Error()
				break
			}
			m := pairs(kv)
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				why = fmt.Sprintf("sentinel %s sees %s replicas and %s other sentinels", sn.Addr, m["num-slaves"], m["num-other-sentinels"])
			}
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("sentinels not ready after %v: %s", clusterWait, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pairs turns a flat key, value, key, value list into a map.
func pairs(kv []string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Addrs returns the sentinels as a comma-separated list of host:port, the
// form --redis takes with --redis-sentinel.
func (s *Sentinel) Addrs() string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr
	}
	return strings.Join(addrs, ",")
}

// Primary returns the data server the sentinels name as the primary now.
func (s *Sentinel) Primary() *Server {
	s.t.Helper()
	for _, sn := range s.Sentinels {
		hp, err := sn.Strings("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Master)
		if err != nil || len(hp) != 2 {
			continue
		}
		addr := net.JoinHostPort(hp[0], hp[1])
		for _, d := range s.Data {
			if d.Addr == addr {
				return d
			}
		}
		s.t.Fatalf("the sentinels name %s as the primary, not a server of the test", addr)
	}
	s.t.Fatal("no sentinel answered GET-MASTER-ADDR-BY-NAME")
	return nil
}

// WaitPrimary waits until every sentinel names d as the primary and d
// reports the master role.
func (s *Sentinel) WaitPrimary(d *Server) {
	s.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		ok := d.Info("replication", "role") == "master"
		for _, sn := range s.Sentinels {
			if !sn.Running() {
				continue
			}
			hp, err := sn.Strings("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.Master)
			if err != nil || len(hp) != 2 || net.JoinHostPort(hp[0], hp[1]) != d.Addr {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s did not become the primary within %v", d.Addr, clusterWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Other returns the data server that is not d.
func (s *Sentinel) Other(d *Server) *Server {
	if s.Data[0] == d {
		return s.Data[1]
	}
	return s.Data[0]
}

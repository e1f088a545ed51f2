package redistest_test

import (
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

func TestStartRestart(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do("GET", "k"); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want v", got, err)
	}
	s.Restart()
	// No persistence: a restarted server is empty.
	if got, err := s.Do("GET", "k"); err != nil || got != "" {
		t.Fatalf("GET k after restart = %q, %v; want empty", got, err)
	}
	s.Stop()
	if err := s.Ping(); err == nil {
		t.Fatal("PING succeeded after Stop")
	}
}

func TestStartCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, "--cluster-node-timeout", "1000")
	masters := c.Masters()
	if len(masters) != 3 {
		t.Fatalf("Masters() = %d servers, want 3", len(masters))
	}
	// Every master takes writes for its own slots only.
	for _, key := range []string{"a", "b", "c", "{room}:meta"} {
		m := c.MasterOf(key)
		if _, err := m.Do("SET", key, "v"); err != nil {
			t.Errorf("SET %s on its master %s: %v", key, m.Addr, err)
		}
		for _, other := range masters {
			if other == m {
				continue
			}
			if _, err := other.Do("SET", key, "v"); err == nil || !strings.Contains(err.Error(), "MOVED") {
				t.Errorf("SET %s on %s, not its master: %v, want MOVED", key, other.Addr, err)
			}
		}
	}
	// A killed master's replica takes over.
	m := c.MasterOf("a")
	r := c.ReplicaOf(m)
	if r == nil {
		nodes, err := c.Topology()
		t.Fatalf("master %s has no replica: %+v %v", m.Addr, nodes, err)
	}
	m.WaitReplicated()
	m.Stop()
	c.WaitMaster(r)
	c.WaitHealthy()
	if got, err := r.Do("GET", "a"); err != nil || got != "v" {
		t.Errorf("GET a on the new master = %q, %v; want v", got, err)
	}
}

func TestStartSentinel(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)
	p := s.Primary()
	if p != s.Data[0] {
		t.Fatalf("Primary() = %s, want the first data server %s", p.Addr, s.Data[0].Addr)
	}
	if _, err := p.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if got := s.Data[1].Info("replication", "role"); got != "slave" {
		t.Fatalf("second data server's role = %q, want slave", got)
	}
	p.Stop()
	s.WaitPrimary(s.Data[1])
	if got, err := s.Data[1].Do("GET", "k"); err != nil || got != "v" {
		t.Errorf("GET k on the new primary = %q, %v; want v", got, err)
	}
}

package redistest

import (
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/freeport"
)

// Cluster is a Redis Cluster on loopback owned by a test: three masters,
// each with one replica, without persistence, stopped when the test ends.
type Cluster struct {
	t testing.TB
	// Nodes are the servers in the order they were started; which of them
	// are masters changes with failovers (see Masters).
	Nodes []*Server
}

// Defaults of the clusters StartCluster starts.
const (
	clusterMasters = 3
	// DefaultNodeTimeout is the cluster-node-timeout of a cluster started
	// without one: long enough that a loaded test machine does not fail
	// nodes over by itself.
	DefaultNodeTimeout = 5 * time.Second
	// clusterWait bounds the waits for a healthy cluster.
	clusterWait = 60 * time.Second
)

// StartCluster starts six cluster-enabled redis-servers on free loopback
// ports (each with a free cluster bus port of its own), makes them a
// cluster of three masters with one replica each (redis-cli --cluster
// create), and waits until every node reports cluster_state:ok, agrees on
// the slots and every replica is in sync. Extra arguments go to every
// redis-server; "--cluster-node-timeout", "1000" makes failovers fast.
func StartCluster(t testing.TB, extra ...string) *Cluster {
	t.Helper()
	cli := lookPath(t, "redis-cli")
	c := &Cluster{t: t}
	args := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(DefaultNodeTimeout.Milliseconds(), 10),
		// Replicas sync at once rather than after the default 5s wait for
		// more replicas, so that the cluster is failover-ready sooner.
		"--repl-diskless-sync-delay", "0", "--logfile", "redis.log"}
	for range 2 * clusterMasters {
		c.Nodes = append(c.Nodes, startWith(t, func(s *Server) []string {
			bus, err := freeport.Port()
			if err != nil {
				t.Fatal(err)
			}
			node := append([]string{"--port", s.port(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
				"--dir", s.dir, "--protected-mode", "no", "--cluster-port", strconv.Itoa(bus)}, args...)
			return append(node, extra...)
		}))
	}
	create := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		create = append(create, n.Addr)
	}
	create = append(create, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	return c
}

// Seeds returns every node as a comma-separated list of redis:// URLs, the
// form --redis takes with --redis-cluster.
func (c *Cluster) Seeds() string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// ClusterNode is one line of CLUSTER NODES.
type ClusterNode struct {
	ID, Addr string
	Master   bool
	Failed   bool   // flagged fail or fail?
	MasterID string // of a replica
	Slots    [][2]int
}

// Topology reads CLUSTER NODES from the first node that answers.
func (c *Cluster) Topology() ([]ClusterNode, error) {
	var last error
	for _, n := range c.Nodes {
		text, err := n.Do("CLUSTER", "NODES")
		if err != nil {
			last = err
			continue
		}
		return parseClusterNodes(text), nil
	}
	return nil, fmt.Errorf("no node answered CLUSTER NODES: %w", last)
}

func parseClusterNodes(text string) []ClusterNode {
	var nodes []ClusterNode
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := ClusterNode{ID: f[0], Addr: addr, MasterID: strings.TrimPrefix(f[3], "-")}
		for flag := range strings.SplitSeq(f[2], ",") {
			switch flag {
			case "master":
				n.Master = true
			case "fail", "fail?":
				n.Failed = true
			}
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, ok := strings.Cut(r, "-")
			if !ok {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil {
				n.Slots = append(n.Slots, [2]int{a, b})
			}
		}
		nodes = append(nodes, n)
	}
	return nodes
}

// server returns the node listening on addr, or nil.
func (c *Cluster) server(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// Masters returns the masters that serve slots now, in slot order.
func (c *Cluster) Masters() []*Server {
	c.t.Helper()
	nodes, err := c.Topology()
	if err != nil {
		c.t.Fatal(err)
	}
	var masters []ClusterNode
	for _, n := range nodes {
		if n.Master && !n.Failed && len(n.Slots) > 0 {
			masters = append(masters, n)
		}
	}
	slices.SortFunc(masters, func(x, y ClusterNode) int { return x.Slots[0][0] - y.Slots[0][0] })
	out := make([]*Server, 0, len(masters))
	for _, m := range masters {
		if s := c.server(m.Addr); s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Slot returns the hash slot of key.
func (c *Cluster) Slot(key string) int {
	c.t.Helper()
	for _, n := range c.Nodes {
		if v, err := n.Do("CLUSTER", "KEYSLOT", key); err == nil {
			slot, err := strconv.Atoi(v)
			if err != nil {
				c.t.Fatalf("CLUSTER KEYSLOT %q = %q", key, v)
			}
			return slot
		}
	}
	c.t.Fatal("no node answered CLUSTER KEYSLOT")
	return 0
}

// MasterOf returns the master that serves key's slot now.
func (c *Cluster) MasterOf(key string) *Server {
	c.t.Helper()
	slot := c.Slot(key)
	nodes, err := c.Topology()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, n := range nodes {
		if !n.Master || n.Failed {
			continue
		}
		for _, r := range n.Slots {
			if slot >= r[0] && slot <= r[1] {
				if s := c.server(n.Addr); s != nil {
					return s
				}
			}
		}
	}
	c.t.Fatalf("no master serves slot %d of %q", slot, key)
	return nil
}

// ReplicaOf returns a replica of master, or nil.
func (c *Cluster) ReplicaOf(master *Server) *Server {
	c.t.Helper()
	nodes, err := c.Topology()
	if err != nil {
		c.t.Fatal(err)
	}
	var id string
	for _, n := range nodes {
		if n.Addr == master.Addr {
			id = n.ID
		}
	}
	for _, n := range nodes {
		if !n.Master && n.MasterID == id && !n.Failed {
			return c.server(n.Addr)
		}
	}
	return nil
}

// WaitHealthy waits until every running node reports cluster_state:ok and
// sees three masters covering all 16384 slots with no failed node among
// the running ones, and every running replica's link to its master is up.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for {
		why := c.unhealthy()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster not healthy after %v: %s", clusterWait, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) unhealthy() string {
	for _, s := range c.Nodes {
		if !s.Running() {
			continue
		}
		if st := s.field("cluster_state", "CLUSTER", "INFO"); st != "ok" {
			return fmt.Sprintf("%s: cluster_state %q", s.Addr, st)
		}
		text, err := s.Do("CLUSTER", "NODES")
		if err != nil {
			return fmt.Sprintf("%s: CLUSTER NODES: %v", s.Addr, err)
		}
		masters, slots := 0, 0
		for _, n := range parseClusterNodes(text) {
			if n.Failed {
				if srv := c.server(n.Addr); srv != nil && srv.Running() {
					return fmt.Sprintf("%s sees running node %s as failed", s.Addr, n.Addr)
				}
				continue
			}
			if n.Master && len(n.Slots) == 0 {
				// Gossip has not told this node yet that n is a replica.
				return fmt.Sprintf("%s sees %s as a master without slots", s.Addr, n.Addr)
			}
			if n.Master {
				masters++
				for _, r := range n.Slots {
					slots += r[1] - r[0] + 1
				}
			}
		}
		if masters != clusterMasters || slots != 16384 {
			return fmt.Sprintf("%s sees %d masters serving %d slots", s.Addr, masters, slots)
		}
		// Every running node is a master serving slots or a replica in
		// sync with one.
		self := parseClusterNodes(text)
		if i := slices.IndexFunc(self, func(n ClusterNode) bool { return n.Addr == s.Addr }); i >= 0 && self[i].Master && len(self[i].Slots) > 0 {
			continue
		}
		if s.Info("replication", "role") != "slave" || s.Info("replication", "master_link_status") != "up" {
			return fmt.Sprintf("%s is neither a master serving slots nor a replica in sync", s.Addr)
		}
	}
	return ""
}

// WaitMaster waits until replica has taken over as a master serving slots
// (after its master failed) and the cluster is healthy again apart from
// stopped nodes.
func (c *Cluster) WaitMaster(replica *Server) {
	c.t.Helper()
	deadline := time.Now().Add(clusterWait)
	for !slices.Contains(c.Masters(), replica) {
		if time.Now().After(deadline) {
			c.t.Fatalf("replica %s did not take over within %v", replica.Addr, clusterWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// MoveSlot migrates slot, with its keys, to the master to, as resharding
// does (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE).
func (c *Cluster) MoveSlot(slot int, to *Server) {
	c.t.Helper()
	nodes, err := c.Topology()
	if err != nil {
		c.t.Fatal(err)
	}
	var src *Server
	var srcID, dstID string
	for _, n := range nodes {
		if n.Addr == to.Addr {
			dstID = n.ID
		}
		if !n.Master || n.Failed {
			continue
		}
		for _, r := range n.Slots {
			if slot >= r[0] && slot <= r[1] {
				src, srcID = c.server(n.Addr), n.ID
			}
		}
	}
	if src == nil || dstID == "" {
		c.t.Fatalf("move slot %d to %s: owner or target unknown", slot, to.Addr)
	}
	if src == to {
		return
	}
	s := strconv.Itoa(slot)
	must := func(srv *Server, args ...string) []string {
		c.t.Helper()
		out, err := srv.Strings(args...)
		if err != nil {
			c.t.Fatalf("%s on %s: %v", strings.Join(args, " "), srv.Addr, err)
		}
		return out
	}
	masters := c.Masters()
	must(to, "CLUSTER", "SETSLOT", s, "IMPORTING", srcID)
	must(src, "CLUSTER", "SETSLOT", s, "MIGRATING", dstID)
	host, port, _ := strings.Cut(to.Addr, ":")
	for {
		keys := must(src, "CLUSTER", "GETKEYSINSLOT", s, "100")
		if len(keys) == 0 {
			break
		}
		must(src, append([]string{"MIGRATE", host, port, "", "0", "5000", "KEYS"}, keys...)...)
	}
	for _, m := range masters {
		must(m, "CLUSTER", "SETSLOT", s, "NODE", dstID)
	}
}

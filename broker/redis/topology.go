package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// slotCount is the number of hash slots of Redis Cluster.
const slotCount = 16384

// topology maps hash slots onto shards. On one Redis (or with Sentinel)
// one shard owns every slot.
type topology struct {
	ranges []slotRange // sorted by lo, covering what the cluster serves
}

// slotRange is a run of slots served by one shard.
type slotRange struct {
	lo, hi int
	s      *shard
}

// owner returns the shard that serves slot, or nil while no shard does (a
// cluster whose master failed, before a replica took over).
func (t *topology) owner(slot int) *shard {
	i, found := slices.BinarySearchFunc(t.ranges, slot, func(r slotRange, slot int) int {
		switch {
		case r.hi < slot:
			return -1
		case r.lo > slot:
			return 1
		}
		return 0
	})
	if !found {
		return nil
	}
	return t.ranges[i].s
}

// owns reports whether s serves slot.
func (t *topology) owns(s *shard, slot int) bool { return t.owner(slot) == s }

// slotOf returns the hash slot of a key or channel name (its hash tag's
// when it has one), as Redis Cluster computes it.
func (b *Broker) slotOf(name string) int {
	// rueidis computes slots (CRC16) for cluster clients only; SetSlot does
	// it for any command.
	cmd := b.client.B().Ping().Build().SetSlot(name)
	return int(cmd.Slot() & (slotCount - 1))
}

// roomSlot returns the hash slot of room's keys and channel.
func (b *Broker) roomSlot(room string) int { return b.slotOf(b.channel(room)) }

// shardList returns the current shards.
func (b *Broker) shardList() []*shard {
	b.shardsMu.Lock()
	defer b.shardsMu.Unlock()
	return slices.Collect(maps.Values(b.shards))
}

// startShards creates the shards (one, or one per cluster master) and
// waits until each has connected once, so that New returns a Broker that
// can subscribe at once.
func (b *Broker) startShards(ctx context.Context) error {
	if !b.cluster {
		s := b.addShard("", b.client)
		b.topo.Store(&topology{ranges: []slotRange{{0, slotCount - 1, s}}})
		b.startShard(s)
	} else if err := b.refreshTopology(ctx); err != nil {
		return err
	}
	for _, s := range b.shardList() {
		select {
		case <-s.started:
		case <-ctx.Done():
			return fmt.Errorf("subscribe on %s: %w", s.name(), errors.Join(broker.ErrUnavailable, ctx.Err()))
		}
	}
	return nil
}

// addShard creates the shard of a server; startShard starts it once the
// topology names it.
func (b *Broker) addShard(addr string, client rueidis.Client) *shard {
	s := newShard(b, addr, client)
	b.shardsMu.Lock()
	b.shards[addr] = s
	b.shardsMu.Unlock()
	return s
}

func (b *Broker) startShard(s *shard) {
	b.wg.Go(func() { s.run(b.runCtx) })
	b.wg.Go(func() { s.catchUps.run(b.runCtx) })
}

// askRefresh asks the topology watcher to read the cluster's topology
// again soon.
func (b *Broker) askRefresh() {
	if !b.cluster {
		return
	}
	select {
	case b.refreshes <- struct{}{}:
	default:
	}
}

// watchTopology follows the cluster's topology: it reads it when asked
// (a shard lost its connection or saw a redirection), every quarter probe
// interval while a shard is down (so that rooms move to a promoted replica
// soon after the cluster has promoted it), and every tenth interval
// otherwise.
func (b *Broker) watchTopology(ctx context.Context) {
	tick := time.NewTicker(max(b.cfg.ProbeInterval/4, time.Millisecond))
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.refreshes:
		case <-tick.C:
			n++
			if n%40 != 0 && b.allLive() {
				continue
			}
		}
		if err := b.refreshTopology(ctx); err != nil {
			b.log.Debug("read cluster topology", "err", err)
		}
	}
}

// allLive reports whether every shard's pub/sub connection is up.
func (b *Broker) allLive() bool {
	for _, s := range b.shardList() {
		if !s.live.Load() {
			return false
		}
	}
	return true
}

// refreshTopology reads which master serves which slots (CLUSTER SLOTS)
// and brings the shards in line: a master not seen before gets a shard;
// rooms whose slot another shard serves now move there (their new shard
// subscribes them and catches them up from history); a shard left without
// slots stops.
func (b *Broker) refreshTopology(ctx context.Context) error {
	ranges, err := b.clusterSlots(ctx)
	if err != nil {
		return err
	}
	old := b.topo.Load()
	if old != nil && sameRanges(old.ranges, ranges) {
		return nil
	}
	b.moveMu.Lock()
	defer b.moveMu.Unlock()
	t := &topology{}
	var added []*shard
	for _, r := range ranges {
		b.shardsMu.Lock()
		s := b.shards[r.addr]
		b.shardsMu.Unlock()
		if s == nil {
			client, err := b.nodeClient(r.addr)
			if err != nil {
				b.log.Warn("connect to cluster node", "addr", r.addr, "err", err)
				continue // not served for now; the next refresh tries again
			}
			s = b.addShard(r.addr, client)
			added = append(added, s)
		}
		t.ranges = append(t.ranges, slotRange{r.lo, r.hi, s})
	}
	b.topo.Store(t)
	for _, s := range added {
		b.startShard(s)
	}
	if old != nil {
		b.log.Info("cluster topology changed", "shards", len(t.ranges))
	}

	// Move the rooms whose slots changed hands. Shards refuse calls for
	// rooms they do not own from now on (they check b.topo), so no room
	// is added to a shard that lost it after it was released.
	moved := make(map[*shard]map[string]handlerSet)
	for _, s := range b.shardList() {
		for room, hs := range s.release(ctx, t) {
			to := t.owner(b.roomSlot(room))
			if moved[to] == nil {
				moved[to] = make(map[string]handlerSet)
			}
			moved[to][room] = hs
		}
	}
	for to, rooms := range moved {
		to.adopt(ctx, rooms)
	}
	// A shard that serves nothing any more and holds no room stops.
	for _, s := range b.shardList() {
		if slices.ContainsFunc(t.ranges, func(r slotRange) bool { return r.s == s }) || s.holdsRooms(ctx) {
			continue
		}
		b.shardsMu.Lock()
		delete(b.shards, s.addr)
		b.shardsMu.Unlock()
		s.stop()
		b.do(func(d *dispatcher) { d.forgetShard(s) })
		s.closeClient()
		b.log.Info("cluster node left the topology", "addr", s.addr)
	}
	return nil
}

// nodeRange is a run of slots and the address of the master serving it.
type nodeRange struct {
	lo, hi int
	addr   string
}

func sameRanges(cur []slotRange, next []nodeRange) bool {
	return slices.EqualFunc(cur, next, func(c slotRange, n nodeRange) bool {
		return c.lo == n.lo && c.hi == n.hi && c.s.addr == n.addr
	})
}

// clusterSlots reads CLUSTER SLOTS, sorted by slot.
func (b *Broker) clusterSlots(ctx context.Context) ([]nodeRange, error) {
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	reply, err := b.client.Do(ctx, b.client.B().ClusterSlots().Build()).ToArray()
	if err != nil {
		return nil, b.fail("cluster slots", ctx, err)
	}
	var ranges []nodeRange
	for _, e := range reply {
		f, err := e.ToArray()
		if err != nil || len(f) < 3 {
			return nil, fmt.Errorf("cluster slots: malformed entry")
		}
		lo, err1 := f[0].AsInt64()
		hi, err2 := f[1].AsInt64()
		node, err3 := f[2].ToArray()
		if err1 != nil || err2 != nil || err3 != nil || len(node) < 2 {
			return nil, fmt.Errorf("cluster slots: malformed entry")
		}
		host, err1 := node[0].ToString()
		port, err2 := node[1].AsInt64()
		if err1 != nil || err2 != nil || host == "" {
			return nil, fmt.Errorf("cluster slots: malformed node")
		}
		ranges = append(ranges, nodeRange{int(lo), int(hi), net.JoinHostPort(host, strconv.FormatInt(port, 10))})
	}
	slices.SortFunc(ranges, func(x, y nodeRange) int { return x.lo - y.lo })
	return ranges, nil
}

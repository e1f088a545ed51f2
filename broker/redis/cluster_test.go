package redis

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// openCluster returns a Broker on cluster c with cfg, closed when the test
// ends.
func openCluster(t testing.TB, c *redistest.Cluster, cfg Config) *Broker {
	t.Helper()
	cfg.Cluster = true
	return open(t, c.Seeds(), cfg)
}

// roomsOn returns n room names whose slots master serves.
func roomsOn(t *testing.T, c *redistest.Cluster, b *Broker, master *redistest.Server, n int) []string {
	t.Helper()
	var rooms []string
	for i := 0; len(rooms) < n; i++ {
		room := fmt.Sprint("room-", i)
		if c.MasterOf(b.metaKey(room)) == master {
			rooms = append(rooms, room)
		}
		if i > 10000 {
			t.Fatalf("no rooms on %s", master.Addr)
		}
	}
	return rooms
}

// shardSubscribers returns the subscriber counts master reports for the
// sharded channels of rooms (PUBSUB SHARDNUMSUB, one slot at a time).
func shardSubscribers(t *testing.T, b *Broker, master *redistest.Server, rooms []string) map[string]int {
	t.Helper()
	out := make(map[string]int)
	for _, room := range rooms {
		kv, err := master.Strings("PUBSUB", "SHARDNUMSUB", b.channel(room))
		if err != nil || len(kv) != 2 {
			t.Fatalf("PUBSUB SHARDNUMSUB on %s = %v, %v", master.Addr, kv, err)
		}
		n, _ := strconv.Atoi(kv[1])
		out[room] = n
	}
	return out
}

// TestCluster runs the broker against one Redis Cluster of three masters
// with a replica each: the conformance suite, the spread of rooms over the
// shards, a slow shard, cut pub/sub connections and, last, a slot that
// moves to another master.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, "--enable-debug-command", "yes")

	conformance(t, func(t testing.TB, cfg Config) *Broker { return openCluster(t, c, cfg) })

	t.Run("ModeMustMatch", func(t *testing.T) {
		// A cluster node without Cluster, and one Redis with it, are
		// refused at once.
		if b, err := New(t.Context(), Config{URL: c.Nodes[0].URL()}); err == nil {
			_ = b.Close(t.Context())
			t.Error("New on a cluster node without Config.Cluster succeeded")
		}
		single := redistest.Start(t)
		if b, err := New(t.Context(), Config{URL: single.URL(), Cluster: true}); err == nil {
			_ = b.Close(t.Context())
			t.Error("New on one Redis with Config.Cluster succeeded")
		}
	})

	t.Run("SlotsAreRedis's", func(t *testing.T) {
		b := openCluster(t, c, Config{})
		for _, room := range []string{"a", "general", "@alice", "$control", "room-42"} {
			if got, want := b.roomSlot(room), c.Slot(b.metaKey(room)); got != want {
				t.Errorf("roomSlot(%q) = %d, CLUSTER KEYSLOT %d", room, got, want)
			}
		}
	})

	t.Run("RoomsSpreadOverShards", func(t *testing.T) {
		prefix := newPrefix()
		var bs []*Broker
		for i := range 3 {
			bs = append(bs, openCluster(t, c, Config{Prefix: prefix, InstanceID: fmt.Sprint("i_", i)}))
		}
		rooms := make([]string, 30)
		for i := range rooms {
			rooms[i] = fmt.Sprint("r", i)
		}
		hs := make([]*counter, len(bs))
		for i, b := range bs {
			hs[i] = &counter{}
			if err := b.Subscribe(t.Context(), hs[i], rooms...); err != nil {
				t.Fatal(err)
			}
		}
		total := 0
		for _, m := range c.Masters() {
			subs := shardSubscribers(t, bs[0], m, rooms)
			mine := 0
			for _, room := range rooms {
				want := 0
				if c.MasterOf(bs[0].metaKey(room)) == m {
					want = 3
					mine++
				}
				if subs[room] != want {
					t.Errorf("PUBSUB SHARDNUMSUB %s on %s = %d, want %d", room, m.Addr, subs[room], want)
				}
			}
			t.Logf("master %s carries %d of the %d rooms", m.Addr, mine, len(rooms))
			if mine == 0 {
				t.Errorf("master %s carries none of the rooms", m.Addr)
			}
			total += mine
		}
		if total != len(rooms) {
			t.Errorf("the masters carry %d rooms, want %d", total, len(rooms))
		}
		for i, room := range rooms {
			publish(t, bs[i%3], room, `1`)
		}
		for i, h := range hs {
			if !eventually(t, waitTimeout, func() bool { return h.count() == len(rooms) }) {
				t.Errorf("handler on broker %d received %d messages, want %d", i, h.count(), len(rooms))
			}
		}
	})

	t.Run("PubSubKilledOnOneShard", func(t *testing.T) {
		prefix := newPrefix()
		sub := openCluster(t, c, Config{Prefix: prefix, ProbeInterval: 50 * time.Millisecond, HistorySize: 100_000})
		pub := openCluster(t, c, Config{Prefix: prefix, HistorySize: 100_000})
		masters := c.Masters()
		killed := roomsOn(t, c, sub, masters[0], 1)[0]
		other := roomsOn(t, c, sub, masters[1], 1)[0]
		hk, ho := newRecorder(t), newRecorder(t)
		if err := sub.Subscribe(t.Context(), hk, killed); err != nil {
			t.Fatal(err)
		}
		if err := sub.Subscribe(t.Context(), ho, other); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var lastOther broker.Position
		wg.Go(func() { lastOther = keepPublishing(t, pub, other, func() {}) })
		last := keepPublishing(t, pub, killed, func() {
			for range 3 {
				if _, err := masters[0].Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
					t.Errorf("CLIENT KILL: %v", err)
				}
				time.Sleep(30 * time.Millisecond)
			}
		})
		wg.Wait()
		for _, x := range []struct {
			h    *recorder
			last broker.Position
		}{{hk, last}, {ho, lastOther}} {
			waitFor(t, x.h, x.last)
			if got := x.h.offsets(x.last.Epoch); !slices.Equal(got, span(1, x.last.Offset)) {
				t.Errorf("handler received %d messages, want 1..%d once each, in order", len(got), x.last.Offset)
			}
			if r := x.h.resets(); len(r) != 0 {
				t.Errorf("handler got resets %v, want none", r)
			}
		}
	})

	t.Run("SlowShardDoesNotStallOthers", func(t *testing.T) {
		testSlowShard(t, c)
	})

	// Last: it changes the cluster's topology.
	t.Run("SlotMoves", func(t *testing.T) {
		prefix := newPrefix()
		sub := openCluster(t, c, Config{Prefix: prefix, ProbeInterval: 100 * time.Millisecond})
		pub := openCluster(t, c, Config{Prefix: prefix})
		masters := c.Masters()
		room := roomsOn(t, c, sub, masters[0], 1)[0]
		h := newRecorder(t)
		if err := sub.Subscribe(t.Context(), h, room); err != nil {
			t.Fatal(err)
		}
		before := publish(t, pub, room, `1`)
		waitFor(t, h, before)

		c.MoveSlot(c.Slot(sub.metaKey(room)), masters[1])
		// Publishes follow the slot (MOVED); the subscription follows too.
		var after broker.Position
		if !eventually(t, waitTimeout, func() bool {
			pos, err := pub.Publish(t.Context(), room, broker.Publication{Data: json.RawMessage(`2`)})
			if err == nil {
				after = pos
			}
			return err == nil && h.has(pos)
		}) {
			t.Fatalf("after the slot moved the handler received %v; last publish %v", h.snapshot(), after)
		}
		if n := shardSubscribers(t, sub, masters[1], []string{room})[room]; n != 1 {
			t.Errorf("PUBSUB SHARDNUMSUB of the room on its new master = %d, want 1", n)
		}
		t.Logf("after the move: %v", h.snapshot())
	})
}

// testSlowShard has one shard's master sleep (DEBUG SLEEP) while the
// dispatcher reads a room of that shard from history: messages of a room
// on another shard keep flowing meanwhile, and the slow room catches up
// once its master answers, without a reset.
func testSlowShard(t *testing.T, c *redistest.Cluster) {
	const sleep = 2 * time.Second
	prefix := newPrefix()
	sub := openCluster(t, c, Config{Prefix: prefix})
	pub := openCluster(t, c, Config{Prefix: prefix})
	masters := c.Masters()
	slow := roomsOn(t, c, sub, masters[0], 1)[0]
	fast := roomsOn(t, c, sub, masters[1], 1)[0]
	hs := newRecorder(t)
	hf := &latencyRecorder{got: make(map[uint64]time.Time)}
	if err := sub.Subscribe(t.Context(), hs, slow); err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe(t.Context(), hf, fast); err != nil {
		t.Fatal(err)
	}
	first := publish(t, pub, slow, `0`)
	waitFor(t, hs, first)

	slept := make(chan error, 1)
	go func() {
		_, err := masters[0].Do("DEBUG", "SLEEP", strconv.FormatFloat(sleep.Seconds(), 'f', -1, 64))
		slept <- err
	}()
	if !eventually(t, time.Second, func() bool { return !answersWithin(masters[0].Addr, 50*time.Millisecond) }) {
		t.Fatal("the master did not fall asleep")
	}
	asleep := time.Now()
	// The dispatcher reads the slow room's missed messages now (as after
	// a hole): the read waits for the sleeping master.
	sub.do(func(d *dispatcher) { d.catchUp(d.rooms[slow]) })

	var worst time.Duration
	n := 0
	for time.Since(asleep) < sleep*3/4 {
		sent := time.Now()
		pos := publish(t, pub, fast, strconv.Itoa(n))
		if !eventually(t, 5*time.Second, func() bool { return hf.has(pos.Offset) }) {
			t.Fatalf("message %d of the fast room not delivered", pos.Offset)
		}
		worst = max(worst, hf.at(pos.Offset).Sub(sent))
		n++
		time.Sleep(20 * time.Millisecond) // let time pass: publish through the sleep
	}
	t.Logf("while the slow room's master slept %v, %d messages of a room on another shard took at most %v each", sleep, n, worst)
	if worst > sleep/4 {
		t.Errorf("a message of a room on another shard took %v while the slow room caught up; want well under the %v sleep", worst, sleep)
	}
	if err := <-slept; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	next := publish(t, pub, slow, `1`)
	waitFor(t, hs, next)
	if got := hs.offsets(next.Epoch); !slices.Equal(got, span(1, next.Offset)) || len(hs.resets()) > 0 {
		t.Errorf("slow room's handler received %v, want 1..%d and no reset", hs.snapshot(), next.Offset)
	}
}

// answersWithin reports whether the server at addr answers PING within d.
func answersWithin(addr string, d time.Duration) bool {
	conn, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(d))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// latencyRecorder is a Handler that notes when each offset arrived.
type latencyRecorder struct {
	mu  sync.Mutex
	got map[uint64]time.Time
}

func (l *latencyRecorder) Deliver(m *broker.Message) {
	l.mu.Lock()
	l.got[m.Offset] = time.Now()
	l.mu.Unlock()
}
func (l *latencyRecorder) Reset(string, broker.Position) {}

func (l *latencyRecorder) has(offset uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.got[offset]
	return ok
}

func (l *latencyRecorder) at(offset uint64) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[offset]
}

// TestCluster_MasterFailover kills one master (SIGKILL) while publishers
// run on rooms of every shard: its replica takes over, delivery resumes by
// itself, the rooms of the failed shard either continue or get a Reset
// (never a silent hole: the recorders check that every delivery follows
// the last one or a Reset), they start one new epoch whichever broker
// publishes, and the rooms of the other shards see every message and no
// Reset.
func TestCluster_MasterFailover(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, "--cluster-node-timeout", "1000")
	prefix := newPrefix()
	cfg := Config{Prefix: prefix, ProbeInterval: 100 * time.Millisecond, Timeout: time.Second, HistorySize: 100_000}
	cfg.InstanceID = "i_a"
	a := openCluster(t, c, cfg)
	cfg.InstanceID = "i_b"
	b := openCluster(t, c, cfg)
	masters := c.Masters()
	victim := masters[0]
	replica := c.ReplicaOf(victim)
	type roomCase struct {
		name   string
		failed bool
		h      [2]*recorder // on a and b
	}
	var rooms []*roomCase
	for i, m := range masters {
		for _, name := range roomsOn(t, c, a, m, 2) {
			rc := &roomCase{name: name, failed: i == 0, h: [2]*recorder{newRecorder(t), newRecorder(t)}}
			for j, x := range []*Broker{a, b} {
				if err := x.Subscribe(t.Context(), rc.h[j], name); err != nil {
					t.Fatal(err)
				}
			}
			rooms = append(rooms, rc)
		}
	}

	// Publishers: one per room, alternating between the brokers, until
	// told to stop; they note what was acknowledged.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := make(map[string][]broker.Position)
	for _, rc := range rooms {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				pos, err := []*Broker{a, b}[i%2].Publish(context.Background(), rc.name, broker.Publication{Data: json.RawMessage(strconv.Itoa(i))})
				if err == nil {
					mu.Lock()
					acked[rc.name] = append(acked[rc.name], pos)
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond) // a steady rate, not a flood
			}
		})
	}
	progress := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked[rooms[0].name])
	}
	if !eventually(t, waitTimeout, func() bool { return progress() >= 20 }) {
		t.Fatal("publishing did not start")
	}
	victim.WaitReplicated()
	killed := time.Now()
	victim.Stop()
	c.WaitMaster(replica)
	promoted := time.Since(killed)
	// Delivery resumes by itself: a publish after the promotion reaches
	// both brokers' handlers for every room.
	mu.Lock()
	mark := make(map[string]int)
	for _, rc := range rooms {
		mark[rc.name] = len(acked[rc.name])
	}
	mu.Unlock()
	if !eventually(t, waitTimeout, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, rc := range rooms {
			if len(acked[rc.name]) < mark[rc.name]+20 {
				return false
			}
		}
		return true
	}) {
		t.Fatal("publishing did not resume on every room after the failover")
	}
	close(stop)
	wg.Wait()

	var stall time.Duration
	for _, rc := range rooms {
		ps := acked[rc.name]
		last := ps[len(ps)-1]
		for j, h := range rc.h {
			waitFor(t, h, last)
			resets := h.resets()
			if !rc.failed {
				if len(resets) != 0 {
					t.Errorf("room %s on a healthy shard: handler %d got resets %v", rc.name, j, resets)
				}
				if got := h.offsets(last.Epoch); !slices.Equal(got, span(1, last.Offset)) {
					t.Errorf("room %s on a healthy shard: handler %d received %d messages, want 1..%d", rc.name, j, len(got), last.Offset)
				}
				continue
			}
			// Every acknowledged message of the new epoch arrived (the
			// recorder checks order and holes); the old epoch's
			// acknowledged messages arrived, or a reset says they may not.
			epochs := map[string]bool{}
			for _, p := range ps {
				epochs[p.Epoch] = true
			}
			if len(epochs) > 2 {
				t.Errorf("room %s: publishes were acknowledged in %d epochs, want at most 2 (one new epoch per failover)", rc.name, len(epochs))
			}
			for _, p := range ps {
				if p.Epoch == last.Epoch && !h.has(p) {
					t.Errorf("room %s: handler %d lacks acknowledged %s/%d", rc.name, j, p.Epoch, p.Offset)
				}
			}
			if ps[0].Epoch != last.Epoch && (len(resets) == 0 || resets[len(resets)-1].Epoch != last.Epoch) {
				t.Errorf("room %s: handler %d got resets %v, want one to the new epoch %s", rc.name, j, resets, last.Epoch)
			}
			stall = max(stall, h.longestGap())
		}
	}
	t.Logf("master killed: replica promoted after %v; longest pause in delivery on the failed shard's rooms: %v", promoted.Round(time.Millisecond), stall.Round(time.Millisecond))
}

package main

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// failoverRooms is how many rooms the failover tests use.
const failoverRooms = 30

// TestProcess_ClusterFailover runs three instances on a Redis Cluster of
// three masters with a replica each (issue 13). Thirty rooms, each with a
// member on every instance, spread over all three shards (PUBSUB
// SHARDNUMSUB on each master). Then one master is killed with SIGKILL while
// API publishers run on every room: its replica takes over, delivery
// resumes by itself, the sessions in the failed shard's rooms either
// continue without a hole or get reset, the rooms of the other shards see
// every message and no reset, and a session that resumes on another
// instance right after the takeover gets no hole either.
func TestProcess_ClusterFailover(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	c := redistest.StartCluster(t, "--cluster-node-timeout", "1000")
	masters := c.Masters()
	victim := masters[0]
	replica := c.ReplicaOf(victim)
	f := newFailoverRun(t, clusterFlags(c))

	t.Run("RoomsSpreadOverShards", func(t *testing.T) {
		total := 0
		for _, m := range masters {
			mine := 0
			for _, room := range f.rooms {
				ch := "sb:{" + room + "}:ch"
				want := 0
				if c.MasterOf(ch) == m {
					want = 3 // one subscription per instance
					mine++
				}
				kv, err := m.Strings("PUBSUB", "SHARDNUMSUB", ch)
				if err != nil || len(kv) != 2 || kv[1] != strconv.Itoa(want) {
					t.Errorf("PUBSUB SHARDNUMSUB %s on %s = %v, %v; want %d subscribers", ch, m.Addr, kv, err, want)
				}
			}
			t.Logf("master %s carries %d of the %d rooms", m.Addr, mine, len(f.rooms))
			if mine == 0 {
				t.Errorf("master %s carries none of the rooms", m.Addr)
			}
			total += mine
		}
		if total != len(f.rooms) {
			t.Errorf("the masters carry %d rooms, want %d", total, len(f.rooms))
		}
	})

	onVictim := make(map[string]bool)
	for _, room := range f.rooms {
		onVictim[room] = c.MasterOf("sb:{"+room+"}:meta") == victim
	}
	f.run(t, func(room string) bool { return onVictim[room] }, func() time.Duration {
		victim.WaitReplicated()
		killed := time.Now()
		victim.Stop()
		c.WaitMaster(replica)
		return time.Since(killed)
	})
}

// TestProcess_SentinelFailover is TestProcess_ClusterFailover with the
// instances on a Sentinel-managed primary (--redis-sentinel): every room
// lives on the primary, so every room continues or gets reset, each in one
// new epoch whichever instance meets the new primary first.
func TestProcess_SentinelFailover(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	s := redistest.StartSentinel(t)
	f := newFailoverRun(t, []string{"--redis", s.Addrs(), "--redis-sentinel", s.Master,
		"--rate", "100000", "--burst", "100000", "--history-size", "1000"})
	f.run(t, func(string) bool { return true }, func() time.Duration {
		old := s.Primary()
		old.WaitReplicated()
		killed := time.Now()
		old.Stop()
		s.WaitPrimary(s.Other(old))
		return time.Since(killed)
	})
}

// failoverRun is the deployment of a failover test: three instances, the
// rooms, a member of every room on each instance, and a roamer that
// resumes on another instance during the failover.
type failoverRun struct {
	insts   []*instance
	rooms   []string
	members []*client
	roamer  *client
	// arrivals records when m-A received each room's messages.
	arrivals *arrivals
}

func newFailoverRun(t *testing.T, flags []string) *failoverRun {
	f := &failoverRun{}
	for _, name := range []string{"A", "B", "C"} {
		f.insts = append(f.insts, startInstance(t, name, flags...))
	}
	for i := range failoverRooms {
		f.rooms = append(f.rooms, fmt.Sprint("room-", i))
	}
	for _, in := range f.insts {
		cl := connect(t, in, "m-"+in.name)
		for _, room := range f.rooms {
			cl.join(t, room, nil)
		}
		f.members = append(f.members, cl)
	}
	f.roamer = connect(t, f.insts[0], "roamer")
	for _, room := range f.rooms {
		f.roamer.join(t, room, nil)
	}
	f.arrivals = watchArrivals(t, f.members[0].cur())
	return f
}

// run publishes to every room through the API of the instances in turn
// until publishing has gone on for a while after fail (which kills the
// primary of the rooms for which failed is true and returns how long the
// takeover took), then checks every session's stream.
func (f *failoverRun) run(t *testing.T, failed func(room string) bool, fail func() time.Duration) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := make(map[string][]protocol.Position)
	refused := 0
	for i, room := range f.rooms {
		wg.Go(func() {
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				in := f.insts[(i+n)%len(f.insts)]
				res, err := in.apiPublish(room, payload{P: "api", N: n, T: time.Now().UnixNano()}, "", "")
				mu.Lock()
				switch {
				case err != nil:
					t.Errorf("publish to %s on %s: %v", room, in.name, err)
				case res.Status == http.StatusOK:
					acked[room] = append(acked[room], protocol.Position{Epoch: res.Pos.Epoch, Offset: res.Pos.Offset})
				case res.Status == http.StatusServiceUnavailable && res.Code == protocol.CodeUnavailable:
					refused++ // during the failover: not stored, or not confirmed
				default:
					t.Errorf("publish to %s on %s answered %d %s", room, in.name, res.Status, res.Code)
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond) // a steady rate, not a flood
			}
		})
	}
	stopPublishing := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopPublishing() // also when the test fails early
	atLeast := func(n func(room string) int) func() string {
		return func() string {
			mu.Lock()
			defer mu.Unlock()
			for _, room := range f.rooms {
				if len(acked[room]) < n(room) {
					return fmt.Sprintf("room %s has %d acknowledged publishes", room, len(acked[room]))
				}
			}
			return ""
		}
	}
	eventually(t, waitLong, atLeast(func(string) int { return 10 }))

	took := fail()
	killedAt := f.arrivals.now()
	// A session resumes on another instance right after the takeover,
	// while the instances may still be finding out about it (the race of
	// issue 13: two instances must never start two epochs for one room).
	resume := make(map[string]protocol.Position)
	eventually(t, waitLong, func() string {
		if code := f.insts[1].readyz(); code != http.StatusOK {
			return fmt.Sprintf("/readyz on B answers %d after the takeover", code)
		}
		return ""
	})
	f.roamer.drop(t)
	for _, room := range f.rooms {
		resume[room] = checkStream(f.roamer.frames(), room, nil, streamRules{resets: true}).end
	}
	f.roamer.reconnectRetrying(t, f.insts[1], wstest.Hello{Resume: resume})
	for _, room := range f.rooms {
		f.roamer.ensureJoined(t, room)
	}

	mu.Lock()
	mark := make(map[string]int)
	for _, room := range f.rooms {
		mark[room] = len(acked[room])
	}
	mu.Unlock()
	eventually(t, waitLong, atLeast(func(room string) int { return mark[room] + 20 }))
	stopPublishing()
	if t.Failed() {
		return
	}

	everyone := append(slices.Clone(f.members), f.roamer)
	for _, room := range f.rooms {
		ps := acked[room]
		last := ps[len(ps)-1]
		epochs := map[string]bool{}
		for _, p := range ps {
			epochs[p.Epoch] = true
			if p.Epoch == last.Epoch && p.Offset > last.Offset {
				last = p
			}
		}
		if len(epochs) > 2 {
			t.Errorf("%s: publishes were acknowledged in %d epochs, want at most one new one", room, len(epochs))
		}
		for _, cl := range everyone {
			if err := waitReached(cl.cur(), waitLong, cl.user, room, last.Epoch, last.Offset); err != nil {
				t.Fatal(err)
			}
			rules := streamRules{}
			if failed(room) {
				rules = streamRules{resets: true, unrecovered: cl == f.roamer}
			}
			s := checkStream(cl.frames(), room, nil, rules)
			if err := s.err(cl.user); err != nil {
				t.Error(err)
			}
			if s.end != last {
				t.Errorf("%s ends %s at %s/%d, want %s/%d", cl.user, room, s.end.Epoch, s.end.Offset, last.Epoch, last.Offset)
			}
			if !failed(room) && len(epochs) != 1 {
				t.Errorf("%s on a healthy shard changed epochs: %v", room, epochs)
			}
		}
	}
	var stallFailed, stallOther time.Duration
	for _, room := range f.rooms {
		gap := f.arrivals.longestGapAfter(room, killedAt-took)
		if failed(room) {
			stallFailed = max(stallFailed, gap)
		} else {
			stallOther = max(stallOther, gap)
		}
	}
	t.Logf("%s: takeover after %v; %d publishes refused meanwhile; longest pause in delivery to m-A: %v in the failed primary's rooms, %v in the others",
		t.Name(), took.Round(time.Millisecond), refused, stallFailed.Round(time.Millisecond), stallOther.Round(time.Millisecond))
}

// reconnectRetrying is reconnect for a client that retries while the
// server answers hello with close 1013 (the broker is not ready for its
// inbox yet), as the clients do.
func (c *client) reconnectRetrying(t *testing.T, in *instance, hello wstest.Hello) {
	t.Helper()
	hello.User = c.user
	deadline := time.Now().Add(waitLong)
	for {
		conn := wstest.DialRaw(t, in.ws, nil)
		conn.Send(struct {
			Type string `json:"type"`
			wstest.Hello
		}{"hello", hello})
		f, err := conn.NextErr(waitLong)
		if err == nil && f.Type == protocol.TypeWelcome {
			conn.Welcome = f
			c.conns = append(c.conns, conn.Collect())
			c.at = in
			return
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater || time.Now().After(deadline) {
			t.Fatalf("%s: hello on %s answered %s, %v", c.user, in.name, wstest.Describe(f), err)
		}
		time.Sleep(50 * time.Millisecond) // a client's retry interval
	}
}

// ensureJoined waits until the client's current connection has joined
// room by resuming it; if the resume was refused (the broker was not
// ready for the room yet), it joins with since, as a client would, until
// that succeeds.
func (c *client) ensureJoined(t *testing.T, room string) {
	t.Helper()
	resumed := false
	err := c.cur().Wait(waitLong, c.user+": resume of "+room, func(frames []protocol.ServerFrame) bool {
		for _, f := range frames {
			if f.Type == protocol.TypeJoined && f.Room == room {
				resumed = true
				return true
			}
			if f.Type == protocol.TypeError && strings.HasPrefix(f.Message, "resume "+room+":") {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	for try := 0; !resumed; try++ {
		pos := checkStream(c.frames(), room, nil, streamRules{resets: true, unrecovered: true}).end
		id := fmt.Sprintf("rejoin-%s-%d", room, try)
		f := c.ask(t, id, wstest.Frame(protocol.TypeJoin, "id", id, "room", room, "since", pos))
		switch {
		case f.Type == protocol.TypeJoined:
			return
		case f.Type != protocol.TypeError || f.Code != protocol.CodeUnavailable || try > 100:
			t.Fatalf("%s: join %s since %s/%d answered %s", c.user, room, pos.Epoch, pos.Offset, wstest.Describe(f))
		}
		time.Sleep(50 * time.Millisecond) // a client's retry interval
	}
}

// arrivals records when one connection received each room's messages, as
// they come.
type arrivals struct {
	start time.Time
	mu    sync.Mutex
	at    map[string][]time.Duration // since start
}

// watchArrivals notes the arrival time of every message k receives until
// the test ends.
func watchArrivals(t *testing.T, k *wstest.Collector) *arrivals {
	a := &arrivals{start: time.Now(), at: make(map[string][]time.Duration)}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		seen := 0
		for {
			var fresh []protocol.ServerFrame
			err := k.Wait(time.Hour, "more frames", func(frames []protocol.ServerFrame) bool {
				fresh = append(fresh, frames[seen:]...)
				seen = len(frames)
				return len(fresh) > 0
			})
			now := a.now()
			a.mu.Lock()
			for _, f := range fresh {
				if f.Type == protocol.TypeMessage {
					a.at[f.Room] = append(a.at[f.Room], now)
				}
			}
			a.mu.Unlock()
			select {
			case <-stop:
				return
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		_ = k.Conn().WS().Close()
		<-done
	})
	return a
}

func (a *arrivals) now() time.Duration { return time.Since(a.start) }

// longestGapAfter returns the longest time between two messages of room,
// or from since to the first one after it.
func (a *arrivals) longestGapAfter(room string, since time.Duration) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := since
	var gap time.Duration
	for _, at := range a.at[room] {
		if at < since {
			continue
		}
		gap = max(gap, at-prev)
		prev = at
	}
	return gap
}

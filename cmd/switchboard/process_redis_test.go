package main

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// countPayloads counts the messages of room from publisher p.
func countPayloads(frames []protocol.ServerFrame, room, p string) int {
	n := 0
	for _, f := range frames {
		if f.Type != protocol.TypeMessage || f.Room != room {
			continue
		}
		if d, err := decodePayload(f); err == nil && d.P == p {
			n++
		}
	}
	return n
}

// waitPayloads waits until the client's current connection has received
// want[p] messages of room from each publisher p.
func waitPayloads(t testing.TB, cl *client, room string, want map[string]int) {
	t.Helper()
	err := cl.cur().Wait(waitLong, fmt.Sprintf("%s: messages %v in %s", cl.user, want, room), func(frames []protocol.ServerFrame) bool {
		for p, n := range want {
			if countPayloads(frames, room, p) < n {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestProcess_RedisOutage kills Redis under two instances for 3 s and
// starts it again empty (issue 4): during the outage API publishes answer
// 503 unavailable (never a false success), client publishes get an
// unavailable error, /readyz is 503 and sessions stay connected; after the
// restart /readyz returns to 200 on both instances by itself, messages
// cross instances again, presence comes back, and every session either
// continues without a hole or is told reset before its room's new epoch.
func TestProcess_RedisOutage(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	rs := redistest.Start(t)
	a := startInstance(t, "A", redisFlags(rs)...)
	b := startInstance(t, "B", redisFlags(rs)...)
	const room = "r"

	var members []*client
	for _, in := range []*instance{a, b} {
		for i := range 2 {
			cl := connect(t, in, fmt.Sprintf("m-%s-%d", in.name, i))
			cl.join(t, room, nil)
			members = append(members, cl)
		}
	}
	pub := connect(t, a, "p-A")
	pub.join(t, room, nil)

	// Before: both instances publish and everyone gets everything.
	before := map[string]int{"pre-A": 10, "pre-B": 10}
	if err := apiSeq(a, room, "pre-A", 1, 10); err != nil {
		t.Fatal(err)
	}
	if err := apiSeq(b, room, "pre-B", 1, 10); err != nil {
		t.Fatal(err)
	}
	for _, cl := range members {
		if err := apiSeq(b, "@"+cl.user, "dm-pre", 1, 3); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range members {
		waitPayloads(t, cl, room, before)
		waitPayloads(t, cl, "@"+cl.user, map[string]int{"dm-pre": 3})
	}

	rs.Stop()
	stopped := time.Now()
	var publishes, refused int
	readyDown := map[string]bool{}
	for n := 1; time.Since(stopped) < 3*time.Second; n++ {
		in := []*instance{a, b}[n%2]
		res, err := in.apiPublish(room, payload{P: "outage", N: n}, "", "")
		if err != nil {
			t.Fatal(err)
		}
		publishes++
		switch {
		case res.Status == http.StatusOK:
			t.Errorf("publish #%d on %s during the outage answered 200 %+v: a false success", n, in.name, res.Pos)
		case res.Status != http.StatusServiceUnavailable || res.Code != protocol.CodeUnavailable:
			t.Errorf("publish #%d on %s during the outage answered %d %q, want 503 %q", n, in.name, res.Status, res.Code, protocol.CodeUnavailable)
		default:
			refused++
		}
		if code := in.readyz(); code == http.StatusServiceUnavailable {
			readyDown[in.name] = true
		} else if code != http.StatusOK {
			t.Errorf("/readyz on %s during the outage answered %d", in.name, code)
		}
		if n == 1 {
			f := pub.ask(t, "outage", wstest.Frame(protocol.TypePublish, "id", "outage", "room", room, "data", payload{P: "outage", N: 0}))
			if f.Type != protocol.TypeError || f.Code != protocol.CodeUnavailable {
				t.Errorf("client publish during the outage answered %s, want error %q", wstest.Describe(f), protocol.CodeUnavailable)
			}
		}
		time.Sleep(50 * time.Millisecond) // let the outage last
	}
	t.Logf("outage: %d API publishes during %v, %d answered 503 unavailable; /readyz 503 seen on %v",
		publishes, time.Since(stopped).Round(time.Millisecond), refused, slices.Sorted(maps.Keys(readyDown)))
	if !readyDown["A"] || !readyDown["B"] {
		t.Errorf("/readyz never answered 503 during the outage on some instance: %v", readyDown)
	}
	for _, cl := range append(slices.Clone(members), pub) {
		if err := cl.cur().Err(); err != nil {
			t.Errorf("%s lost its connection during the outage: %v", cl.user, err)
		}
	}

	rs.Restart()
	restarted := time.Now()
	for _, in := range []*instance{a, b} {
		in.waitReady(t, waitLong)
	}
	t.Logf("after the restart /readyz is 200 on both instances within %v", time.Since(restarted).Round(time.Millisecond))

	after := map[string]int{"post-A": 10, "post-B": 10}
	if err := apiSeq(a, room, "post-A", 1, 10); err != nil {
		t.Fatal(err)
	}
	if err := apiSeq(b, room, "post-B", 1, 10); err != nil {
		t.Fatal(err)
	}
	for _, cl := range members {
		if err := apiSeq(a, "@"+cl.user, "dm-post", 1, 3); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range members {
		waitPayloads(t, cl, room, after)
		waitPayloads(t, cl, "@"+cl.user, map[string]int{"dm-post": 3})
	}
	ack := pub.request(t, "again", wstest.Frame(protocol.TypePublish, "id", "again", "room", room, "data", payload{P: "p-A", N: 1}))
	if ack.Type != protocol.TypeAck {
		t.Errorf("client publish after the restart answered %s, want ack", wstest.Describe(ack))
	}

	want := map[string]int{"p-A": 1}
	for _, m := range []map[string]int{before, after} {
		for p, n := range m {
			want[p] = n
		}
	}
	for _, cl := range members {
		if err := waitReached(cl.cur(), waitLong, cl.user, room, ack.Epoch, ack.Offset); err != nil {
			t.Fatal(err)
		}
		frames := cl.frames()
		s := checkStream(frames, room, nil, streamRules{resets: true})
		s.checkPayloads(want)
		if err := s.err(cl.user); err != nil {
			t.Error(err)
		}
		if e := errorFrames(frames); len(e) > 0 {
			t.Errorf("%s got error frames: %v", cl.user, e)
		}
		if err := cl.cur().Err(); err != nil {
			t.Errorf("%s lost its connection: %v", cl.user, err)
		}
		inbox := checkStream(frames, "@"+cl.user, nil, streamRules{resets: true})
		inbox.checkPayloads(map[string]int{"dm-pre": 3, "dm-post": 3})
		if err := inbox.err(cl.user); err != nil {
			t.Error(err)
		}
		t.Logf("%s: %d messages, resets %v; inbox: %d messages, resets %v", cl.user, len(s.messages), describeAll(s.resets), len(inbox.messages), describeAll(inbox.resets))
	}
	// Presence and the registry come back by themselves with the next
	// heartbeat.
	eventually(t, 15*time.Second, func() string {
		if ids := a.instanceIDs(t); !slices.Equal(ids, []string{a.id, b.id}) {
			return fmt.Sprintf("GET /api/instances lists %v after the restart", ids)
		}
		if p := b.presence(t, room); p.Total != len(members)+1 {
			return fmt.Sprintf("GET presence of %s on B after the restart: %d users %v, want %d", room, p.Total, p.Users, len(members)+1)
		}
		return ""
	})
	t.Logf("presence and instances back %v after the restart", time.Since(restarted).Round(time.Millisecond))
}

// TestProcess_PubSubKilled cuts the instances' pub/sub connections from
// the Redis side (CLIENT KILL TYPE pubsub) three times while the API on A
// keeps publishing to a room with members on B and A (issue 4): the
// instances notice, resubscribe and repair the gaps from history, so no
// member sees a hole, a duplicate or a reset.
func TestProcess_PubSubKilled(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	rs := redistest.Start(t)
	a := startInstance(t, "A", redisFlags(rs)...)
	b := startInstance(t, "B", redisFlags(rs)...)
	const (
		room = "r"
		each = 300 // messages per publisher
	)
	var members []*client
	for i := range 4 {
		members = append(members, connect(t, b, fmt.Sprintf("m-B-%d", i)))
	}
	members = append(members, connect(t, a, "m-A-0"))
	for _, cl := range members {
		cl.join(t, room, nil)
	}

	// Three publishers, two through A and one through B, publish one
	// message after the other each.
	publishers := []struct {
		name string
		in   *instance
	}{{"api-A1", a}, {"api-A2", a}, {"api-B", b}}
	var sent atomic.Int64
	var mu sync.Mutex
	var stored []time.Time // when each publish was answered
	done := make(chan error, len(publishers))
	for _, p := range publishers {
		go func() {
			for n := 1; n <= each; n++ {
				if err := apiSeq(p.in, room, p.name, n, n); err != nil {
					done <- err
					return
				}
				mu.Lock()
				stored = append(stored, time.Now())
				mu.Unlock()
				sent.Add(1)
			}
			done <- nil
		}()
	}

	var kills []string
	var killedAt []time.Time
	readyDips := map[string]int{}
	for _, at := range []int64{150, 400, 650} {
		deadline := time.Now().Add(waitLong)
		for sent.Load() < at {
			if time.Now().After(deadline) {
				t.Fatalf("the publishers are stuck at %d", sent.Load())
			}
			for _, in := range []*instance{a, b} {
				if in.readyz() != http.StatusOK {
					readyDips[in.name]++
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		killedAt = append(killedAt, time.Now())
		n, err := rs.Do("CLIENT", "KILL", "TYPE", "pubsub")
		if err != nil {
			t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
		}
		kills = append(kills, fmt.Sprintf("%s at #%d", n, at))
	}
	for range publishers {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("CLIENT KILL TYPE pubsub killed %v connections; /readyz not 200 in %v polls", kills, readyDips)
	// How many messages were stored while B had no pub/sub connection:
	// those reach B's members only through the repair from history.
	reconnected := b.logs.times("pub/sub connected")
	for i, k := range killedAt {
		j, _ := slices.BinarySearchFunc(reconnected, k, time.Time.Compare)
		if j == len(reconnected) {
			t.Logf("kill %d: B logged no reconnection", i+1)
			continue
		}
		n := 0
		for _, at := range stored {
			if !at.Before(k) && at.Before(reconnected[j]) {
				n++
			}
		}
		t.Logf("kill %d: B resubscribed after %v; %d publishes were answered meanwhile", i+1, reconnected[j].Sub(k).Round(100*time.Microsecond), n)
	}

	total := uint64(each * len(publishers))
	for _, cl := range members {
		if err := waitReached(cl.cur(), waitLong, cl.user, room, "", total); err != nil {
			t.Error(err)
		}
	}
	for _, cl := range members {
		s := checkStream(cl.frames(), room, nil, streamRules{})
		s.checkPayloads(map[string]int{"api-A1": each, "api-A2": each, "api-B": each})
		if err := s.err(cl.user); err != nil {
			t.Error(err)
		}
	}
	for _, in := range []*instance{a, b} {
		if !in.logs.contains("pub/sub connection lost") && !in.logs.contains("replacing the connection") {
			t.Errorf("instance %s never noticed that its pub/sub connection was killed", in.name)
		}
	}
}

func describeAll(frames []protocol.ServerFrame) []string {
	out := make([]string, len(frames))
	for i, f := range frames {
		out[i] = fmt.Sprintf("%s/%d", f.Epoch, f.Offset)
	}
	return out
}

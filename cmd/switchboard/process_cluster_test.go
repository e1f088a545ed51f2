package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// redisFlags are the flags of instances sharing rs. The rate limit is
// lifted so that publishers can pipeline, and history is long enough for
// every resume of the tests.
func redisFlags(rs *redistest.Server, extra ...string) []string {
	return append([]string{"--redis", rs.URL() + "/0", "--rate", "100000", "--burst", "100000", "--history-size", "1000"}, extra...)
}

// TestProcess_ThreeInstances runs three instance processes on one Redis
// and checks that they behave as one (issue 4): room and direct messages
// published concurrently on every instance, by clients and through the
// HTTP API, reach every member on every instance exactly once and in order;
// a user's tabs on two instances both get each direct message once; a
// publisher gets only the ack of its own message; presence, user status and
// the instance list agree on every instance; sessions resume on other
// instances (hello.resume, join since, and hello.session after their
// instance drained) with no loss and no duplicate; and an API disconnect on
// one instance closes the user's sessions on the others with 4004.
func TestProcess_ThreeInstances(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	testThreeInstances(t, redisFlags(redistest.Start(t)))
}

// TestProcess_ThreeInstancesOnCluster is TestProcess_ThreeInstances with the
// instances on a Redis Cluster of three masters (issue 13).
func TestProcess_ThreeInstancesOnCluster(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	testThreeInstances(t, clusterFlags(redistest.StartCluster(t)))
}

// clusterFlags are redisFlags for instances on cluster c.
func clusterFlags(c *redistest.Cluster, extra ...string) []string {
	return append([]string{"--redis", c.Seeds(), "--redis-cluster", "--rate", "100000", "--burst", "100000", "--history-size", "1000"}, extra...)
}

// testThreeInstances runs three instances started with flags and checks
// that they behave as one (see TestProcess_ThreeInstances).
func testThreeInstances(t *testing.T, flags []string) {
	a := startInstance(t, "A", flags...)
	b := startInstance(t, "B", flags...)
	c := startInstance(t, "C", flags...)
	insts := []*instance{a, b, c}
	const room = "general"

	// Three members and a publisher per instance in the room; dana has a
	// tab on A and one on B; s-C sends dana direct messages; erin has
	// sessions on B and C.
	var members, pubs []*client
	for _, in := range insts {
		for i := range 3 {
			members = append(members, connect(t, in, fmt.Sprintf("m-%s-%d", in.name, i)))
		}
		pubs = append(pubs, connect(t, in, "p-"+in.name))
	}
	inRoom := append(slices.Clone(members), pubs...)
	var epoch string
	for _, cl := range inRoom {
		j := cl.join(t, room, nil)
		if j.Offset != 0 || (epoch != "" && j.Epoch != epoch) {
			t.Fatalf("%s joined %s at %s/%d, want offset 0 of the room's one epoch %q", cl.user, room, j.Epoch, j.Offset, epoch)
		}
		epoch = j.Epoch
	}
	danaA, danaB := connect(t, a, "dana"), connect(t, b, "dana")
	sC := connect(t, c, "s-C")
	erinB, erinC := connect(t, b, "erin"), connect(t, c, "erin")

	t.Run("InstancesListed", func(t *testing.T) {
		want := []string{a.id, b.id, c.id}
		for _, in := range insts {
			eventually(t, 10*time.Second, func() string {
				if got := in.instanceIDs(t); !slices.Equal(got, want) {
					return fmt.Sprintf("GET /api/instances on %s lists %v, want %v", in.name, got, want)
				}
				return ""
			})
		}
	})

	t.Run("PresenceAgrees", func(t *testing.T) {
		var want []protocol.UserSessions
		for _, cl := range inRoom {
			want = append(want, protocol.UserSessions{User: cl.user, Sessions: 1})
		}
		slices.SortFunc(want, func(x, y protocol.UserSessions) int { return cmp.Compare(x.User, y.User) })
		for _, p := range pubs {
			f := p.presence(t, room)
			if f.Total != len(want) || !slices.Equal(f.Users, want) {
				t.Errorf("presence frame on %s: total %d, users %v; want %d, %v", p.at.name, f.Total, f.Users, len(want), want)
			}
		}
		for _, in := range insts {
			p := in.presence(t, room)
			if p.Total != len(want) || !slices.Equal(p.Users, want) || p.Cursor != "" {
				t.Errorf("GET presence on %s: total %d, users %v, cursor %q; want %d, %v, no cursor", in.name, p.Total, p.Users, p.Cursor, len(want), want)
			}
		}
	})

	t.Run("UserStatusAgrees", func(t *testing.T) {
		for _, tc := range []struct {
			user      string
			sessions  int
			instances []string
		}{
			{"dana", 2, []string{a.id, b.id}},
			{"erin", 2, []string{b.id, c.id}},
			{"m-C-2", 1, []string{c.id}},
			{"nobody", 0, []string{}},
		} {
			for _, in := range insts {
				st := in.userStatus(t, tc.user)
				if st.User != tc.user || st.Online != (tc.sessions > 0) || st.Sessions != tc.sessions || !slices.Equal(st.Instances, tc.instances) {
					t.Errorf("GET /api/users/%s on %s = %+v, want %d sessions on %v", tc.user, in.name, st, tc.sessions, tc.instances)
				}
			}
		}
	})

	// Publishers: one client and the API on every instance to the room;
	// s-C (a client on C), the API on B and dana's own tab on A to dana.
	const (
		roomHalf   = 25 // per publisher and phase
		directHalf = 15
		selfHalf   = 5
	)
	publish := func(phase int) <-chan error {
		lo := func(half int) int { return phase*half + 1 }
		hi := func(half int) int { return (phase + 1) * half }
		errs := make(chan error, 16)
		var wg sync.WaitGroup
		for _, p := range pubs {
			conn := p.cur().Conn()
			wg.Go(func() { errs <- publishSeq(conn, room, p.user, lo(roomHalf), hi(roomHalf)) })
		}
		for _, in := range insts {
			wg.Go(func() { errs <- apiSeq(in, room, "api-"+in.name, lo(roomHalf), hi(roomHalf)) })
		}
		sConn, danaConn := sC.cur().Conn(), danaA.cur().Conn()
		wg.Go(func() { errs <- publishSeq(sConn, "@dana", "s-C", lo(directHalf), hi(directHalf)) })
		wg.Go(func() { errs <- apiSeq(b, "@dana", "api-send-B", lo(directHalf), hi(directHalf)) })
		wg.Go(func() { errs <- publishSeq(danaConn, "@dana", "dana", lo(selfHalf), hi(selfHalf)) })
		go func() {
			wg.Wait()
			close(errs)
		}()
		return errs
	}
	published := func(phase int, errs <-chan error) {
		t.Helper()
		if err := errorsOf(errs); err != nil {
			t.Fatal(err)
		}
		for _, p := range pubs {
			p.waitAcks(t, room, phase*roomHalf+1, (phase+1)*roomHalf)
		}
		sC.waitAcks(t, "@dana", phase*directHalf+1, (phase+1)*directHalf)
		danaA.waitAcks(t, "@dana", phase*selfHalf+1, (phase+1)*selfHalf)
	}

	published(0, publish(0))
	// Two members lose their connection between the phases and come back
	// on other instances while the second phase is being published: m-A-0
	// on B with hello.resume, m-C-1 on A with join since. m-B-2 loses its
	// connection in the middle of the second phase and resumes on C with
	// hello.resume.
	mA0, mB2, mC1 := members[0], members[5], members[7]
	mA0.drop(t)
	mC1.drop(t)
	errs := publish(1)
	posA0 := checkStream(mA0.frames(), room, nil, streamRules{}).end
	mA0.reconnect(t, b, wstest.Hello{Resume: map[string]protocol.Position{room: posA0}, Batch: true})
	posC1 := checkStream(mC1.frames(), room, nil, streamRules{}).end
	mC1.reconnect(t, a, wstest.Hello{})
	if j := mC1.join(t, room, &posC1); !j.Recovered {
		t.Errorf("m-C-1 joined on A from %s/%d: %s, want recovered", posC1.Epoch, posC1.Offset, wstest.Describe(j))
	}
	midway := uint64(len(pubs)+len(insts))*roomHalf + 20
	if err := waitReached(mB2.cur(), waitLong, mB2.user, room, epoch, midway); err != nil {
		t.Fatal(err)
	}
	mB2.drop(t)
	posB2 := checkStream(mB2.frames(), room, nil, streamRules{}).end
	mB2.reconnect(t, c, wstest.Hello{Resume: map[string]protocol.Position{room: posB2}})
	published(1, errs)
	for _, m := range []struct {
		cl   *client
		from protocol.Position
	}{{mA0, posA0}, {mC1, posC1}, {mB2, posB2}} {
		t.Logf("%s resumed on %s from offset %d: %d messages recovered before joined", m.cl.user, m.cl.at.name, m.from.Offset, recoveredBefore(m.cl.cur().Frames(), room))
	}

	roomTotal := 2 * roomHalf * 2 * len(insts)
	want := map[string]int{}
	for _, in := range insts {
		want["p-"+in.name], want["api-"+in.name] = 2*roomHalf, 2*roomHalf
	}
	checkRoom := func(t *testing.T, total int, want map[string]int) {
		t.Helper()
		for _, cl := range inRoom {
			if err := waitReached(cl.cur(), waitLong, cl.user, room, epoch, uint64(total)); err != nil {
				t.Fatal(err)
			}
		}
		for _, cl := range inRoom {
			s := checkStream(cl.frames(), room, nil, streamRules{})
			w := maps.Clone(want)
			if _, ok := w[cl.user]; ok {
				// A publisher gets the ack of its own messages, never the
				// messages.
				delete(w, cl.user)
				if len(s.acks) != want[cl.user] {
					t.Errorf("%s got %d acks, want %d", cl.user, len(s.acks), want[cl.user])
				}
			}
			s.checkPayloads(w)
			s.checkFrom()
			if s.end.Offset != uint64(total) {
				t.Errorf("%s ends at offset %d, want %d", cl.user, s.end.Offset, total)
			}
			if err := s.err(cl.user); err != nil {
				t.Error(err)
			}
			if e := errorFrames(cl.frames()); len(e) > 0 {
				t.Errorf("%s got error frames: %v", cl.user, e)
			}
		}
	}
	t.Run("RoomExactlyOnceInOrder", func(t *testing.T) { checkRoom(t, roomTotal, want) })

	t.Run("DirectToTabsOnTwoInstances", func(t *testing.T) {
		total := uint64(2 * (2*directHalf + selfHalf))
		for _, tab := range []*client{danaA, danaB} {
			if err := waitReached(tab.cur(), waitLong, "dana on "+tab.at.name, "@dana", "", total); err != nil {
				t.Fatal(err)
			}
		}
		for _, tab := range []*client{danaA, danaB} {
			s := checkStream(tab.frames(), "@dana", nil, streamRules{})
			w := map[string]int{"s-C": 2 * directHalf, "api-send-B": 2 * directHalf}
			if tab == danaB {
				// The other tab of the sender does get its messages.
				w["dana"] = 2 * selfHalf
			} else if len(s.acks) != 2*selfHalf {
				t.Errorf("dana's sending tab got %d acks, want %d", len(s.acks), 2*selfHalf)
			}
			s.checkPayloads(w)
			if s.end.Offset != total {
				t.Errorf("dana on %s ends at inbox offset %d, want %d", tab.at.name, s.end.Offset, total)
			}
			if err := s.err("dana on " + tab.at.name); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("DisconnectEverywhere", func(t *testing.T) {
		code, body, err := a.request(http.MethodPost, "/api/users/erin/disconnect", nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("POST /api/users/erin/disconnect on A = %d %s %v, want 200", code, body, err)
		}
		var ans struct{ Sessions *int }
		if err := json.Unmarshal(body, &ans); err != nil || ans.Sessions == nil || *ans.Sessions != 2 {
			t.Errorf("disconnect answered %s, want {\"sessions\":2}", body)
		}
		for _, s := range []*client{erinB, erinC} {
			code, err := s.cur().WaitClosed(waitLong)
			if err != nil {
				t.Fatalf("erin on %s: %v", s.at.name, err)
			}
			if code != protocol.CloseDisconnected {
				t.Errorf("erin on %s closed with %d, want %d", s.at.name, code, protocol.CloseDisconnected)
			}
		}
		eventually(t, 5*time.Second, func() string {
			if st := a.userStatus(t, "erin"); st.Online || st.Sessions != 0 || len(st.Instances) != 0 {
				return fmt.Sprintf("after the disconnect GET /api/users/erin = %+v, want offline", st)
			}
			return ""
		})
	})
	if t.Failed() {
		return
	}

	// C drains while the API on A keeps publishing: its sessions are told
	// to reconnect and closed with 4001, in the middle of the stream. Its
	// members come back at once on A and B with nothing but hello.session
	// (reconnectAfter may be 0), while C is still draining and A still
	// publishing; then B publishes.
	t.Run("SessionRejoinsAfterDrain", func(t *testing.T) {
		var onC []*client
		for _, cl := range append(inRoom, sC) {
			if cl.at == c {
				onC = append(onC, cl)
			}
		}
		const away = 40
		var sent atomic.Int64
		background := make(chan error, 1)
		go func() {
			for n := 1; n <= away; n++ {
				if err := apiSeq(a, room, "api-A2", n, n); err != nil {
					background <- err
					return
				}
				sent.Store(int64(n))
			}
			background <- nil
		}()
		eventually(t, waitLong, func() string {
			if n := sent.Load(); n < 10 {
				return fmt.Sprintf("the background publisher is at %d", n)
			}
			return ""
		})
		c.signal(t, syscall.SIGTERM)
		for _, cl := range onC {
			code, err := cl.cur().WaitClosed(waitLong)
			if err != nil {
				t.Fatalf("%s: %v", cl.user, err)
			}
			if code != protocol.CloseRestarting {
				t.Errorf("%s closed with %d, want %d", cl.user, code, protocol.CloseRestarting)
			}
			f := lastReconnect(t, cl.user, cl.cur().Frames())
			if f.Server != c.id || f.ReconnectAfter < 0 || f.ReconnectAfter > 2000 {
				t.Errorf("%s: %s, want server %q and reconnectAfter in [0, 2000]", cl.user, wstest.Describe(f), c.id)
			}
			// m-B-2 had itself resumed on C before.
			if slices.Contains(members, cl) {
				cl.reconnect(t, []*instance{a, b}[len(cl.conns)%2], wstest.Hello{Session: cl.session(), Batch: len(cl.conns)%2 == 1})
			}
		}
		code, err := c.waitExit(waitLong)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 {
			t.Errorf("C exited with %d after its drain, want 0", code)
		}
		if got, want := a.instanceIDs(t), []string{a.id, b.id}; !slices.Equal(got, want) {
			t.Errorf("after C drained GET /api/instances lists %v, want %v at once", got, want)
		}

		if err := <-background; err != nil {
			t.Fatal(err)
		}
		if err := apiSeq(b, room, "api-B2", 1, away); err != nil {
			t.Fatal(err)
		}

		var still []*client
		for _, cl := range inRoom {
			if cl.at != c {
				still = append(still, cl)
			}
		}
		inRoom = still // p-C stays away
		w := maps.Clone(want)
		w["api-A2"], w["api-B2"] = away, away
		checkRoom(t, roomTotal+2*away, w)
		for _, cl := range onC {
			if !slices.Contains(members, cl) {
				continue
			}
			t.Logf("%s rejoined with hello.session on %s: %d messages recovered before joined", cl.user, cl.at.name, recoveredBefore(cl.cur().Frames(), room))
			if st := a.userStatus(t, cl.user); !slices.Equal(st.Instances, []string{cl.at.id}) || st.Sessions != 1 {
				t.Errorf("GET /api/users/%s = %+v, want one session on %s", cl.user, st, cl.at.id)
			}
		}
	})
}

// recoveredBefore counts the messages of room that came before the first
// joined of room in frames: those a resume recovered from history.
func recoveredBefore(frames []protocol.ServerFrame, room string) int {
	n := 0
	for _, f := range frames {
		switch {
		case f.Type == protocol.TypeJoined && f.Room == room:
			return n
		case f.Type == protocol.TypeMessage && f.Room == room:
			n++
		}
	}
	return n
}

package switchboard_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// These tests check the promises of PROTOCOL.md, "Delivery guarantees",
// "Session recovery" and "Graceful drain", end to end over real WebSocket
// connections to in-process instances.

// unlimitedRate and unlimitedBurst lift the per-session rate limit so that
// publishers can send as fast as the server takes frames.
const (
	unlimitedRate  = 1e6
	unlimitedBurst = 1_000_000
)

// seqData is the data of the test messages: who published it and its
// sequence number for that publisher.
type seqData struct {
	P string `json:"p"`
	N int    `json:"n"`
	// Pad makes messages bigger where a test needs it.
	Pad string `json:"pad,omitempty"`
}

func decodeSeqData(t testing.TB, f protocol.ServerFrame) seqData {
	t.Helper()
	var p seqData
	if err := json.Unmarshal(f.Data, &p); err != nil {
		t.Fatalf("message data %s: %v", f.Data, err)
	}
	return p
}

// seqPublish returns a publish frame whose id is n.
func seqPublish(room, publisher string, n int, pad string) string {
	return wstest.Frame("publish", "id", n, "room", room, "data", seqData{P: publisher, N: n, Pad: pad})
}

// joinExpect sends join and returns the joined frame.
func joinExpect(t testing.TB, c *wstest.Conn, room string, since *protocol.Position) protocol.ServerFrame {
	t.Helper()
	kv := []any{"id", "j-" + room, "room", room}
	if since != nil {
		kv = append(kv, "since", since)
	}
	c.Send(wstest.Frame("join", kv...))
	f := c.Expect(protocol.TypeJoined)
	if f.Room != room || string(f.ID) != strconv.Quote("j-"+room) {
		t.Fatalf("joined = %s, want room %q and id %q", wstest.Describe(f), room, "j-"+room)
	}
	return f
}

// publishAcked publishes data n to room from c and waits for its ack.
func publishAcked(t testing.TB, c *wstest.Conn, room, publisher string, n int) protocol.ServerFrame {
	t.Helper()
	c.Send(seqPublish(room, publisher, n, ""))
	f := c.Expect(protocol.TypeAck)
	if string(f.ID) != strconv.Itoa(n) || f.Room != room {
		t.Fatalf("ack = %s, want id %d in room %q", wstest.Describe(f), n, room)
	}
	return f
}

// expectOffsets reads the messages of room with offsets from..to, in order.
func expectOffsets(t testing.TB, c *wstest.Conn, room, epoch string, from, to uint64) []protocol.ServerFrame {
	t.Helper()
	var out []protocol.ServerFrame
	for off := from; off <= to; off++ {
		f := c.Next()
		if f.Type != protocol.TypeMessage || f.Room != room || f.Epoch != epoch || f.Offset != off {
			t.Fatalf("got %s, want message %s/%s/%d", wstest.Describe(f), room, epoch, off)
		}
		out = append(out, f)
	}
	return out
}

// expectNothingPending checks that c has nothing more to say: a ping is
// answered by a pong as the very next frame, so no duplicate or stray frame
// is pending.
func expectNothingPending(t testing.TB, c *wstest.Conn) {
	t.Helper()
	c.Send(wstest.Frame("ping", "id", "quiet"))
	f := c.Next()
	if f.Type != protocol.TypePong || string(f.ID) != `"quiet"` {
		t.Fatalf("got %s, want only the pong of a ping (an extra frame was pending)", wstest.Describe(f))
	}
}

// collected is what a background reader collected.
type collected struct {
	frames []protocol.ServerFrame
	err    error
}

// collectUntil reads c in a goroutine until done says the last frame was
// enough, or a read fails. The Conn must not be read elsewhere meanwhile.
func collectUntil(c *wstest.Conn, done func(f protocol.ServerFrame) bool) <-chan collected {
	return collectAfter(nil, wstest.Timeout, c, done)
}

// collectAfter is collectUntil, but starts reading only once start is
// closed (a nil start starts at once), and gives up after idle without a
// frame.
func collectAfter(start <-chan struct{}, idle time.Duration, c *wstest.Conn, done func(f protocol.ServerFrame) bool) <-chan collected {
	ch := make(chan collected, 1)
	go func() {
		if start != nil {
			<-start
		}
		var res collected
		for {
			f, err := c.NextErr(idle)
			if err != nil {
				res.err = fmt.Errorf("after %d frames: %w", len(res.frames), err)
				break
			}
			res.frames = append(res.frames, f)
			if done(f) {
				break
			}
		}
		ch <- res
	}()
	return ch
}

// awaitCollected returns the result of a reader, failing the test after
// timeout.
func awaitCollected(t testing.TB, ch <-chan collected, timeout time.Duration, what string) collected {
	t.Helper()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("%s: %v", what, res.err)
		}
		return res
	case <-time.After(timeout):
		t.Fatalf("%s: timed out after %v", what, timeout)
	}
	panic("unreachable")
}

// TestDelivery_ExactlyOnceInOrder checks guarantees 1 and 4: 10 concurrent
// publishers (six of them member sessions, two of those tabs of one user,
// four of them backends) publish 200 messages each into a room of 20 member
// sessions (several users with several tabs, half in batch mode). Every
// session gets each of the 2000 offsets exactly once and in order, as a
// message or, for its own publishes, as an ack in the order it sent them.
func TestDelivery_ExactlyOnceInOrder(t *testing.T) {
	t.Parallel()
	const (
		room         = "general"
		perPublisher = 200
		publishers   = 10
		total        = perPublisher * publishers
	)
	srv := wstest.Start(t, switchboard.Config{Rate: unlimitedRate, Burst: unlimitedBurst})

	type member struct {
		name      string // user#tab
		user      string
		c         *wstest.Conn
		publishes bool
	}
	tabs := []struct {
		user string
		n    int
	}{{"ann", 3}, {"bob", 2}, {"cyd", 2}}
	for i := range 13 {
		tabs = append(tabs, struct {
			user string
			n    int
		}{fmt.Sprintf("u%02d", i), 1})
	}
	// Publishing sessions: two tabs of bob, one of ann and cyd, two single
	// users. The other four publishers are backends that are not members.
	publishing := map[string]bool{"ann#0": true, "bob#0": true, "bob#1": true, "cyd#1": true, "u03#0": true, "u07#0": true}
	backends := []string{"svc0", "svc1", "svc2", "svc3"}

	var members []*member
	var epoch string
	for _, u := range tabs {
		for tab := range u.n {
			m := &member{name: fmt.Sprintf("%s#%d", u.user, tab), user: u.user}
			m.publishes = publishing[m.name]
			m.c = wstest.Dial(t, srv.WS, wstest.Hello{User: u.user, Batch: len(members)%2 == 0})
			j := joinExpect(t, m.c, room, nil)
			if j.Offset != 0 || j.Recovered {
				t.Fatalf("%s: joined = %s, want offset 0 in a new room", m.name, wstest.Describe(j))
			}
			if epoch == "" {
				epoch = j.Epoch
			} else if j.Epoch != epoch {
				t.Fatalf("%s: joined epoch %q, want %q", m.name, j.Epoch, epoch)
			}
			members = append(members, m)
		}
	}
	if len(members) != 20 || len(publishing)+len(backends) != publishers {
		t.Fatalf("setup: %d members, %d publishers", len(members), len(publishing)+len(backends))
	}

	// Readers first, so that no queue waits on the test.
	results := make([]<-chan collected, len(members))
	for i, m := range members {
		wantMsgs, wantAcks := total, 0
		if m.publishes {
			wantMsgs, wantAcks = total-perPublisher, perPublisher
		}
		msgs, acks := 0, 0
		results[i] = collectUntil(m.c, func(f protocol.ServerFrame) bool {
			switch f.Type {
			case protocol.TypeMessage:
				msgs++
			case protocol.TypeAck:
				acks++
			}
			return msgs >= wantMsgs && acks >= wantAcks
		})
	}

	var wg sync.WaitGroup
	for _, m := range members {
		if !m.publishes {
			continue
		}
		wg.Go(func() {
			for n := range perPublisher {
				if err := m.c.TrySend(seqPublish(room, m.name, n, "")); err != nil {
					t.Errorf("%s: %v", m.name, err)
					return
				}
			}
		})
	}
	for _, name := range backends {
		wg.Go(func() {
			for n := range perPublisher {
				_, err := srv.Hub().Publish(t.Context(), room, broker.Publication{From: name, Data: wstest.JSON(seqData{P: name, N: n})})
				if err != nil {
					t.Errorf("%s: publish %d: %v", name, n, err)
					return
				}
			}
		})
	}
	wg.Wait()

	// byOffset is the message at each offset as the first session saw it;
	// every other session must agree.
	byOffset := make(map[uint64]seqData, total)
	type ackInfo struct {
		member string
		acks   []protocol.ServerFrame
	}
	var allAcks []ackInfo
	for i, m := range members {
		res := awaitCollected(t, results[i], 60*time.Second, m.name)
		seen := make(map[uint64]bool, total)
		var acks []protocol.ServerFrame
		var lastMsg, lastAck uint64
		nextSeq := make(map[string]int)
		for _, f := range res.frames {
			switch f.Type {
			case protocol.TypeAck:
				if want := strconv.Itoa(len(acks)); string(f.ID) != want {
					t.Fatalf("%s: ack %d has id %s, want %s (acks out of order)", m.name, len(acks), f.ID, want)
				}
				if f.Room != room || f.Epoch != epoch || f.Offset <= lastAck || f.Offset > total {
					t.Fatalf("%s: ack %s after offset %d, want an increasing offset in %s/%s", m.name, wstest.Describe(f), lastAck, room, epoch)
				}
				lastAck = f.Offset
				acks = append(acks, f)
			case protocol.TypeMessage:
				if f.Room != room || f.Epoch != epoch || f.Offset <= lastMsg || f.Offset > total {
					t.Fatalf("%s: message %s after offset %d: want increasing offsets 1..%d in %s/%s", m.name, wstest.Describe(f), lastMsg, total, room, epoch)
				}
				lastMsg = f.Offset
				p := decodeSeqData(t, f)
				if p.P == m.name {
					t.Fatalf("%s: got its own message %s, want an ack instead", m.name, wstest.Describe(f))
				}
				if p.N != nextSeq[p.P] {
					t.Fatalf("%s: message %d of %s at offset %d, want %d (per-publisher order)", m.name, p.N, p.P, f.Offset, nextSeq[p.P])
				}
				nextSeq[p.P]++
				wantFrom := p.P
				if i := strings.IndexByte(p.P, '#'); i >= 0 {
					wantFrom = p.P[:i]
				}
				if f.From != wantFrom {
					t.Fatalf("%s: message %s has from %q, want %q", m.name, wstest.Describe(f), f.From, wantFrom)
				}
				if prev, ok := byOffset[f.Offset]; ok && prev != p {
					t.Fatalf("%s: offset %d holds %+v, another session got %+v", m.name, f.Offset, p, prev)
				}
				byOffset[f.Offset] = p
			default:
				t.Fatalf("%s: unexpected frame %s", m.name, wstest.Describe(f))
			}
			if seen[f.Offset] {
				t.Fatalf("%s: offset %d twice (%s)", m.name, f.Offset, wstest.Describe(f))
			}
			seen[f.Offset] = true
		}
		// Exactly once: the messages and acks cover 1..total with no hole.
		for off := uint64(1); off <= total; off++ {
			if !seen[off] {
				t.Fatalf("%s: offset %d never arrived (hole)", m.name, off)
			}
		}
		others := publishers
		if m.publishes {
			others--
		}
		if len(nextSeq) != others {
			t.Fatalf("%s: got messages of %d publishers, want %d", m.name, len(nextSeq), others)
		}
		for p, n := range nextSeq {
			if n != perPublisher {
				t.Fatalf("%s: got %d messages of %s, want %d", m.name, n, p, perPublisher)
			}
		}
		if m.publishes {
			allAcks = append(allAcks, ackInfo{m.name, acks})
		}
		expectNothingPending(t, m.c)
	}
	// The acks name the offsets at which the other sessions saw the
	// publishes, in the order they were sent.
	for _, a := range allAcks {
		for n, ack := range a.acks {
			if got := byOffset[ack.Offset]; got.P != a.member || got.N != n {
				t.Fatalf("%s: publish %d was acked at offset %d, where the others saw %+v", a.member, n, ack.Offset, got)
			}
		}
	}
	if len(byOffset) != total {
		t.Fatalf("the sessions saw %d distinct offsets, want %d", len(byOffset), total)
	}
}

// TestDelivery_RecoveryAfterLeave checks guarantee 2 for a client that comes
// back on a new connection with the position it kept.
func TestDelivery_RecoveryAfterLeave(t *testing.T) {
	t.Parallel()
	const room = "news"

	// away starts an instance, publishes offsets 1..published of a room, of
	// which a reader reads 1..seen before it disconnects, then publishes up
	// to latest; it returns the instance, the publisher and the epoch.
	away := func(t *testing.T, cfg switchboard.Config, published, seen, latest int) (*wstest.Server, *wstest.Conn, string) {
		srv := wstest.Start(t, cfg)
		pub := wstest.Dial(t, srv.WS, wstest.Hello{User: "pub"})
		epoch := joinExpect(t, pub, room, nil).Epoch
		reader := wstest.Dial(t, srv.WS, wstest.Hello{User: "reader"})
		joinExpect(t, reader, room, nil)
		for n := 1; n <= published; n++ {
			publishAcked(t, pub, room, "pub", n)
		}
		expectOffsets(t, reader, room, epoch, 1, uint64(seen))
		before := srv.Hub().SessionCount()
		reader.WS().Close()
		wstest.Eventually(t, wstest.Timeout, "the reader's session to end", func() bool {
			return srv.Hub().SessionCount() == before-1
		})
		for n := published + 1; n <= latest; n++ {
			publishAcked(t, pub, room, "pub", n)
		}
		return srv, pub, epoch
	}

	t.Run("JoinSinceGetsMissedThenJoinedThenLive", func(t *testing.T) {
		t.Parallel()
		srv, pub, epoch := away(t, switchboard.Config{}, 5, 3, 10)
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "reader"})
		c.Send(wstest.Frame("join", "id", 7, "room", room, "since", protocol.Position{Epoch: epoch, Offset: 3}))
		expectOffsets(t, c, room, epoch, 4, 10)
		j := c.Expect(protocol.TypeJoined)
		if string(j.ID) != "7" || j.Room != room || j.Epoch != epoch || j.Offset != 10 || !j.Recovered {
			t.Fatalf("joined = %s, want id 7, %s/%s offset 10 recovered", wstest.Describe(j), room, epoch)
		}
		for n := 11; n <= 13; n++ {
			publishAcked(t, pub, room, "pub", n)
		}
		expectOffsets(t, c, room, epoch, 11, 13)
		expectNothingPending(t, c)
	})

	t.Run("HelloResumeGetsMissedThenJoinedWithoutID", func(t *testing.T) {
		t.Parallel()
		srv, pub, epoch := away(t, switchboard.Config{}, 5, 3, 10)
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "reader", Batch: true,
			Resume: map[string]protocol.Position{room: {Epoch: epoch, Offset: 3}}})
		expectOffsets(t, c, room, epoch, 4, 10)
		j := c.Expect(protocol.TypeJoined)
		if len(j.ID) != 0 || j.Room != room || j.Epoch != epoch || j.Offset != 10 || !j.Recovered {
			t.Fatalf("joined = %s, want no id, %s/%s offset 10 recovered", wstest.Describe(j), room, epoch)
		}
		publishAcked(t, pub, room, "pub", 11)
		expectOffsets(t, c, room, epoch, 11, 11)
		expectNothingPending(t, c)
	})

	t.Run("NothingMissedIsRecovered", func(t *testing.T) {
		t.Parallel()
		srv, pub, epoch := away(t, switchboard.Config{}, 4, 4, 4)
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "reader"})
		j := joinExpect(t, c, room, &protocol.Position{Epoch: epoch, Offset: 4})
		if j.Epoch != epoch || j.Offset != 4 || !j.Recovered {
			t.Fatalf("joined = %s, want %s offset 4 recovered", wstest.Describe(j), epoch)
		}
		publishAcked(t, pub, room, "pub", 5)
		expectOffsets(t, c, room, epoch, 5, 5)
		expectNothingPending(t, c)
	})

	t.Run("WrongEpochIsNotRecovered", func(t *testing.T) {
		t.Parallel()
		srv, pub, epoch := away(t, switchboard.Config{}, 5, 3, 10)
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "reader"})
		j := joinExpect(t, c, room, &protocol.Position{Epoch: "not" + epoch, Offset: 3})
		if j.Epoch != epoch || j.Offset != 10 || j.Recovered {
			t.Fatalf("joined = %s, want %s offset 10 not recovered, with no message before it", wstest.Describe(j), epoch)
		}
		publishAcked(t, pub, room, "pub", 11)
		expectOffsets(t, c, room, epoch, 11, 11)
		expectNothingPending(t, c)
	})

	t.Run("GapOlderThanHistoryIsNotRecovered", func(t *testing.T) {
		t.Parallel()
		// History holds 5: after 22 publishes, offsets 18..22.
		srv, pub, epoch := away(t, switchboard.Config{HistorySize: 5}, 2, 2, 22)
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "reader"})
		j := joinExpect(t, c, room, &protocol.Position{Epoch: epoch, Offset: 2})
		if j.Epoch != epoch || j.Offset != 22 || j.Recovered {
			t.Fatalf("joined = %s, want %s offset 22 not recovered, with no message before it", wstest.Describe(j), epoch)
		}
		publishAcked(t, pub, room, "pub", 23)
		expectOffsets(t, c, room, epoch, 23, 23)
		expectNothingPending(t, c)

		// Right at the edge of history, everything is still there.
		edge := wstest.Dial(t, srv.WS, wstest.Hello{User: "reader"})
		edge.Send(wstest.Frame("join", "id", 1, "room", room, "since", protocol.Position{Epoch: epoch, Offset: 18}))
		expectOffsets(t, edge, room, epoch, 19, 23)
		if j := edge.Expect(protocol.TypeJoined); j.Offset != 23 || !j.Recovered {
			t.Fatalf("joined = %s, want offset 23 recovered", wstest.Describe(j))
		}
		expectNothingPending(t, edge)
	})
}

// TestDelivery_RecoveryRaceWithLivePublishes joins 60 sessions, with since
// (up to 300 messages back), without it and through hello.resume, while a
// backend publishes (as fast as it can until every session is released,
// then at a bounded pace); it goes on until every session is in
// the room, so the joins overlap live traffic. Every session gets a
// contiguous stream from where it started to the last message, with joined
// exactly where the recovered part ends: the messages buffered while it
// recovered are neither lost nor repeated (hub/join.go, finishJoin).
func TestDelivery_RecoveryRaceWithLivePublishes(t *testing.T) {
	t.Parallel()
	const (
		room     = "race"
		joiners  = 60
		minTotal = 500
		// tail is how many messages follow the last join.
		tail = 50
	)
	// History holds everything, so every since is recoverable; the queues
	// hold a backlog of thousands of messages.
	srv := wstest.Start(t, switchboard.Config{HistorySize: 1 << 16, SendQueueBytes: 16 << 20})
	start, err := srv.Hub().History(t.Context(), room, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	epoch := start.Epoch

	type joiner struct {
		name      string
		kind      string // "since", "plain" or "resume"
		threshold uint64 // joins once this many messages were published
		since     uint64
		c         *wstest.Conn
		start     chan struct{}
		done      <-chan collected
		err       chan error // the join was sent (or the dial failed)
	}
	var list []*joiner
	kinds := []string{"since", "since", "plain", "since", "resume"}
	for i := range joiners {
		th := uint64(i * 8)
		j := &joiner{name: fmt.Sprintf("j%02d", i), kind: kinds[i%len(kinds)], threshold: th,
			start: make(chan struct{}), err: make(chan error, 1)}
		j.since = th - min(th, uint64(i%4)*100)
		if j.kind != "resume" {
			j.c = wstest.Dial(t, srv.WS, wstest.Hello{User: j.name, Batch: i%2 == 0})
		}
		list = append(list, j)
	}

	// joinedCh gets a joiner's name as it reads its joined frame; failed
	// gets it (with the reason) when the joiner cannot get there: a dial
	// that failed or a reader that gave up.
	joinedCh := make(chan string, joiners)
	failed := make(chan error, joiners)
	// A joiner's reader starts when the joiner is released: until then it
	// gets nothing, for as long as the publisher takes to get there. A
	// recovery of hundreds of messages under -race on a loaded machine may
	// take seconds: the reader is patient.
	readToEnd := func(start <-chan struct{}, name string, c *wstest.Conn) <-chan collected {
		seen := false
		in := collectAfter(start, 30*time.Second, c, func(f protocol.ServerFrame) bool {
			if f.Type == protocol.TypeJoined && !seen {
				seen = true
				joinedCh <- name
			}
			return f.Type == protocol.TypeMessage && bytes.Contains(f.Data, []byte(`"p":"end"`))
		})
		out := make(chan collected, 1)
		go func() {
			res := <-in
			if res.err != nil && !seen {
				failed <- fmt.Errorf("%s, before its joined frame: %w", name, res.err)
			}
			out <- res
		}()
		return out
	}
	for _, j := range list {
		if j.kind == "resume" {
			go func() {
				<-j.start
				c, err := wstest.TryDial(t, nil, srv.WS, wstest.Hello{User: j.name, Batch: true,
					Resume: map[string]protocol.Position{room: {Epoch: epoch, Offset: j.since}}})
				if err == nil {
					j.c, j.done = c, readToEnd(nil, j.name, c)
				} else {
					failed <- fmt.Errorf("%s: %w", j.name, err)
				}
				j.err <- err
			}()
			continue
		}
		frame := wstest.Frame("join", "id", j.name, "room", room)
		if j.kind == "since" {
			frame = wstest.Frame("join", "id", j.name, "room", room, "since", protocol.Position{Epoch: epoch, Offset: j.since})
		}
		j.done = readToEnd(j.start, j.name, j.c)
		go func() {
			<-j.start
			j.err <- j.c.TrySend(frame)
		}()
	}

	// The publisher, a backend on the instance itself, publishes as fast
	// as it can and releases the joiners as it goes. Once at least
	// minTotal messages are out and every joiner is present in the room
	// (its join is being handled), it publishes tail more; when every
	// joiner has its joined frame, one last message by publisher "end".
	last := make(chan uint64, 1)
	pubErr := make(chan error, 1)
	go func() {
		released := 0
		publish := func(n uint64, p string) error {
			pos, err := srv.Hub().Publish(t.Context(), room, broker.Publication{From: "pub", Data: wstest.JSON(seqData{P: p, N: int(n)})})
			if err != nil {
				return fmt.Errorf("publish %d: %w", n, err)
			}
			if pos.Epoch != epoch || pos.Offset != n+1 {
				return fmt.Errorf("publish %d at %v, want offset %d", n, pos, n+1)
			}
			for released < len(list) && list[released].threshold <= pos.Offset {
				close(list[released].start)
				released++
			}
			return nil
		}
		stopAt := uint64(0) // 0 until every joiner is present
		sent := uint64(0)
		for ; stopAt == 0 || sent < stopAt; sent++ {
			if stopAt == 0 && sent >= minTotal && sent%8 == 0 {
				users, err := srv.Hub().RoomPresence(t.Context(), room)
				if err != nil {
					pubErr <- err
					return
				}
				if len(users) == joiners {
					stopAt = sent + tail
				} else {
					// Every joiner is released; some are still being
					// handled. Go on at a bounded pace (about 4,000 a
					// second), so that the backlog they recover stays
					// proportional to how long their joins take, not to
					// how much faster than them an unhindered loop runs
					// on a loaded machine.
					time.Sleep(2 * time.Millisecond)
				}
			}
			if err := publish(sent, "pub"); err != nil {
				pubErr <- err
				return
			}
		}
		waiting := make(map[string]bool, joiners)
		for _, j := range list {
			waiting[j.name] = true
		}
		timeout := time.After(90 * time.Second)
		for len(waiting) > 0 {
			select {
			case name := <-joinedCh:
				delete(waiting, name)
			case err := <-failed:
				pubErr <- err
				return
			case <-timeout:
				pubErr <- fmt.Errorf("%d joiners got no joined frame in 90 s: %v", len(waiting), slices.Sorted(maps.Keys(waiting)))
				return
			}
		}
		if err := publish(sent, "end"); err != nil {
			pubErr <- err
			return
		}
		last <- sent + 1
		pubErr <- nil
	}()

	select {
	case err := <-pubErr:
		if err != nil {
			t.Fatalf("publisher: %v", err)
		}
	case <-time.After(180 * time.Second):
		t.Fatal("publisher: timed out")
	}
	total := <-last
	for _, j := range list {
		if err := <-j.err; err != nil { // sent before the publisher could end
			t.Fatalf("%s: %v", j.name, err)
		}
		res := awaitCollected(t, j.done, 60*time.Second, j.name)
		var joined *protocol.ServerFrame
		want := j.since + 1 // the next offset expected
		for i, f := range res.frames {
			switch f.Type {
			case protocol.TypeJoined:
				if joined != nil {
					t.Fatalf("%s: second joined %s", j.name, wstest.Describe(f))
				}
				joined = &res.frames[i]
				if f.Epoch != epoch || f.Offset < j.threshold || f.Offset >= total {
					t.Fatalf("%s: joined = %s, want epoch %s and an offset in [%d, %d)", j.name, wstest.Describe(f), epoch, j.threshold, total)
				}
				if j.kind == "plain" {
					if f.Recovered {
						t.Fatalf("%s: joined = %s, want recovered false for a join without since", j.name, wstest.Describe(f))
					}
					want = f.Offset + 1
				} else if !f.Recovered || f.Offset != want-1 {
					t.Fatalf("%s: joined = %s after recovering up to offset %d, want recovered at that offset", j.name, wstest.Describe(f), want-1)
				}
				wantID := strconv.Quote(j.name)
				if j.kind == "resume" {
					wantID = ""
				}
				if string(f.ID) != wantID {
					t.Fatalf("%s: joined id %s, want %q", j.name, f.ID, wantID)
				}
			case protocol.TypeMessage:
				if joined == nil && j.kind == "plain" {
					t.Fatalf("%s: message %s before joined", j.name, wstest.Describe(f))
				}
				if f.Epoch != epoch || f.Offset != want {
					t.Fatalf("%s: got %s, want offset %d (since %d, joined %v)", j.name, wstest.Describe(f), want, j.since, joined != nil)
				}
				if p := decodeSeqData(t, f); p.N != int(f.Offset)-1 {
					t.Fatalf("%s: offset %d holds publish %d", j.name, f.Offset, p.N)
				}
				want++
			default:
				t.Fatalf("%s: unexpected frame %s", j.name, wstest.Describe(f))
			}
		}
		if joined == nil || want != total+1 {
			t.Fatalf("%s: stream ended before offset %d (joined %v, next %d)", j.name, total, joined != nil, want)
		}
		expectNothingPending(t, j.c)
	}
	t.Logf("%d messages published while %d sessions joined", total, joiners)
}

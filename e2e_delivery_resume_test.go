package switchboard_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestDelivery_SlowConsumer checks "Sessions and back-pressure": a member
// that stops reading is closed with 4008 once its bounded queue overflows,
// while a healthy member of the same room gets every message in order; the
// server drops the slow session's queue instead of buffering the stream.
func TestDelivery_SlowConsumer(t *testing.T) {
	t.Parallel()
	// 8 MiB of traffic is more than Linux's socket buffers can hide (about
	// 4 MiB at most), so the server's own queue must overflow.
	t.Run("QueueOverflowClosesWith4008", func(t *testing.T) {
		t.Parallel()
		runSlowConsumer(t, 2000, 4<<10)
	})
	// 2000 messages of 1 KiB with a 16 KiB queue: the server must notice
	// the slow consumer before it has taken the whole 2 MiB stream, wherever
	// it would keep it. On Linux loopback the kernel alone takes about 3 to
	// 4 MiB of a connection's unread stream unless the server caps the
	// socket's send buffer, so the queue bound is not reached.
	t.Run("NoticedBeforeTheStreamIsBuffered", func(t *testing.T) {
		t.Parallel()
		runSlowConsumer(t, 2000, 1<<10)
	})
}

// runSlowConsumer publishes total messages of about size bytes into a room
// with a healthy, a publishing and a non-reading member, with a 16 KiB send
// queue.
func runSlowConsumer(t *testing.T, total, size int) {
	const (
		room           = "firehose"
		queueBytes     = 16 << 10
		overflowMetric = "switchboard_send_queue_overflows_total"
	)
	// window bounds how far the healthy member may lag, so that its queue
	// never holds more than half the bound.
	window := uint64(max(1, queueBytes/2/(size+100)))
	srv := wstest.Start(t, switchboard.Config{Rate: unlimitedRate, Burst: unlimitedBurst, SendQueueBytes: queueBytes})
	pad := strings.Repeat("x", size)

	pub := wstest.Dial(t, srv.WS, wstest.Hello{User: "pub"})
	epoch := joinExpect(t, pub, room, nil).Epoch
	healthy := wstest.Dial(t, srv.WS, wstest.Hello{User: "healthy", Batch: true})
	joinExpect(t, healthy, room, nil)
	slow := wstest.Dial(t, srv.WS, wstest.Hello{User: "slow"})
	joinExpect(t, slow, room, nil)
	sessions := srv.Hub().SessionCount()
	if got := srv.Metric(t, overflowMetric); got != 0 {
		t.Fatalf("%s = %v before publishing, want 0", overflowMetric, got)
	}

	// progress gets every offset the healthy member read, and is closed
	// when it has read them all.
	progress := make(chan uint64, total)
	healthyErr := make(chan error, 1)
	go func() {
		for next := uint64(1); next <= uint64(total); next++ {
			f, err := healthy.NextErr(wstest.Timeout)
			if err != nil {
				healthyErr <- fmt.Errorf("waiting for offset %d: %w", next, err)
				return
			}
			if f.Type != protocol.TypeMessage || f.Epoch != epoch || f.Offset != next {
				healthyErr <- fmt.Errorf("got %.200s, want message at offset %d", wstest.Describe(f), next)
				return
			}
			progress <- next
		}
		close(progress)
	}()
	// awaitHealthy waits until the healthy member has read offset off.
	var healthyAt uint64
	awaitHealthy := func(off uint64) {
		t.Helper()
		for healthyAt < off {
			select {
			case o, ok := <-progress:
				if !ok {
					return
				}
				healthyAt = o
			case err := <-healthyErr:
				t.Fatalf("healthy member: %v", err)
			case <-time.After(wstest.Timeout):
				t.Fatalf("healthy member stuck at offset %d, want %d", healthyAt, off)
			}
		}
	}

	// overflowAt is how many messages had been published when the server
	// was first seen to have closed the slow session's queue.
	// Once the server has closed its queue, the slow client reads again,
	// in the background while publishing goes on: the server waits for it
	// to take the close frame only as long as its write timeout, and under
	// -race on a loaded machine the rest of the stream can take longer.
	overflowAt := -1
	type slowResult struct {
		before []protocol.ServerFrame
		err    error
	}
	slowDone := make(chan slowResult, 1)
	readSlow := func() {
		var res slowResult
		for {
			f, err := slow.NextErr(wstest.Timeout)
			if err != nil {
				res.err = err
				break
			}
			res.before = append(res.before, f)
		}
		slowDone <- res
	}
	for n := range total {
		if overflowAt < 0 && n%20 == 0 && srv.Metric(t, overflowMetric) > 0 {
			overflowAt = n
			go readSlow()
		}
		pub.Send(seqPublish(room, "pub", n, pad))
		if ack := pub.Expect(protocol.TypeAck); ack.Offset != uint64(n+1) {
			t.Fatalf("ack = %s, want offset %d", wstest.Describe(ack), n+1)
		}
		if uint64(n+1) > window {
			awaitHealthy(uint64(n+1) - window)
		}
	}
	awaitHealthy(uint64(total))
	if overflowAt < 0 {
		t.Fatalf("the slow session was not closed while %d messages of %d bytes were published (%s stayed 0): "+
			"the server took the whole stream for a client that reads nothing", total, size, overflowMetric)
	}
	t.Logf("slow consumer overflow seen after %d of %d messages", overflowAt, total)

	// Reading again, the slow client found a gapless prefix of the
	// stream, then close 4008; its session ends.
	res := <-slowDone
	var ce *websocket.CloseError
	if !errors.As(res.err, &ce) || ce.Code != protocol.CloseSlowConsumer {
		t.Fatalf("the slow client's stream ended with %v after %d frames, want close 4008", res.err, len(res.before))
	}
	before := res.before
	for i, f := range before {
		if f.Type != protocol.TypeMessage || f.Offset != uint64(i+1) {
			t.Fatalf("slow client frame %d = %.200s, want message at offset %d (a prefix with no hole)", i, wstest.Describe(f), i+1)
		}
	}
	if len(before) >= total {
		t.Fatalf("slow client got all %d messages before 4008", len(before))
	}
	wstest.Eventually(t, wstest.Timeout, "the slow session to end", func() bool {
		return srv.Hub().SessionCount() == sessions-1
	})
	if got := srv.Metric(t, overflowMetric); got != 1 {
		t.Fatalf("%s = %v, want 1 (only the slow session overflowed)", overflowMetric, got)
	}
	expectNothingPending(t, healthy)
}

// unclosableBroker lets two in-process instances share one memory broker.
// Instance.Serve closes its broker when it stops, and a closed memory broker
// fails every call, so the instances must not close the shared one; the
// test closes it at the end.
type unclosableBroker struct{ *memory.Broker }

func (unclosableBroker) Close(context.Context) error { return nil }

func newUnclosableBroker(t *testing.T, cfg memory.Config) unclosableBroker {
	b := memory.New(cfg)
	// Registered before the instances start, so it runs after they stopped.
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return unclosableBroker{b}
}

// expectRecovery reads the frames a session gets after welcome for the rooms it
// resumes (hello.resume or hello.session): per room, the missed messages in
// order, then joined without id. It returns the joined frame of each room.
func expectRecovery(t *testing.T, c *wstest.Conn, missed map[string][]uint64) map[string]protocol.ServerFrame {
	t.Helper()
	joined := make(map[string]protocol.ServerFrame)
	got := make(map[string][]uint64)
	for len(joined) < len(missed) {
		f, err := c.NextErr(wstest.Timeout)
		if err != nil {
			t.Fatalf("resumed session: %v; got offsets %v and joined %d of rooms %v", err, got, len(joined), slices.Sorted(maps.Keys(missed)))
		}
		want, ok := missed[f.Room]
		switch {
		case !ok:
			t.Fatalf("got %s, want only frames of rooms %v", wstest.Describe(f), slices.Sorted(maps.Keys(missed)))
		case f.Type == protocol.TypeMessage:
			if _, done := joined[f.Room]; done {
				t.Fatalf("got %s after joined of its room", wstest.Describe(f))
			}
			got[f.Room] = append(got[f.Room], f.Offset)
		case f.Type == protocol.TypeJoined:
			if !slices.Equal(got[f.Room], want) {
				t.Fatalf("%s: recovered offsets %v before joined, want %v", f.Room, got[f.Room], want)
			}
			if len(f.ID) != 0 || !f.Recovered {
				t.Fatalf("joined = %s, want recovered and no id", wstest.Describe(f))
			}
			if _, dup := joined[f.Room]; dup {
				t.Fatalf("second joined %s", wstest.Describe(f))
			}
			joined[f.Room] = f
		default:
			t.Fatalf("got %s during recovery", wstest.Describe(f))
		}
	}
	return joined
}

// offsetRange returns 1+from..to.
func offsetRange(from, to uint64) []uint64 {
	var out []uint64
	for o := from + 1; o <= to; o++ {
		out = append(out, o)
	}
	return out
}

// TestDelivery_SessionRecovery checks "Session recovery": a thin client that
// keeps no positions reconnects with hello.session and is joined again to
// its rooms from the last message its old session was sent.
func TestDelivery_SessionRecovery(t *testing.T) {
	t.Parallel()
	rooms := []string{"r1", "r2", "r3"}

	// setup joins pub (on pubSrv) and thin (on thinSrv) to rooms and lets
	// thin read 3 messages of each. It returns the rooms' epochs.
	setup := func(t *testing.T, pubSrv, thinSrv *wstest.Server) (pub, thin *wstest.Conn, epochs map[string]string) {
		pub = wstest.Dial(t, pubSrv.WS, wstest.Hello{User: "pub"})
		thin = wstest.Dial(t, thinSrv.WS, wstest.Hello{User: "thin", Batch: true})
		epochs = make(map[string]string)
		for _, r := range rooms {
			epochs[r] = joinExpect(t, pub, r, nil).Epoch
			joinExpect(t, thin, r, nil)
		}
		for _, r := range rooms {
			for n := 1; n <= 3; n++ {
				publishAcked(t, pub, r, "pub", n)
			}
		}
		got := make(map[string][]uint64)
		for range 3 * len(rooms) {
			f := thin.Expect(protocol.TypeMessage)
			got[f.Room] = append(got[f.Room], f.Offset)
		}
		for _, r := range rooms {
			if !slices.Equal(got[r], []uint64{1, 2, 3}) {
				t.Fatalf("thin got offsets %v in %s, want [1 2 3]", got[r], r)
			}
		}
		return pub, thin, epochs
	}
	// away publishes 4 and 5 in every room and a direct message to thin.
	away := func(t *testing.T, pub *wstest.Conn) {
		for _, r := range rooms {
			publishAcked(t, pub, r, "pub", 4)
			publishAcked(t, pub, r, "pub", 5)
		}
		pub.Send(wstest.Frame("send", "id", "dm", "to", "thin", "data", "psst"))
		if ack := pub.Expect(protocol.TypeAck); ack.Room != "@thin" || ack.Offset != 1 {
			t.Fatalf("send ack = %s, want @thin offset 1", wstest.Describe(ack))
		}
	}
	// resumed checks what the new thin session gets: the direct message and
	// offsets 4 and 5 of every room, then live messages.
	resumed := func(t *testing.T, pub, thin2 *wstest.Conn, epochs map[string]string) {
		missed := map[string][]uint64{"@thin": {1}}
		for _, r := range rooms {
			missed[r] = []uint64{4, 5}
		}
		joined := expectRecovery(t, thin2, missed)
		for _, r := range rooms {
			if j := joined[r]; j.Epoch != epochs[r] || j.Offset != 5 {
				t.Fatalf("joined = %s, want %s offset 5", wstest.Describe(j), epochs[r])
			}
		}
		publishAcked(t, pub, "r2", "pub", 6)
		expectOffsets(t, thin2, "r2", epochs["r2"], 6, 6)
		expectNothingPending(t, thin2)
	}

	t.Run("AfterDisconnect", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		pub, thin, epochs := setup(t, srv, srv)
		old := thin.Welcome.Session
		n := srv.Hub().SessionCount()
		thin.WS().Close()
		// The state is saved before the session leaves the hub.
		wstest.Eventually(t, wstest.Timeout, "the thin session to end", func() bool {
			return srv.Hub().SessionCount() == n-1
		})
		away(t, pub)

		// Another user presenting the id gets nothing of it.
		mallory := wstest.Dial(t, srv.WS, wstest.Hello{User: "mallory", Session: old})
		if mallory.Welcome.Session == old {
			t.Fatalf("mallory was given session id %s", old)
		}
		expectNothingPending(t, mallory)

		thin2 := wstest.Dial(t, srv.WS, wstest.Hello{User: "thin", Session: old, Batch: true})
		resumed(t, pub, thin2, epochs)
	})

	t.Run("AfterDrain", func(t *testing.T) {
		t.Parallel()
		shared := newUnclosableBroker(t, memory.Config{})
		a := wstest.Start(t, switchboard.Config{Broker: shared, DrainSpread: 100 * time.Millisecond})
		b := wstest.Start(t, switchboard.Config{Broker: shared})
		pub, thin, epochs := setup(t, b, a)
		old := thin.Welcome.Session
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			a.Stop(t)
		}()
		frames := thin.ExpectClose(protocol.CloseRestarting)
		if len(frames) != 1 || frames[0].Type != protocol.TypeReconnect {
			t.Fatalf("before 4001 got %d frames (%v), want server:reconnect", len(frames), frames)
		}
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Fatal("instance A did not stop")
		}
		away(t, pub)
		thin2 := wstest.Dial(t, b.WS, wstest.Hello{User: "thin", Session: old, Batch: true})
		resumed(t, pub, thin2, epochs)
	})

	// A client may reconnect as soon as server:reconnect says so (after
	// reconnectAfter, here at most 1 ms), without waiting for the close
	// frame that follows. Its session state must already be saved then.
	t.Run("ReconnectRightAfterServerReconnect", func(t *testing.T) {
		t.Parallel()
		shared := newUnclosableBroker(t, memory.Config{})
		a := wstest.Start(t, switchboard.Config{Broker: shared, DrainSpread: time.Millisecond})
		b := wstest.Start(t, switchboard.Config{Broker: shared})
		pub, thin, epochs := setup(t, b, a)
		old := thin.Welcome.Session
		go a.Stop(t)
		f := thin.Next()
		if f.Type != protocol.TypeReconnect || f.ReconnectAfter > 1 {
			t.Fatalf("got %s, want server:reconnect within 1 ms", wstest.Describe(f))
		}
		// Not reading A any more: the close frame stays unanswered.
		away(t, pub)
		thin2 := wstest.Dial(t, b.WS, wstest.Hello{User: "thin", Session: old, Batch: true})
		resumed(t, pub, thin2, epochs)
	})

	// A thin client's own publishes were acked, not sent as messages; a
	// session that resumes it must not get them back as messages.
	t.Run("OwnPublishesAreNotReplayed", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		thin := wstest.Dial(t, srv.WS, wstest.Hello{User: "thin"})
		epoch := joinExpect(t, thin, "r1", nil).Epoch
		publishAcked(t, thin, "r1", "thin", 1)
		publishAcked(t, thin, "r1", "thin", 2)
		old := thin.Welcome.Session
		n := srv.Hub().SessionCount()
		thin.WS().Close()
		wstest.Eventually(t, wstest.Timeout, "the thin session to end", func() bool {
			return srv.Hub().SessionCount() == n-1
		})
		thin2 := wstest.Dial(t, srv.WS, wstest.Hello{User: "thin", Session: old})
		joined := expectRecovery(t, thin2, map[string][]uint64{"r1": nil, "@thin": nil})
		if j := joined["r1"]; j.Epoch != epoch || j.Offset != 2 {
			t.Fatalf("joined = %s, want %s offset 2", wstest.Describe(j), epoch)
		}
		expectNothingPending(t, thin2)
	})
}

// keptPosition is the position in room that a client keeps, starting from
// pos, after frames: that of the last message, ack, reset or joined.
func keptPosition(frames []protocol.ServerFrame, room string, pos protocol.Position) protocol.Position {
	for _, f := range frames {
		switch {
		case f.Room != room:
		case f.Type == protocol.TypeMessage, f.Type == protocol.TypeAck, f.Type == protocol.TypeReset, f.Type == protocol.TypeJoined:
			pos = protocol.Position{Epoch: f.Epoch, Offset: f.Offset}
		}
	}
	return pos
}

// TestDelivery_DrainAndResume checks "Graceful drain" and guarantees 2 and 3
// across instances: the sessions of a draining instance get server:reconnect
// and 4001, resume on another instance with the positions they kept, and
// lose nothing that was published (there) meanwhile, in a room or inbox.
func TestDelivery_DrainAndResume(t *testing.T) {
	t.Parallel()
	const (
		room   = "live"
		total  = 200
		spread = 300 * time.Millisecond
	)
	shared := newUnclosableBroker(t, memory.Config{HistorySize: total})
	a := wstest.Start(t, switchboard.Config{Broker: shared, DrainSpread: spread, HistorySize: total})
	b := wstest.Start(t, switchboard.Config{Broker: shared, HistorySize: total, Rate: unlimitedRate, Burst: unlimitedBurst})
	aID := a.Hub().InstanceID()

	pub := wstest.Dial(t, b.WS, wstest.Hello{User: "pub"})
	epoch := joinExpect(t, pub, room, nil).Epoch

	type client struct {
		user   string
		c      *wstest.Conn
		frames []protocol.ServerFrame // everything, over both connections
		inbox  protocol.Position
		done   <-chan collected
	}
	var clients []*client
	for i := range 4 {
		cl := &client{user: fmt.Sprintf("c%d", i)}
		cl.c = wstest.Dial(t, a.WS, wstest.Hello{User: cl.user, Batch: i%2 == 0})
		in := cl.c.Welcome.Inbox
		if in == nil || in.Room != protocol.Inbox(cl.user) {
			t.Fatalf("welcome = %s, want inbox %s", wstest.Describe(cl.c.Welcome), protocol.Inbox(cl.user))
		}
		cl.inbox = protocol.Position{Epoch: in.Epoch, Offset: in.Offset}
		if j := joinExpect(t, cl.c, room, nil); j.Epoch != epoch || j.Offset != 0 {
			t.Fatalf("%s: joined = %s, want %s offset 0", cl.user, wstest.Describe(j), epoch)
		}
		clients = append(clients, cl)
	}

	n := 0
	publishUpTo := func(last int) {
		t.Helper()
		for n < last {
			n++
			publishAcked(t, pub, room, "pub", n)
		}
	}
	publishUpTo(50)
	for _, cl := range clients {
		cl.done = collectUntil(cl.c, func(protocol.ServerFrame) bool { return false })
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.Stop(t)
	}()
	// Published on B while A drains.
	publishUpTo(100)
	for _, cl := range clients {
		pub.Send(wstest.Frame("send", "id", "dm-"+cl.user, "to", cl.user, "data", "hi "+cl.user))
		if ack := pub.Expect(protocol.TypeAck); ack.Room != protocol.Inbox(cl.user) || ack.Offset != 1 {
			t.Fatalf("send ack = %s, want %s offset 1", wstest.Describe(ack), protocol.Inbox(cl.user))
		}
	}
	publishUpTo(150)

	for _, cl := range clients {
		res := <-cl.done // each read is bounded by wstest.Timeout
		var ce *websocket.CloseError
		if !errors.As(res.err, &ce) || ce.Code != protocol.CloseRestarting {
			t.Fatalf("%s: connection to A ended with %v, want close 4001", cl.user, res.err)
		}
		reconnects := 0
		for _, f := range res.frames {
			if f.Type == protocol.TypeReconnect {
				reconnects++
				if f.Server != aID || f.ReconnectAfter < 0 || f.ReconnectAfter > spread.Milliseconds() {
					t.Fatalf("%s: got %s, want server %s and reconnectAfter in [0, %d]", cl.user, wstest.Describe(f), aID, spread.Milliseconds())
				}
			}
		}
		if reconnects != 1 {
			t.Fatalf("%s: got %d server:reconnect frames before 4001, want 1", cl.user, reconnects)
		}
		cl.frames = res.frames
	}
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("instance A did not stop")
	}
	instances, err := b.Hub().Instances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range instances {
		if in.ID == aID {
			t.Fatalf("drained instance %s is still listed: %v", aID, instances)
		}
	}

	// Reconnect to B with the positions each client kept.
	for _, cl := range clients {
		livePos := keptPosition(cl.frames, room, protocol.Position{Epoch: epoch})
		inboxPos := keptPosition(cl.frames, protocol.Inbox(cl.user), cl.inbox)
		cl.c = wstest.Dial(t, b.WS, wstest.Hello{User: cl.user, Batch: cl.user == "c1",
			Resume: map[string]protocol.Position{room: livePos, protocol.Inbox(cl.user): inboxPos}})
		missed := map[string][]uint64{room: offsetRange(livePos.Offset, 150), protocol.Inbox(cl.user): offsetRange(inboxPos.Offset, 1)}
		var before []protocol.ServerFrame
		// expectRecovery checks the order; keep the frames for the totals.
		joined := expectRecovery(t, cl.c, missed)
		for r, want := range missed {
			latest := uint64(150)
			if r != room {
				latest = 1
			}
			if j := joined[r]; j.Offset != latest {
				t.Fatalf("%s: joined = %s, want recovered up to offset %d", cl.user, wstest.Describe(j), latest)
			}
			for _, o := range want {
				before = append(before, protocol.ServerFrame{Type: protocol.TypeMessage, Room: r, Epoch: joined[r].Epoch, Offset: o})
			}
		}
		cl.frames = append(cl.frames, before...)
	}
	publishUpTo(total)
	for _, cl := range clients {
		cl.frames = append(cl.frames, expectOffsets(t, cl.c, room, epoch, 151, total)...)
		expectNothingPending(t, cl.c)
	}

	for _, cl := range clients {
		var live []uint64
		inbox := 0
		for _, f := range cl.frames {
			if f.Type != protocol.TypeMessage {
				continue
			}
			switch f.Room {
			case room:
				live = append(live, f.Offset)
			case protocol.Inbox(cl.user):
				inbox++
			}
		}
		if !slices.Equal(live, offsetRange(0, total)) {
			t.Fatalf("%s: got offsets %v over both instances, want 1..%d once each", cl.user, live, total)
		}
		if inbox != 1 {
			t.Fatalf("%s: got the direct message %d times, want once", cl.user, inbox)
		}
	}
}

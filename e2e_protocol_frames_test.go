package switchboard_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProtocol_ServerFrames covers each frame of the "Server → client"
// section: its fields, as they appear on the wire.
func TestProtocol_ServerFrames(t *testing.T) {
	t.Parallel()

	t.Run("welcome", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{Heartbeat: 30 * time.Second})
		c := wstest.DialRaw(t, srv.WS, nil)
		c.Send(wstest.Frame("hello", "user", "alice"))
		raw := c.ReadRaw()
		fields := rawFields(t, raw)
		for _, name := range []string{"type", "session", "user", "instance", "heartbeat", "inbox"} {
			if _, ok := fields[name]; !ok {
				t.Errorf("welcome %s has no field %q", raw, name)
			}
		}
		inbox := rawFields(t, fields["inbox"])
		for _, name := range []string{"room", "epoch", "offset"} {
			if _, ok := inbox[name]; !ok {
				t.Errorf("welcome.inbox %s has no field %q", fields["inbox"], name)
			}
		}
		frames, err := protocol.DecodeServer(raw)
		if err != nil || len(frames) != 1 {
			t.Fatalf("DecodeServer(%s) = %d frames, %v", raw, len(frames), err)
		}
		w := frames[0]
		if got, want := w.Type, protocol.TypeWelcome; got != want {
			t.Errorf("type = %q, want %q", got, want)
		}
		if !strings.HasPrefix(w.Session, "s_") || len(w.Session) < 4 {
			t.Errorf("session = %q, want s_…", w.Session)
		}
		if got, want := w.User, "alice"; got != want {
			t.Errorf("user = %q, want %q", got, want)
		}
		if got, want := w.Instance, srv.Hub().InstanceID(); got != want || !strings.HasPrefix(got, "i_") {
			t.Errorf("instance = %q, want %q (i_…)", got, want)
		}
		if got, want := w.Heartbeat, int64(30000); got != want {
			t.Errorf("heartbeat = %d, want %d", got, want)
		}
		if w.Inbox == nil || w.Inbox.Room != "@alice" || w.Inbox.Epoch == "" || w.Inbox.Offset != 0 {
			t.Errorf("inbox = %+v, want room @alice, an epoch, offset 0", w.Inbox)
		}

		// Another session of alice: another session id, the same inbox.
		other := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		if other.Welcome.Session == w.Session {
			t.Errorf("two sessions share the id %q", w.Session)
		}
		if *other.Welcome.Inbox != *w.Inbox {
			t.Errorf("second session's inbox = %+v, want %+v", *other.Welcome.Inbox, *w.Inbox)
		}
	})

	t.Run("joined", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		bob.Join("general")
		epoch := publishN(t, bob, "general", 2)
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		c.Send(wstest.Frame("join", "id", 1, "room", "general"))
		raw := c.ReadRaw()
		fields := rawFields(t, raw)
		want := map[string]string{"type": `"joined"`, "id": "1", "room": `"general"`, "epoch": `"` + epoch + `"`, "offset": "2", "recovered": "false"}
		checkFields(t, raw, fields, want)
	})

	t.Run("left", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		c.Join("general")
		c.Send(wstest.Frame("leave", "id", 2, "room", "general"))
		raw := c.ReadRaw()
		checkFields(t, raw, rawFields(t, raw), map[string]string{"type": `"left"`, "id": "2", "room": `"general"`})
	})

	t.Run("message", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		alice.Join("general")
		bob.Join("general")
		before := time.Now()
		ack := alice.Publish("general", map[string]any{"text": "hi", "n": []int{1, 2}})
		raw := bob.ReadRaw()
		fields := rawFields(t, raw)
		if _, ok := fields["ts"]; !ok {
			t.Errorf("message %s has no ts", raw)
		}
		delete(fields, "ts")
		checkFields(t, raw, fields, map[string]string{
			"type": `"message"`, "room": `"general"`, "epoch": `"` + ack.Epoch + `"`, "offset": "1",
			"from": `"alice"`, "data": `{"n":[1,2],"text":"hi"}`,
		})
		frames, _ := protocol.DecodeServer(raw)
		checkMessage(t, "bob", frames[0], ack.Epoch, "alice", `{"n":[1,2],"text":"hi"}`, before)
	})

	t.Run("ack", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Join("general")
		alice.Send(wstest.Frame("publish", "id", 3, "room", "general", "data", true))
		raw := alice.ReadRaw()
		fields := rawFields(t, raw)
		if _, ok := fields["epoch"]; !ok {
			t.Errorf("ack %s has no epoch", raw)
		}
		delete(fields, "epoch")
		checkFields(t, raw, fields, map[string]string{"type": `"ack"`, "id": "3", "room": `"general"`, "offset": "1"})
	})

	t.Run("presence", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice2 := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Join("general")
		alice2.Join("general")
		alice.Send(wstest.Frame("presence", "id", 5, "room", "general"))
		raw := alice.ReadRaw()
		checkFields(t, raw, rawFields(t, raw), map[string]string{
			"type": `"presence"`, "id": "5", "room": `"general"`, "total": "1", "users": `[{"user":"alice","sessions":2}]`,
		})
	})

	t.Run("history", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Join("general")
		epoch := publishN(t, alice, "general", 2)
		alice.Send(wstest.Frame("history", "id", 6, "room", "general"))
		raw := alice.ReadRaw()
		fields := rawFields(t, raw)
		msgs := fields["messages"]
		delete(fields, "messages")
		delete(fields, "offset") // not in PROTOCOL.md's example; allowed
		checkFields(t, raw, fields, map[string]string{"type": `"history"`, "id": "6", "room": `"general"`, "epoch": `"` + epoch + `"`})
		frames, err := protocol.DecodeServer(raw)
		if err != nil {
			t.Fatal(err)
		}
		if len(frames[0].Messages) != 2 {
			t.Fatalf("history messages = %s, want 2", msgs)
		}
		for i, m := range frames[0].Messages {
			if m.Type != protocol.TypeMessage || m.Room != "general" || m.Epoch != epoch || m.Offset != uint64(i+1) || m.From != "alice" || m.TS == 0 {
				t.Errorf("history message %d = %s, want the message frame of offset %d", i, wstest.Describe(m), i+1)
			}
		}
	})

	t.Run("reset", func(t *testing.T) {
		t.Parallel()
		// The room's history expires (on a clock the test moves); the next
		// publish starts a new epoch, and members are told with reset.
		clock := &fakeClock{now: time.Now()}
		b := memory.New(memory.Config{HistoryTTL: time.Minute, Now: clock.Now})
		srv := wstest.Start(t, switchboard.Config{Broker: b})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		alice.Join("general")
		bob.Join("general")
		old := bob.Publish("general", 1)
		alice.ExpectMessage("general", 1)

		clock.Advance(2 * time.Minute)
		bob.Send(wstest.Frame("publish", "id", 2, "room", "general", "data", 2))
		var fresh protocol.ServerFrame
		for {
			f := bob.Next()
			if f.Type == protocol.TypeAck {
				fresh = f
				break
			}
			if f.Type != protocol.TypeReset { // bob is a member too
				t.Fatalf("bob got %s, want reset or ack", wstest.Describe(f))
			}
		}
		if fresh.Epoch == old.Epoch || fresh.Offset != 1 {
			t.Fatalf("publish after expiry acked %s, want offset 1 of a new epoch", wstest.Describe(fresh))
		}

		r := alice.Next()
		raw := wstest.Describe(r)
		if r.Type != protocol.TypeReset || r.Room != "general" || r.Epoch != fresh.Epoch || r.Offset != 0 {
			t.Fatalf("alice got %s, want reset of general to epoch %q offset 0", raw, fresh.Epoch)
		}
		m := alice.ExpectMessage("general", 1)
		if m.Epoch != fresh.Epoch {
			t.Errorf("message after reset has epoch %q, want %q", m.Epoch, fresh.Epoch)
		}

		// A join with since of the old epoch recovers nothing.
		carol := wstest.Dial(t, srv.WS, wstest.Hello{User: "carol"})
		carol.Send(wstest.Frame("join", "id", 1, "room", "general", "since", protocol.Position{Epoch: old.Epoch, Offset: 1}))
		checkJoined(t, carol.Expect(protocol.TypeJoined), "1", "general", fresh.Epoch, 1, false)
	})

	t.Run("pong", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		c.Send(wstest.Frame("ping", "id", 7))
		raw := c.ReadRaw()
		checkFields(t, raw, rawFields(t, raw), map[string]string{"type": `"pong"`, "id": "7"})
	})

	t.Run("error", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		c.Send(wstest.Frame("publish", "id", 3, "room", "general", "data", 1))
		raw := c.ReadRaw()
		fields := rawFields(t, raw)
		if msg := string(fields["message"]); len(msg) < 3 {
			t.Errorf("error %s has no message", raw)
		}
		delete(fields, "message")
		checkFields(t, raw, fields, map[string]string{"type": `"error"`, "id": "3", "code": `"not_joined"`})
	})

	t.Run("server:reconnect", func(t *testing.T) {
		t.Parallel()
		const spread = 300 * time.Millisecond
		srv := wstest.Start(t, switchboard.Config{DrainSpread: spread})
		conns := make([]*wstest.Conn, 5)
		for i := range conns {
			conns[i] = wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		}
		stopped := stopAsync(t, srv)
		for i, c := range conns {
			before := c.ExpectClose(protocol.CloseRestarting)
			if len(before) != 1 || before[0].Type != protocol.TypeReconnect {
				t.Errorf("session %d got %d frames before 4001, want just server:reconnect", i, len(before))
				continue
			}
			r := before[0]
			if r.ReconnectAfter < 0 || r.ReconnectAfter > spread.Milliseconds() {
				t.Errorf("reconnectAfter = %d, want within [0, %d]", r.ReconnectAfter, spread.Milliseconds())
			}
			if got, want := r.Server, srv.Hub().InstanceID(); got != want {
				t.Errorf("server = %q, want %q", got, want)
			}
		}
		<-stopped
	})
}

// checkFields compares the JSON fields of a frame to want, exactly: no
// field missing, none extra.
func checkFields(t *testing.T, raw []byte, got map[string]json.RawMessage, want map[string]string) {
	t.Helper()
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("frame %s has no field %q, want %s", raw, name, w)
			continue
		}
		if string(g) != w {
			t.Errorf("frame %s: %s = %s, want %s", raw, name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("frame %s has unexpected field %q", raw, name)
		}
	}
}

// stopAsync drains srv in the background, so that the test can read what
// its sessions get meanwhile; the channel is closed when Serve returned.
func stopAsync(t *testing.T, srv *wstest.Server) <-chan struct{} {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Stop(t)
	}()
	return done
}

// fakeClock is a clock for the memory broker that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

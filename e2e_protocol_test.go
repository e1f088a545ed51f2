package switchboard_test

// End-to-end tests of PROTOCOL.md over real WebSocket connections to real
// listeners: one test (or subtest) per row of its tables. Each subtest starts
// its own instance, so they run in parallel.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProtocol_ClientFrames covers the rows of the "Client → server" table.
func TestProtocol_ClientFrames(t *testing.T) {
	t.Parallel()

	t.Run("hello", func(t *testing.T) {
		t.Parallel()

		t.Run("welcome", func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, switchboard.Config{})
			alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
			if got, want := alice.Welcome.User, "alice"; got != want {
				t.Errorf("welcome.user = %q, want %q", got, want)
			}
			if got := alice.Welcome.Session; !strings.HasPrefix(got, "s_") {
				t.Errorf("welcome.session = %q, want prefix s_", got)
			}
		})

		t.Run("resume", func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, switchboard.Config{})
			bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
			bob.Join("general")
			epoch := publishN(t, bob, "general", 3)

			alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice",
				Resume: map[string]protocol.Position{"general": {Epoch: epoch, Offset: 1}}})
			alice.ExpectMessage("general", 2)
			alice.ExpectMessage("general", 3)
			j := alice.Expect(protocol.TypeJoined)
			checkJoined(t, j, "", "general", epoch, 3, true)

			bob.Publish("general", 4)
			alice.ExpectMessage("general", 4)
		})

		// A resumed room gets what join with since would send: for a room
		// that cannot be joined, an error frame (without id; docs/protocol.md
		// says its message names the room), and the other rooms still resume.
		for name, bad := range map[string]struct{ room, code string }{
			"resume forbidden room": {"@bob", protocol.CodeForbidden},
			"resume bad room name":  {"bad room", protocol.CodeBadRoom},
		} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv := wstest.Start(t, switchboard.Config{})
				bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
				bob.Join("general")
				epoch := publishN(t, bob, "general", 2)

				alice := wstest.DialRaw(t, srv.WS, nil)
				alice.Send(wstest.Frame("hello", "user", "alice", "resume", map[string]protocol.Position{
					bad.room: {Epoch: epoch, Offset: 0}, "general": {Epoch: epoch, Offset: 1},
				}))
				f, err := alice.NextErr(wstest.Timeout)
				if err != nil {
					t.Fatalf("hello resuming %q and general: %v, want welcome", bad.room, err)
				}
				if f.Type != protocol.TypeWelcome {
					t.Fatalf("got %s, want welcome", wstest.Describe(f))
				}
				var sawError, sawJoined bool
				for !sawJoined {
					f := alice.Next()
					switch {
					case f.Type == protocol.TypeError:
						checkError(t, f, "", bad.code)
						if !strings.Contains(f.Message, bad.room) {
							t.Errorf("error message %q does not name %q", f.Message, bad.room)
						}
						sawError = true
					case f.Type == protocol.TypeMessage:
						if f.Room != "general" || f.Offset != 2 {
							t.Errorf("resumed with %s, want general's message 2", wstest.Describe(f))
						}
					case f.Type == protocol.TypeJoined:
						checkJoined(t, f, "", "general", epoch, 2, true)
						sawJoined = true
					default:
						t.Fatalf("got %s", wstest.Describe(f))
					}
				}
				if !sawError {
					t.Errorf("no error frame for %q", bad.room)
				}
			})
		}

		t.Run("resume inbox", func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, switchboard.Config{})
			first := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
			inboxEpoch := first.Welcome.Inbox.Epoch
			bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
			for i := 1; i <= 2; i++ {
				bob.Send(wstest.Frame("send", "id", i, "to", "alice", "data", i))
				bob.Expect(protocol.TypeAck)
			}

			alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice",
				Resume: map[string]protocol.Position{"@alice": {Epoch: inboxEpoch, Offset: 1}}})
			if got, want := *alice.Welcome.Inbox, (protocol.RoomPosition{Room: "@alice", Epoch: inboxEpoch, Offset: 2}); got != want {
				t.Errorf("welcome.inbox = %+v, want %+v", got, want)
			}
			m := alice.ExpectMessage("@alice", 2)
			if got, want := string(m.Data), "2"; got != want {
				t.Errorf("message data = %s, want %s", got, want)
			}
			checkJoined(t, alice.Expect(protocol.TypeJoined), "", "@alice", inboxEpoch, 2, true)
		})

		t.Run("session", func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, switchboard.Config{})
			bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
			bob.Join("general")
			old := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
			old.Join("general")
			epoch := publishN(t, bob, "general", 2)
			old.ExpectMessage("general", 1)
			old.ExpectMessage("general", 2)
			old.CloseWith(protocol.CloseNormal, "bye")
			old.ExpectClose(protocol.CloseNormal)
			wstest.Eventually(t, wstest.Timeout, "the old session to end", func() bool {
				return srv.Hub().SessionCount() == 1
			})
			bob.Publish("general", 3)
			bob.Publish("general", 4)

			alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice", Session: old.Welcome.Session})
			if alice.Welcome.Session == old.Welcome.Session {
				t.Errorf("welcome.session = %q, the old session's id; want a new one", alice.Welcome.Session)
			}
			// The inbox is part of the saved state: it is resumed first.
			checkJoined(t, alice.Expect(protocol.TypeJoined), "", "@alice", old.Welcome.Inbox.Epoch, 0, true)
			alice.ExpectMessage("general", 3)
			alice.ExpectMessage("general", 4)
			checkJoined(t, alice.Expect(protocol.TypeJoined), "", "general", epoch, 4, true)

			// Another user's session id resumes nothing.
			mallory := wstest.Dial(t, srv.WS, wstest.Hello{User: "mallory", Session: old.Welcome.Session})
			if got := mallory.Ping(); len(got) != 0 {
				t.Errorf("hello with another user's session sent %d frames, want none: first %s", len(got), wstest.Describe(got[0]))
			}
		})
	})

	t.Run("join", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		bob.Join("general")
		epoch := publishN(t, bob, "general", 3)

		// A plain join starts at the room's latest offset.
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Send(wstest.Frame("join", "id", 1, "room", "general"))
		checkJoined(t, alice.Expect(protocol.TypeJoined), "1", "general", epoch, 3, false)

		// since in the current epoch: the missed messages, then joined.
		rec := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		rec.Send(wstest.Frame("join", "id", 2, "room", "general", "since", protocol.Position{Epoch: epoch, Offset: 1}))
		for _, off := range []uint64{2, 3} {
			m := rec.ExpectMessage("general", off)
			if got, want := m.Epoch, epoch; got != want {
				t.Errorf("missed message epoch = %q, want %q", got, want)
			}
		}
		checkJoined(t, rec.Expect(protocol.TypeJoined), "2", "general", epoch, 3, true)

		// since of another epoch: nothing recovered, live from the latest.
		lost := wstest.Dial(t, srv.WS, wstest.Hello{User: "carol"})
		lost.Send(wstest.Frame("join", "id", 3, "room", "general", "since", protocol.Position{Epoch: "not-" + epoch, Offset: 1}))
		checkJoined(t, lost.Expect(protocol.TypeJoined), "3", "general", epoch, 3, false)

		// Live messages follow joined, for all of them.
		bob.Publish("general", 4)
		alice.ExpectMessage("general", 4)
		rec.ExpectMessage("general", 4)
		lost.ExpectMessage("general", 4)

		// Joining again answers the current position and changes nothing.
		alice.Send(wstest.Frame("join", "id", 4, "room", "general"))
		checkJoined(t, alice.Expect(protocol.TypeJoined), "4", "general", epoch, 4, false)
		bob.Publish("general", 5)
		alice.ExpectMessage("general", 5)
		if got := alice.Ping(); len(got) != 0 {
			t.Errorf("after a second join, got %d extra frames, first %s", len(got), wstest.Describe(got[0]))
		}
	})

	t.Run("leave", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		bob.Join("general")
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Join("general")

		alice.Send(wstest.Frame("leave", "id", 2, "room", "general"))
		left := alice.Expect(protocol.TypeLeft)
		if got, want := string(left.ID), "2"; got != want {
			t.Errorf("left.id = %s, want %s", got, want)
		}
		if got, want := left.Room, "general"; got != want {
			t.Errorf("left.room = %q, want %q", got, want)
		}

		bob.Publish("general", "after leave")
		if got := alice.Ping(); len(got) != 0 {
			t.Errorf("after leave got %d frames, want none: first %s", len(got), wstest.Describe(got[0]))
		}
		alice.Send(wstest.Frame("publish", "id", 3, "room", "general", "data", 1))
		checkError(t, alice.Next(), "3", protocol.CodeNotJoined)
		alice.Send(wstest.Frame("leave", "id", 4, "room", "general"))
		checkError(t, alice.Next(), "4", protocol.CodeNotJoined)
		alice.Send(wstest.Frame("leave", "id", 5, "room", "@alice"))
		checkError(t, alice.Next(), "5", protocol.CodeBadRequest)
	})

	t.Run("publish", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		pub := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		tab := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		echo := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice", Echo: true})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		for _, c := range []*wstest.Conn{pub, tab, echo, bob} {
			c.Join("general")
		}

		before := time.Now()
		pub.Send(wstest.Frame("publish", "id", 3, "room", "general", "data", map[string]string{"text": "hi"}))
		ack := pub.Expect(protocol.TypeAck)
		checkAck(t, ack, "3", "general", 1)
		for name, c := range map[string]*wstest.Conn{"other tab of alice": tab, "echo tab of alice": echo, "bob": bob} {
			m := c.ExpectMessage("general", 1)
			checkMessage(t, name, m, ack.Epoch, "alice", `{"text":"hi"}`, before)
		}

		// The publishing session got the ack instead of its message: its
		// next frame is bob's message at offset 2.
		bob.Publish("general", "from bob")
		m := pub.ExpectMessage("general", 2)
		checkMessage(t, "publisher", m, ack.Epoch, "bob", `"from bob"`, before)
		tab.ExpectMessage("general", 2)
		echo.ExpectMessage("general", 2)

		// echo: true gets both its message and the ack.
		echo.Send(wstest.Frame("publish", "id", "e", "room", "general", "data", "echoed"))
		var gotAck, gotMsg bool
		for range 2 {
			f := echo.Next()
			switch f.Type {
			case protocol.TypeAck:
				checkAck(t, f, `"e"`, "general", 3)
				gotAck = true
			case protocol.TypeMessage:
				checkMessage(t, "echo publisher", f, ack.Epoch, "alice", `"echoed"`, before)
				gotMsg = true
			default:
				t.Fatalf("echo publisher got %s, want ack and message", wstest.Describe(f))
			}
		}
		if !gotAck || !gotMsg {
			t.Errorf("echo publisher got ack %v, message %v; want both", gotAck, gotMsg)
		}
		pub.ExpectMessage("general", 3)
		tab.ExpectMessage("general", 3)
		bob.ExpectMessage("general", 3)

		// A session's publishes to one room get increasing offsets in the
		// order sent, and their acks come back in that order.
		for i := range 5 {
			pub.Send(wstest.Frame("publish", "id", 100+i, "room", "general", "data", i))
		}
		for i := range 5 {
			checkAck(t, pub.Expect(protocol.TypeAck), fmt.Sprint(100+i), "general", uint64(4+i))
		}
		for i := range 5 {
			m := bob.ExpectMessage("general", uint64(4+i))
			if got, want := string(m.Data), fmt.Sprint(i); got != want {
				t.Errorf("message %d data = %s, want %s", 4+i, got, want)
			}
		}
	})

	t.Run("publish key", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		pub := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		pub.Join("general")
		bob.Join("general")

		pub.Send(wstest.Frame("publish", "id", 1, "room", "general", "data", "once", "key", "k-1"))
		first := pub.Expect(protocol.TypeAck)
		checkAck(t, first, "1", "general", 1)
		pub.Send(wstest.Frame("publish", "id", 2, "room", "general", "data", "once", "key", "k-1"))
		again := pub.Expect(protocol.TypeAck)
		checkAck(t, again, "2", "general", 1)
		if again.Epoch != first.Epoch {
			t.Errorf("repeated key acked epoch %q, want the first publish's %q", again.Epoch, first.Epoch)
		}
		pub.Send(wstest.Frame("publish", "id", 3, "room", "general", "data", "next", "key", "k-2"))
		checkAck(t, pub.Expect(protocol.TypeAck), "3", "general", 2)

		bob.ExpectMessage("general", 1)
		bob.ExpectMessage("general", 2)
		if got := bob.Ping(); len(got) != 0 {
			t.Errorf("the repeated key was delivered again: %s", wstest.Describe(got[0]))
		}
	})

	t.Run("send", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		bob1 := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		bob2 := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})

		before := time.Now()
		alice.Send(wstest.Frame("send", "id", 9, "to", "bob", "data", map[string]int{"n": 1}))
		ack := alice.Expect(protocol.TypeAck)
		checkAck(t, ack, "9", "@bob", 1)
		if got, want := ack.Epoch, bob1.Welcome.Inbox.Epoch; got != want {
			t.Errorf("ack.epoch = %q, want bob's inbox epoch %q", got, want)
		}
		for name, c := range map[string]*wstest.Conn{"bob tab 1": bob1, "bob tab 2": bob2} {
			m := c.ExpectMessage("@bob", 1)
			checkMessage(t, name, m, ack.Epoch, "alice", `{"n":1}`, before)
		}

		// A user offline gets it in its inbox history.
		alice.Send(wstest.Frame("send", "id", 10, "to", "carol", "data", "later"))
		checkAck(t, alice.Expect(protocol.TypeAck), "10", "@carol", 1)
		carol := wstest.Dial(t, srv.WS, wstest.Hello{User: "carol"})
		if got, want := carol.Welcome.Inbox.Offset, uint64(1); got != want {
			t.Errorf("carol's welcome.inbox.offset = %d, want %d", got, want)
		}
		carol.Send(wstest.Frame("history", "id", 1, "room", "@carol"))
		h := carol.Expect(protocol.TypeHistory)
		if len(h.Messages) != 1 || string(h.Messages[0].Data) != `"later"` || h.Messages[0].From != "alice" {
			t.Errorf("carol's inbox history = %s, want the one message from alice", wstest.Describe(h))
		}
	})

	t.Run("presence", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		alice1 := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice2 := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		carol := wstest.Dial(t, srv.WS, wstest.Hello{User: "carol"})
		alice1.Join("general")
		alice2.Join("general")
		bob.Join("general")
		carol.Join("elsewhere")

		// Presence needs no membership.
		carol.Send(wstest.Frame("presence", "id", 4, "room", "general"))
		p := carol.Expect(protocol.TypePresence)
		checkPresence(t, p, "4", "general", []protocol.UserSessions{{User: "alice", Sessions: 2}, {User: "bob", Sessions: 1}})

		bob.CloseWith(protocol.CloseNormal, "")
		bob.ExpectClose(protocol.CloseNormal)
		wstest.Eventually(t, wstest.Timeout, "bob to leave the presence of general", func() bool {
			carol.Send(wstest.Frame("presence", "id", 5, "room", "general"))
			return len(carol.Expect(protocol.TypePresence).Users) == 1
		})
		carol.Send(wstest.Frame("presence", "id", 6, "room", "general"))
		checkPresence(t, carol.Expect(protocol.TypePresence), "6", "general", []protocol.UserSessions{{User: "alice", Sessions: 2}})

		carol.Send(wstest.Frame("presence", "id", 7, "room", "empty"))
		checkPresence(t, carol.Expect(protocol.TypePresence), "7", "empty", nil)
	})

	t.Run("history", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		bob.Join("news")
		epoch := publishN(t, bob, "news", 5)
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})

		cases := []struct {
			name  string
			since *protocol.Position
			limit int
			want  []uint64
		}{
			{"since and limit", &protocol.Position{Epoch: epoch, Offset: 2}, 2, []uint64{3, 4}},
			{"since", &protocol.Position{Epoch: epoch, Offset: 2}, 0, []uint64{3, 4, 5}},
			{"limit", nil, 2, []uint64{4, 5}},
			{"all", nil, 0, []uint64{1, 2, 3, 4, 5}},
			{"since of another epoch", &protocol.Position{Epoch: "x" + epoch, Offset: 4}, 0, []uint64{1, 2, 3, 4, 5}},
			{"since the latest", &protocol.Position{Epoch: epoch, Offset: 5}, 0, nil},
		}
		for i, tc := range cases {
			kv := []any{"id", i, "room", "news"}
			if tc.since != nil {
				kv = append(kv, "since", tc.since)
			}
			if tc.limit != 0 {
				kv = append(kv, "limit", tc.limit)
			}
			alice.Send(wstest.Frame("history", kv...))
			h := alice.Expect(protocol.TypeHistory)
			if got, want := string(h.ID), fmt.Sprint(i); got != want {
				t.Errorf("%s: history.id = %s, want %s", tc.name, got, want)
			}
			if h.Room != "news" || h.Epoch != epoch {
				t.Errorf("%s: history room %q epoch %q, want news %q", tc.name, h.Room, h.Epoch, epoch)
			}
			var got []uint64
			for _, m := range h.Messages {
				got = append(got, m.Offset)
				if m.Type != protocol.TypeMessage || m.Room != "news" || m.Epoch != epoch || m.From != "bob" ||
					string(m.Data) != fmt.Sprint(m.Offset) || m.TS == 0 {
					t.Errorf("%s: history message %s is not the message bob published", tc.name, wstest.Describe(m))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s: history offsets = %v, want %v", tc.name, got, tc.want)
			}
		}
		alice.Send(wstest.Frame("history", "id", "neg", "room", "news", "limit", -1))
		checkError(t, alice.Next(), `"neg"`, protocol.CodeBadRequest)
	})

	t.Run("refresh", func(t *testing.T) {
		t.Parallel()
		secret := []byte("refresh-secret")
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})})

		alice.Send(wstest.Frame("refresh", "id", 8, "token", sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(2 * time.Hour)})))
		ack := alice.Expect(protocol.TypeAck)
		if got, want := string(ack.ID), "8"; got != want {
			t.Errorf("ack.id = %s, want %s", got, want)
		}
		if ack.Room != "" || ack.Epoch != "" || ack.Offset != 0 {
			t.Errorf("refresh ack = %s, want no position", wstest.Describe(ack))
		}
		alice.Send(wstest.Frame("refresh", "id", 9, "token", sign(t, secret, auth.Claims{User: "bob", Expires: time.Now().Add(time.Hour)})))
		checkError(t, alice.Next(), "9", protocol.CodeForbidden)
		alice.Send(wstest.Frame("refresh", "id", 10, "token", "not.a.token"))
		checkError(t, alice.Next(), "10", protocol.CodeForbidden)
		alice.Send(wstest.Frame("refresh", "id", 11, "token", sign(t, []byte("other secret"), auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})))
		checkError(t, alice.Next(), "11", protocol.CodeForbidden)
		alice.Send(wstest.Frame("refresh", "id", 12, "token", sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(-time.Hour)})))
		checkError(t, alice.Next(), "12", protocol.CodeForbidden)
		// The session lives on with its token.
		alice.Ping()
	})

	t.Run("ping", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Send(wstest.Frame("ping", "id", 7))
		pong := alice.Expect(protocol.TypePong)
		if got, want := string(pong.ID), "7"; got != want {
			t.Errorf("pong.id = %s, want %s", got, want)
		}
		alice.Send(`{"type":"ping"}`)
		if pong := alice.Expect(protocol.TypePong); pong.ID != nil {
			t.Errorf("pong to a ping without id has id %s, want none", pong.ID)
		}
	})
}

// publishN publishes the numbers 1..n to room (the session must have joined
// it and the room be new) and returns the room's epoch.
func publishN(t *testing.T, c *wstest.Conn, room string, n int) string {
	t.Helper()
	var epoch string
	for i := 1; i <= n; i++ {
		ack := c.Publish(room, i)
		if ack.Offset != uint64(i) {
			t.Fatalf("publish %d to %s acked offset %d, want %d", i, room, ack.Offset, i)
		}
		epoch = ack.Epoch
	}
	return epoch
}

// sign returns an HS256 token for c.
func sign(t testing.TB, secret []byte, c auth.Claims) string {
	t.Helper()
	tok, err := auth.Sign(secret, c)
	if err != nil {
		t.Fatalf("auth.Sign: %v", err)
	}
	return tok
}

func checkJoined(t *testing.T, f protocol.ServerFrame, id, room, epoch string, offset uint64, recovered bool) {
	t.Helper()
	if f.Type != protocol.TypeJoined {
		t.Fatalf("got %s, want joined", wstest.Describe(f))
	}
	if string(f.ID) != id || f.Room != room || f.Epoch != epoch || f.Offset != offset || f.Recovered != recovered {
		t.Errorf("got %s, want joined id %s room %q epoch %q offset %d recovered %v",
			wstest.Describe(f), id, room, epoch, offset, recovered)
	}
}

func checkAck(t *testing.T, f protocol.ServerFrame, id, room string, offset uint64) {
	t.Helper()
	if f.Type != protocol.TypeAck {
		t.Fatalf("got %s, want ack", wstest.Describe(f))
	}
	if string(f.ID) != id || f.Room != room || f.Offset != offset || f.Epoch == "" {
		t.Errorf("got %s, want ack id %s room %q offset %d with an epoch", wstest.Describe(f), id, room, offset)
	}
}

func checkMessage(t *testing.T, who string, f protocol.ServerFrame, epoch, from, data string, since time.Time) {
	t.Helper()
	if f.Epoch != epoch || f.From != from || string(f.Data) != data {
		t.Errorf("%s got %s, want epoch %q from %q data %s", who, wstest.Describe(f), epoch, from, data)
	}
	ts := time.UnixMilli(f.TS)
	if ts.Before(since.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("%s got ts %d (%v), want between %v and now", who, f.TS, ts, since)
	}
}

func checkError(t *testing.T, f protocol.ServerFrame, id, code string) {
	t.Helper()
	if f.Type != protocol.TypeError {
		t.Fatalf("got %s, want error %s", wstest.Describe(f), code)
	}
	if string(f.ID) != id || f.Code != code || f.Message == "" {
		t.Errorf("got %s, want error id %s code %q with a message", wstest.Describe(f), id, code)
	}
}

func checkPresence(t *testing.T, f protocol.ServerFrame, id, room string, users []protocol.UserSessions) {
	t.Helper()
	if string(f.ID) != id || f.Room != room || f.Total != len(users) || fmt.Sprint(f.Users) != fmt.Sprint(users) {
		t.Errorf("got %s, want presence id %s room %q total %d users %v", wstest.Describe(f), id, room, len(users), users)
	}
}

// rawFields decodes one JSON object and returns its field names.
func rawFields(t *testing.T, b []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return m
}

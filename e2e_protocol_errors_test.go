package switchboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProtocol_ErrorCodes covers each error frame code of "Errors and close
// codes".
func TestProtocol_ErrorCodes(t *testing.T) {
	t.Parallel()

	t.Run("bad_request", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		cases := []struct {
			name, frame, id string
		}{
			{"malformed JSON", `{"type":"ping",`, ""},
			{"not an object", `[1,2]`, ""},
			{"no type", `{"id":1}`, "1"},
			{"field of the wrong type", `{"type":"join","id":2,"room":5}`, "2"},
			{"publish without data", `{"type":"publish","id":3,"room":"general"}`, "3"},
			{"send without to", `{"type":"send","id":4,"data":1}`, "4"},
			{"key too long", wstest.Frame("publish", "id", 5, "room", "general", "data", 1, "key", strings.Repeat("k", 65)), "5"},
			{"data in capitals (field names are exact)", `{"type":"publish","id":6,"room":"general","DATA":1}`, "6"},
			{"room given twice", `{"type":"join","id":6,"room":"a","room":"b"}`, "6"},
			{"hello twice", `{"type":"hello","id":7,"user":"alice"}`, "7"},
		}
		for _, tc := range cases {
			c.Send(tc.frame)
			f := c.Next()
			if f.Type != protocol.TypeError || f.Code != protocol.CodeBadRequest || string(f.ID) != tc.id || f.Message == "" {
				t.Errorf("%s: %s got %s, want bad_request with id %q", tc.name, tc.frame, wstest.Describe(f), tc.id)
			}
		}
		if err := c.WS().WriteMessage(websocket.BinaryMessage, []byte(`{"type":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		checkError(t, c.Next(), "", protocol.CodeBadRequest)
	})

	t.Run("unknown_type", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		c.Send(wstest.Frame("dance", "id", 1, "room", "general"))
		checkError(t, c.Next(), "1", protocol.CodeUnknownType)
		c.Send(wstest.Frame("welcome", "id", "w"))
		checkError(t, c.Next(), `"w"`, protocol.CodeUnknownType)
		c.Ping() // the session goes on
	})

	t.Run("bad_room", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		for i, room := range []string{"", "bad room", "a/b", strings.Repeat("r", 129), "@", "@with space", "é"} {
			c.Send(wstest.Frame("join", "id", i, "room", room))
			checkError(t, c.Next(), fmt.Sprint(i), protocol.CodeBadRoom)
		}
		// No room at all is an empty room name too.
		c.Send(`{"type":"join","id":"none"}`)
		checkError(t, c.Next(), `"none"`, protocol.CodeBadRoom)
		c.Send(wstest.Frame("publish", "id", "p", "room", "no!", "data", 1))
		checkError(t, c.Next(), `"p"`, protocol.CodeBadRoom)
		c.Send(wstest.Frame("history", "id", "h", "room", "no!"))
		checkError(t, c.Next(), `"h"`, protocol.CodeBadRoom)
		// The longest legal name is fine.
		c.Join(strings.Repeat("r", 128))
	})

	t.Run("forbidden", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		for i, typ := range []string{"join", "presence", "history"} {
			c.Send(wstest.Frame(typ, "id", i, "room", "@bob"))
			checkError(t, c.Next(), fmt.Sprint(i), protocol.CodeForbidden)
		}
	})

	t.Run("not_joined", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		c.Send(wstest.Frame("publish", "id", 1, "room", "general", "data", 1))
		checkError(t, c.Next(), "1", protocol.CodeNotJoined)
		c.Send(wstest.Frame("leave", "id", 2, "room", "general"))
		checkError(t, c.Next(), "2", protocol.CodeNotJoined)
		// Nothing was published.
		c.Send(wstest.Frame("history", "id", 3, "room", "general"))
		if h := c.Expect(protocol.TypeHistory); len(h.Messages) != 0 {
			t.Errorf("history after a refused publish = %s, want empty", wstest.Describe(h))
		}
	})

	t.Run("too_many_rooms", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{MaxRooms: 2})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		c.Join("a") // the inbox does not count
		c.Join("b")
		c.Send(wstest.Frame("join", "id", 3, "room", "c"))
		checkError(t, c.Next(), "3", protocol.CodeTooManyRooms)
		c.Send(wstest.Frame("leave", "id", 4, "room", "b"))
		c.Expect(protocol.TypeLeft)
		c.Join("c")
	})

	t.Run("rate_limited", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{Rate: 1, Burst: 2})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		for i := 1; i <= 3; i++ {
			c.Send(wstest.Frame("ping", "id", i))
		}
		for i := 1; i <= 2; i++ {
			if f := c.Expect(protocol.TypePong); string(f.ID) != fmt.Sprint(i) {
				t.Errorf("pong id = %s, want %d", f.ID, i)
			}
		}
		// The third frame is not handled (no pong), and its answer carries
		// its id like every answer (PROTOCOL.md, "Client → server").
		f := c.Next()
		if f.Type != protocol.TypeError || f.Code != protocol.CodeRateLimited {
			t.Fatalf("got %s, want error rate_limited", wstest.Describe(f))
		}
		if got, want := string(f.ID), "3"; got != want {
			t.Errorf("rate_limited error id = %q, want %q (the refused frame's id)", got, want)
		}
	})

	t.Run("too_large", func(t *testing.T) {
		t.Parallel()
		// On a WebSocket a frame over MaxFrameBytes closes the session with
		// 1009 (TestProtocol_CloseCodes/1009); docs/protocol.md gives
		// too_large to HTTP API bodies over their limit, with status 413.
		srv := wstest.Start(t, switchboard.Config{})
		body := `{"room":"general","data":"` + strings.Repeat("x", 2<<20) + `"}`
		resp, err := wstest.HTTPClient().Post(srv.URL+"/api/publish", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatalf("decode error body: %v", err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Error.Code != protocol.CodeTooLarge {
			t.Errorf("oversized API publish = %d %q, want 413 %q", resp.StatusCode, e.Error.Code, protocol.CodeTooLarge)
		}
	})

	t.Run("unavailable", func(t *testing.T) {
		t.Parallel()
		b := memory.New(memory.Config{})
		srv := wstest.Start(t, switchboard.Config{Broker: b})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Join("general")
		alice.Publish("general", "stored")
		if err := b.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		alice.Send(wstest.Frame("publish", "id", 1, "room", "general", "data", "lost"))
		checkError(t, alice.Next(), "1", protocol.CodeUnavailable)
		alice.Send(wstest.Frame("send", "id", 2, "to", "bob", "data", "lost"))
		checkError(t, alice.Next(), "2", protocol.CodeUnavailable)
		alice.Send(wstest.Frame("join", "id", 3, "room", "other"))
		checkError(t, alice.Next(), "3", protocol.CodeUnavailable)
		alice.Ping()

		// A hello that needs the broker cannot be answered: docs/protocol.md
		// closes with 1013 (try again later).
		late := wstest.DialRaw(t, srv.WS, nil)
		late.Send(wstest.Frame("hello", "user", "bob"))
		late.ExpectClose(websocket.CloseTryAgainLater)
	})

	t.Run("internal", func(t *testing.T) {
		t.Parallel()
		// A broker failing in a way it does not promise (no sentinel error)
		// is our fault, and must not leak its text to the client.
		b := &failingBroker{Broker: memory.New(memory.Config{}), err: errors.New("disk on fire at 10.0.0.7")}
		srv := wstest.Start(t, switchboard.Config{Broker: b})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Join("general")
		alice.Send(wstest.Frame("publish", "id", 1, "room", "general", "data", 1))
		f := alice.Next()
		checkError(t, f, "1", protocol.CodeInternal)
		if strings.Contains(f.Message, "10.0.0.7") {
			t.Errorf("internal error message %q leaks the broker's error", f.Message)
		}
	})
}

// failingBroker is a memory broker whose Publish fails with err.
type failingBroker struct {
	*memory.Broker
	err error
}

func (b *failingBroker) Publish(context.Context, string, broker.Publication) (broker.Position, error) {
	return broker.Position{}, b.err
}

// TestProtocol_CloseCodes covers each row of the close code table.
func TestProtocol_CloseCodes(t *testing.T) {
	t.Parallel()

	t.Run("1000", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		c.Join("general")
		if got, want := srv.Hub().SessionCount(), 1; got != want {
			t.Fatalf("SessionCount() = %d, want %d", got, want)
		}
		c.CloseWith(websocket.CloseNormalClosure, "bye")
		c.ExpectClose(websocket.CloseNormalClosure)
		wstest.Eventually(t, wstest.Timeout, "the session to end", func() bool {
			return srv.Hub().SessionCount() == 0
		})
		wstest.Eventually(t, wstest.Timeout, "the rooms to be released", func() bool {
			return srv.Hub().RoomCount() == 0
		})
	})

	t.Run("1008", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		const sent = 15
		for range sent {
			c.Send("not json")
		}
		before := c.ExpectClose(websocket.ClosePolicyViolation)
		if len(before) == 0 || len(before) >= sent {
			t.Errorf("got %d error frames before 1008, want some but fewer than the %d invalid frames", len(before), sent)
		}
		for _, f := range before {
			if f.Type != protocol.TypeError || f.Code != protocol.CodeBadRequest {
				t.Errorf("before 1008 got %s, want bad_request errors", wstest.Describe(f))
			}
		}
	})

	t.Run("1009", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{MaxFrameBytes: 1024})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		c.Join("general")
		fits := wstest.Frame("publish", "id", 1, "room", "general", "data", strings.Repeat("x", 900))
		if len(fits) > 1024 {
			t.Fatalf("test frame is %d bytes", len(fits))
		}
		c.Send(fits)
		c.Expect(protocol.TypeAck)
		exact := wstest.Frame("publish", "id", 2, "room", "general", "data", "")
		exact = wstest.Frame("publish", "id", 2, "room", "general", "data", strings.Repeat("x", 1024-len(exact)))
		if len(exact) != 1024 {
			t.Fatalf("test frame is %d bytes, want 1024", len(exact))
		}
		c.Send(exact)
		c.Expect(protocol.TypeAck)
		c.Send(wstest.Frame("publish", "id", 2, "room", "general", "data", strings.Repeat("x", 2000)))
		if before := c.ExpectClose(websocket.CloseMessageTooBig); len(before) != 0 {
			t.Errorf("got %s before 1009, want nothing", wstest.Describe(before[0]))
		}
		// A hello over the limit too.
		big := wstest.DialRaw(t, srv.WS, nil)
		big.Send(wstest.Frame("hello", "user", "alice", "padding", strings.Repeat("p", 2000)))
		big.ExpectClose(websocket.CloseMessageTooBig)
	})

	t.Run("4001", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{DrainSpread: 200 * time.Millisecond})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		alice.Join("general")
		stopped := stopAsync(t, srv)
		// While sessions are still open (nobody has answered the close
		// yet), the instance is not ready and refuses new sessions.
		wstest.Eventually(t, wstest.Timeout, "/readyz to turn 503", func() bool {
			resp, err := wstest.HTTPClient().Get(srv.URL + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusServiceUnavailable
		})
		if ws, resp, err := websocket.DefaultDialer.Dial(srv.WS, nil); err == nil {
			ws.Close()
			t.Errorf("a new WebSocket was accepted during the drain")
		} else if resp != nil && resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("upgrade during the drain answered %s, want 503", resp.Status)
		}
		for _, c := range []*wstest.Conn{alice, bob} {
			before := c.ExpectClose(protocol.CloseRestarting)
			if len(before) != 1 || before[0].Type != protocol.TypeReconnect {
				t.Errorf("before 4001 got %d frames, want one server:reconnect", len(before))
			}
		}
		<-stopped
		if got := srv.Hub().SessionCount(); got != 0 {
			t.Errorf("SessionCount() after drain = %d, want 0", got)
		}
	})

	t.Run("4003", func(t *testing.T) {
		t.Parallel()
		secret := []byte("close-4003")
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		for name, hello := range map[string]string{
			"no token":      wstest.Frame("hello", "user", "alice"),
			"invalid token": wstest.Frame("hello", "token", "a.b.c"),
			"wrong key":     wstest.Frame("hello", "token", sign(t, []byte("other"), auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})),
			"no exp":        wstest.Frame("hello", "token", sign(t, secret, auth.Claims{User: "alice"})),
		} {
			c := wstest.DialRaw(t, srv.WS, nil)
			c.Send(hello)
			if before := c.ExpectClose(protocol.CloseUnauthorized); len(before) != 0 {
				t.Errorf("%s: got %s before 4003, want nothing", name, wstest.Describe(before[0]))
			}
		}
	})

	t.Run("4004", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		alice1 := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice2 := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})

		resp, err := wstest.HTTPClient().Post(srv.URL+"/api/users/alice/disconnect", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /api/users/alice/disconnect: %s %s", resp.Status, body)
		}
		var ans struct {
			Sessions *int `json:"sessions"`
		}
		if err := json.Unmarshal(body, &ans); err != nil || ans.Sessions == nil || *ans.Sessions != 2 {
			t.Errorf("disconnect answered %s, want {\"sessions\":2}", body)
		}
		alice1.ExpectClose(protocol.CloseDisconnected)
		alice2.ExpectClose(protocol.CloseDisconnected)
		bob.Ping() // bob stays
		wstest.Eventually(t, wstest.Timeout, "alice's sessions to end", func() bool {
			return srv.Hub().SessionCount() == 1
		})
	})

	t.Run("4008", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{SendQueueBytes: 64 << 10, MaxFrameBytes: 4 << 10, Rate: 1e6, Burst: 1 << 20})
		slow := wstest.DialWith(t, wstest.SmallReceiveBuffer(4096), srv.WS, wstest.Hello{User: "slow"})
		slow.Join("firehose")
		healthy := wstest.Dial(t, srv.WS, wstest.Hello{User: "healthy"})
		healthy.Join("firehose")
		pub := wstest.Dial(t, srv.WS, wstest.Hello{User: "pub"})
		pub.Join("firehose")

		// The healthy member reads everything, checking order and holes,
		// until the "end" message.
		healthyDone := make(chan error, 1)
		var healthyGot uint64
		go func() {
			next := uint64(1)
			for {
				f, err := healthy.NextErr(wstest.Timeout)
				if err != nil {
					healthyDone <- fmt.Errorf("after offset %d: %w", next-1, err)
					return
				}
				if f.Type != protocol.TypeMessage || f.Offset != next {
					healthyDone <- fmt.Errorf("got %s, want message %d", wstest.Describe(f), next)
					return
				}
				if string(f.Data) == `"end"` {
					healthyGot = next
					healthyDone <- nil
					return
				}
				next++
			}
		}()

		payload := strings.Repeat("x", 3500)
		const round, maxRounds = 10, 300
		published := 0
		for r := 0; srv.Metric(t, "switchboard_send_queue_overflows_total") == 0; r++ {
			if r == maxRounds {
				t.Fatalf("no slow consumer closed after %d messages", published)
			}
			for i := range round {
				pub.Send(wstest.Frame("publish", "id", published+i, "room", "firehose", "data", payload))
			}
			for range round {
				checkAck(t, pub.Expect(protocol.TypeAck), fmt.Sprint(published), "firehose", uint64(published+1))
				published++
			}
		}
		pub.Publish("firehose", "end")
		published++
		if err := <-healthyDone; err != nil {
			t.Fatalf("healthy member: %v", err)
		}
		if healthyGot != uint64(published) {
			t.Errorf("healthy member got %d messages, want %d", healthyGot, published)
		}

		// The slow member resumes reading, with a socket buffer that lets
		// the megabytes the server's kernel holds for it through quickly:
		// what reached it has no hole, then the close frame says 4008.
		if tc, ok := slow.WS().UnderlyingConn().(*net.TCPConn); ok {
			if err := tc.SetReadBuffer(8 << 20); err != nil {
				t.Fatal(err)
			}
		}
		before := slow.ExpectClose(protocol.CloseSlowConsumer)
		for i, f := range before {
			if f.Type != protocol.TypeMessage || f.Offset != uint64(i+1) {
				t.Fatalf("slow member frame %d = %s, want message %d", i, wstest.Describe(f), i+1)
			}
		}
		if len(before) >= published {
			t.Errorf("slow member got all %d messages, want it cut short", published)
		}
		t.Logf("published %d messages; the slow member got %d before 4008", published, len(before))
	})

	t.Run("4029", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{Rate: 1, Burst: 2})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		for i := 1; i <= 8; i++ {
			c.Send(wstest.Frame("ping", "id", i))
		}
		before := c.ExpectClose(protocol.CloseRateLimited)
		var pongs, limited int
		for _, f := range before {
			switch {
			case f.Type == protocol.TypePong:
				pongs++
			case f.Type == protocol.TypeError && f.Code == protocol.CodeRateLimited:
				limited++
			default:
				t.Errorf("before 4029 got %s", wstest.Describe(f))
			}
		}
		if pongs != 2 || limited != 2 {
			t.Errorf("before 4029 got %d pongs and %d rate_limited errors, want 2 and 2 (burst 2)", pongs, limited)
		}
	})
}

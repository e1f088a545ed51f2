package switchboard_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProtocol_Transport covers the "Transport" section and the rules of
// hello and id under "Client → server".
func TestProtocol_Transport(t *testing.T) {
	t.Parallel()

	t.Run("batch joins frames with newline", func(t *testing.T) {
		t.Parallel()
		// bob sends a join and n publishes: more than the default burst.
		srv := wstest.Start(t, switchboard.Config{Burst: 1000})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		bob.Join("general")
		const n = 100
		// data with raw newlines between its tokens, which batch mode needs
		// the server to compact away
		payload := strings.Repeat("y", 1000)
		var epoch string
		for i := range n {
			bob.Send(`{"type":"publish","id":` + itoa(i) + `,"room":"general","data":{"i":` + itoa(i) + ",\n\t" + `"s":` + string(wstest.JSON(payload)) + "}\n}")
			epoch = bob.Expect(protocol.TypeAck).Epoch
		}

		// Recovery queues n messages and joined at once; a batch session
		// gets them in fewer WebSocket frames, each a list of compact JSON
		// objects separated by "\n"; a session without batch gets one
		// object per frame.
		for _, batch := range []bool{true, false} {
			c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice", Batch: batch})
			c.Send(wstest.Frame("join", "id", 1, "room", "general", "since", protocol.Position{Epoch: epoch, Offset: 0}))
			var objects, wsFrames, multi int
			for objects < n+1 {
				raw := c.ReadRaw()
				wsFrames++
				if len(raw) > 64<<10 {
					t.Errorf("batch %v: a WebSocket frame of %d bytes, want at most 64 KiB", batch, len(raw))
				}
				lines := bytes.Split(raw, []byte("\n"))
				if len(lines) > 1 {
					multi++
				}
				for _, line := range lines {
					var f protocol.ServerFrame
					if err := json.Unmarshal(line, &f); err != nil {
						t.Fatalf("batch %v: line %q of a frame is not a JSON object: %v", batch, line, err)
					}
					switch {
					case objects < n:
						if f.Type != protocol.TypeMessage || f.Offset != uint64(objects+1) {
							t.Fatalf("batch %v: object %d = %s, want message %d", batch, objects, wstest.Describe(f), objects+1)
						}
					default:
						checkJoined(t, f, "1", "general", epoch, n, true)
					}
					objects++
				}
			}
			if batch && multi == 0 {
				t.Errorf("batch: %d objects came in %d WebSocket frames, want some frames holding several", objects, wsFrames)
			}
			if !batch && multi != 0 {
				t.Errorf("no batch: %d WebSocket frames held several objects, want one object per frame", multi)
			}
		}
	})

	t.Run("unknown fields ignored", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		alice := wstest.DialRaw(t, srv.WS, nil)
		alice.Send(`{"type":"hello","user":"alice","client":{"name":"x","v":[1,2]},"shiny":true}`)
		alice.Expect(protocol.TypeWelcome)
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		bob.Join("general")
		alice.Send(`{"type":"join","id":1,"room":"general","extra":{"a":[null]},"priority":9}`)
		alice.Expect(protocol.TypeJoined)
		alice.Send(`{"type":"publish","id":2,"room":"general","data":{"k":"v"},"ttl":"1h","from":"mallory"}`)
		checkAck(t, alice.Expect(protocol.TypeAck), "2", "general", 1)
		m := bob.ExpectMessage("general", 1)
		if m.From != "alice" || string(m.Data) != `{"k":"v"}` {
			t.Errorf("message = %s, want from alice with data {\"k\":\"v\"}", wstest.Describe(m))
		}
		alice.Send(`{"type":"ping","id":3,"zzz":0}`)
		alice.Expect(protocol.TypePong)
	})

	t.Run("hello must be first (4003)", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		for _, first := range []string{
			wstest.Frame("ping", "id", 1),
			wstest.Frame("join", "id", 1, "room", "general"),
			`not json`,
		} {
			c := wstest.DialRaw(t, srv.WS, nil)
			c.Send(first)
			if before := c.ExpectClose(protocol.CloseUnauthorized); len(before) != 0 {
				t.Errorf("first frame %s: got %s before 4003", first, wstest.Describe(before[0]))
			}
		}
		c := wstest.DialRaw(t, srv.WS, nil)
		if err := c.WS().WriteMessage(websocket.BinaryMessage, []byte(wstest.Frame("hello", "user", "alice"))); err != nil {
			t.Fatal(err)
		}
		c.ExpectClose(protocol.CloseUnauthorized)
	})

	t.Run("hello timeout", func(t *testing.T) {
		t.Parallel()
		// Long enough for a client on a loaded machine (a TLS handshake
		// under -race) to send its hello in time below.
		const timeout = time.Second
		srv := wstest.Start(t, switchboard.Config{HelloTimeout: timeout})
		c := wstest.DialRaw(t, srv.WS, nil)
		start := time.Now()
		if before := c.ExpectClose(protocol.CloseUnauthorized); len(before) != 0 {
			t.Errorf("got %s before 4003", wstest.Describe(before[0]))
		}
		if waited := time.Since(start); waited < timeout/2 {
			t.Errorf("closed after %v, before the hello timeout of %v", waited, timeout)
		}
		// In time is fine.
		wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
	})

	t.Run("id copied (number and string)", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		c := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		for _, id := range []string{`7`, `0`, `-3`, `1.5`, `1e3`, `12345678901234567890`, `"abc"`, `""`, `"ü \"q\""`} {
			c.Send(`{"type":"ping","id":` + id + `}`)
			if got := string(c.Expect(protocol.TypePong).ID); got != id {
				t.Errorf("ping id %s: pong id = %s, want %s", id, got, id)
			}
			c.Send(`{"type":"publish","id":` + id + `,"room":"general","data":1}`)
			f := c.Expect(protocol.TypeError)
			if got := string(f.ID); got != id {
				t.Errorf("publish id %s: error id = %s, want %s", id, got, id)
			}
		}
		c.Join("general")
		c.Send(`{"type":"publish","id":"p-1","room":"general","data":1}`)
		checkAck(t, c.Expect(protocol.TypeAck), `"p-1"`, "general", 1)
		// An id that is neither a number nor a string is refused.
		c.Send(`{"type":"ping","id":{"x":1}}`)
		checkError(t, c.Next(), "", protocol.CodeBadRequest)
	})

	t.Run("heartbeat", func(t *testing.T) {
		t.Parallel()
		// Short enough for a quick test, long enough that a live client
		// under -race on a loaded machine answers within two beats.
		const beat = 500 * time.Millisecond
		srv := wstest.Start(t, switchboard.Config{Heartbeat: beat})
		// A client that reads answers the server's pings (gorilla does it
		// for us) and stays.
		live := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		if got, want := live.Welcome.Heartbeat, beat.Milliseconds(); got != want {
			t.Errorf("welcome.heartbeat = %d, want %d", got, want)
		}
		var pings atomic.Int32
		ws := live.WS()
		ws.SetPingHandler(func(data string) error {
			pings.Add(1)
			err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
			if errors.Is(err, websocket.ErrCloseSent) {
				return nil // we are closing; as gorilla's own handler does
			}
			return err
		})
		readerDone := make(chan error, 1)
		go func() {
			for {
				if _, err := live.NextErr(10 * time.Second); err != nil {
					readerDone <- err
					return
				}
			}
		}()
		// A client that neither reads nor sends anything is closed.
		silent := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		wstest.Eventually(t, wstest.Timeout, "the silent session to be closed", func() bool {
			return srv.Hub().SessionCount() == 1
		})
		if n := pings.Load(); n < 3 {
			t.Errorf("the live session got %d pings, want several (one per %v)", n, beat)
		}
		silent.WS().SetPingHandler(func(string) error { return nil }) // still silent
		silent.ExpectClose(websocket.CloseGoingAway)

		live.CloseWith(websocket.CloseNormalClosure, "")
		var ce *websocket.CloseError
		if err := <-readerDone; !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
			t.Errorf("live session ended with %v, want the server's 1000 answer to its close", err)
		}
	})
}

func itoa(i int) string { return string(wstest.JSON(i)) }

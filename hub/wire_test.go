package hub_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// TestWire_PongAndCloseEcho: the hub answers a client's ping with a pong
// carrying the same data, and a client's close with the same close code,
// although it writes its frames itself rather than through the WebSocket
// library.
func TestWire_PongAndCloseEcho(t *testing.T) {
	_, url := startHub(t, hub.Config{})
	c := wstest.Dial(t, url, wstest.Hello{User: "alice"})
	ws := c.WS()
	pongs := make(chan string, 1)
	ws.SetPongHandler(func(data string) error { pongs <- data; return nil })
	read := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.NextReader(); err != nil {
				read <- err
				return
			}
		}
	}()
	if err := ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-pongs:
		if got != "are you there" {
			t.Errorf("pong carried %q", got)
		}
	case <-time.After(wstest.Timeout):
		t.Fatal("no pong")
	}

	if err := ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4321, "bye"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4321 {
			t.Errorf("after close 4321 the read ended with %v, want the server's close 4321", err)
		}
	case <-time.After(wstest.Timeout):
		t.Fatal("no close answer")
	}
}

// TestWire_WritesLargerThanTheSocketTakes: messages larger than the
// socket's send buffer (at most 256 KiB) arrive whole and in order
// (the non-blocking write leaves the rest to the session's own writer),
// in batch mode and without, and small messages after them too.
func TestWire_WritesLargerThanTheSocketTakes(t *testing.T) {
	_, url := startHub(t, hub.Config{MaxFrameBytes: 1 << 20, SendQueueBytes: 8 << 20})
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			room := fmt.Sprintf("big-%v", batch)
			slow := wstest.Dial(t, url, wstest.Hello{User: "slow", Batch: batch})
			slow.Join(room)
			pub := wstest.Dial(t, url, wstest.Hello{User: "pub"})
			pub.Join(room)
			sizes := []int{200_000, 10, 65_530, 70_000, 1, 600_000, 5, 900_000, 3}
			for i, n := range sizes {
				pub.Send(wstest.Frame("publish", "id", i, "room", room, "data", strings.Repeat(string(rune('a'+i)), n)))
			}
			for i, n := range sizes {
				f := slow.ExpectMessage(room, uint64(i+1))
				var s string
				if err := json.Unmarshal(f.Data, &s); err != nil {
					t.Fatal(err)
				}
				if len(s) != n || strings.Trim(s, string(rune('a'+i))) != "" {
					t.Fatalf("message %d: %d bytes, want %d of %q", i+1, len(s), n, rune('a'+i))
				}
			}
			if f := slow.Ping(); len(f) != 0 {
				t.Errorf("unexpected frames: %v", wstest.Describe(f[0]))
			}
		})
	}
}

// maskedFrame returns a client text frame (masked, as RFC 6455 requires of
// clients) carrying p, which must be shorter than 126 bytes.
func maskedFrame(p string) []byte {
	key := [4]byte{1, 2, 3, 4}
	b := []byte{0x81, 0x80 | byte(len(p)), key[0], key[1], key[2], key[3]}
	for i := range len(p) {
		b = append(b, p[i]^key[i%4])
	}
	return b
}

// TestWire_FramesArrivingTogether: frames that reach the server in one TCP
// segment are all handled, although a session waits for its socket only
// when its read buffer is empty.
func TestWire_FramesArrivingTogether(t *testing.T) {
	_, url := startHub(t, hub.Config{})
	c := wstest.Dial(t, url, wstest.Hello{User: "alice"})
	var all []byte
	for i := range 5 {
		all = append(all, maskedFrame(fmt.Sprintf(`{"type":"ping","id":%d}`, i))...)
	}
	if _, err := c.WS().NetConn().Write(all); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		f := c.Expect("pong")
		if string(f.ID) != fmt.Sprint(i) {
			t.Fatalf("pong %d has id %s", i, f.ID)
		}
	}
	// And a session idle since then still reads what comes next.
	time.Sleep(50 * time.Millisecond)
	if _, err := c.WS().NetConn().Write(maskedFrame(`{"type":"ping","id":"later"}`)); err != nil {
		t.Fatal(err)
	}
	if f := c.Expect("pong"); string(f.ID) != `"later"` {
		t.Fatalf("pong has id %s", f.ID)
	}
}

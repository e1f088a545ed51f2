package switchboard_test

import (
	"encoding/json"
	"net/http"
	"testing"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestDelivery_NothingAfterDisconnect: once POST /api/users/{id}/disconnect
// has answered, not one more room message reaches the user's socket, though
// the room goes on: at the byte level, the messages before the close frame
// were all published before the disconnect, and nothing follows the close
// frame (4004). Nor is anything the client sends after it handled: its
// publishes are not stored.
func TestDelivery_NothingAfterDisconnect(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	w := wstest.DialWire(t, srv.WS)
	w.SendText(`{"type":"hello","user":"alice"}`)
	w.SendText(`{"type":"join","id":1,"room":"busy"}`)
	publish := func() uint64 {
		pos, err := srv.Hub().Publish(t.Context(), "busy", broker.Publication{Data: json.RawMessage(`"tick"`)})
		if err != nil {
			t.Fatal(err)
		}
		return pos.Offset
	}
	// Until alice's join is done, then a stream that keeps coming.
	wstest.Eventually(t, wstest.Timeout, "alice in the room", func() bool {
		users, err := srv.Hub().RoomPresence(t.Context(), "busy")
		return err == nil && len(users) == 1
	})
	for range 50 {
		publish()
	}
	resp, err := wstest.HTTPClient().Post(srv.URL+"/api/users/alice/disconnect", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("disconnect: %s", resp.Status)
	}
	first := publish() // the first message published after the disconnect
	for i := range 200 {
		publish()
		if i%20 == 0 {
			w.SendText(`{"type":"publish","id":"late","room":"busy","data":"from a closed session"}`)
		}
	}

	before, closing := w.UntilClose()
	if closing.CloseCode() != protocol.CloseDisconnected {
		t.Fatalf("closed with %d, want 4004", closing.CloseCode())
	}
	messages := 0
	for _, f := range before {
		if f.Op == 9 {
			continue // a heartbeat ping: a session's first comes at any time in its first interval
		}
		if f.Op != 1 {
			t.Fatalf("frame with opcode %d before the close, want text or ping", f.Op)
		}
		var sf protocol.ServerFrame
		if err := json.Unmarshal(f.Payload, &sf); err != nil {
			t.Fatalf("frame %q: %v", f.Payload, err)
		}
		if sf.Type == protocol.TypeAck {
			t.Fatalf("a publish sent after the disconnect was acked: %s", f.Payload)
		}
		if sf.Type != protocol.TypeMessage {
			continue
		}
		messages++
		if sf.Offset >= first {
			t.Fatalf("message %d reached the socket, published after the disconnect (from offset %d)", sf.Offset, first)
		}
	}
	hist, err := srv.Hub().History(t.Context(), "busy", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range hist.Messages {
		if m.From == "alice" {
			t.Fatalf("message %d from the closed session was stored", m.Offset)
		}
	}
	t.Logf("%d messages before the close; none of the 201 published after the disconnect", messages)
}

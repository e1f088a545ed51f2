package switchboard_test

import (
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestTransport_HistoryLargerThanTheSendQueue: a history answer larger than
// the whole send queue reaches a client that reads; it is not closed as a
// slow consumer for asking.
func TestTransport_HistoryLargerThanTheSendQueue(t *testing.T) {
	t.Parallel()
	// The publisher sends 101 frames at once: a burst past the default
	// 100 would be refused with rate_limited when the acks come quickly.
	srv := wstest.Start(t, switchboard.Config{SendQueueBytes: 64 << 10, HistorySize: 100, Burst: 200})
	pub := wstest.Dial(t, srv.WS, wstest.Hello{User: "pub"})
	pub.Join("big")
	payload := strings.Repeat("h", 4<<10)
	for range 100 {
		pub.Publish("big", payload)
	}
	// 100 messages of 4 KiB: a 400 KiB answer for a 64 KiB queue.
	c := wstest.Dial(t, srv.WS, wstest.Hello{User: "reader"})
	c.Send(wstest.Frame("history", "id", 1, "room", "big"))
	h := c.Expect(protocol.TypeHistory)
	if len(h.Messages) != 100 {
		t.Fatalf("history holds %d messages, want 100", len(h.Messages))
	}
	c.Ping() // still open
}

// TestTransport_BadResumeEntryCostsItsRoomOnly: a hello.resume entry that
// is not a position (a negative offset) gets an error frame naming its
// room; the connection stays and the other rooms are resumed.
func TestTransport_BadResumeEntryCostsItsRoomOnly(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	pub := wstest.Dial(t, srv.WS, wstest.Hello{User: "pub"})
	pub.Join("good")
	ack := pub.Publish("good", "one")
	c := wstest.DialRaw(t, srv.WS, nil)
	c.Send(`{"type":"hello","user":"alice","resume":{"good":{"epoch":"` + ack.Epoch + `","offset":0},"bad":{"epoch":"x","offset":-1}}}`)
	c.Expect(protocol.TypeWelcome)
	var sawError, sawMessage, sawJoined bool
	for !(sawError && sawJoined) {
		f := c.Next()
		switch {
		case f.Type == protocol.TypeError && f.Code == protocol.CodeBadRequest && strings.Contains(f.Message, `"bad"`):
			sawError = true
		case f.Type == protocol.TypeMessage && f.Room == "good" && f.Offset == 1:
			sawMessage = true
		case f.Type == protocol.TypeJoined && f.Room == "good":
			if !f.Recovered || !sawMessage {
				t.Fatalf("joined %s after the missed message %v, want recovered", wstest.Describe(f), sawMessage)
			}
			sawJoined = true
		default:
			t.Fatalf("unexpected %s", wstest.Describe(f))
		}
	}
	c.Ping()
}

// TestTransport_UnfinishedMessageIsCutOff: a client that begins a message
// and never finishes it is closed with 1008 after two heartbeat intervals,
// though it is not silent: it trickles the frame's bytes, one every 50 ms.
func TestTransport_UnfinishedMessageIsCutOff(t *testing.T) {
	t.Parallel()
	const beat = 300 * time.Millisecond
	srv := wstest.Start(t, switchboard.Config{Heartbeat: beat})
	w := wstest.DialWire(t, srv.WS)
	w.SendText(`{"type":"hello","user":"slowloris"}`)
	// A text frame of 100 bytes that would take 5 s to arrive.
	frame := wstest.MaskedFrame(0x81, []byte(strings.Repeat("s", 100)))
	go func() {
		for i := range frame {
			if w.TryWrite(frame[i:i+1]) != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	_, closing := w.UntilClose()
	if closing.CloseCode() != protocol.ClosePolicy {
		t.Fatalf("closed with %d, want 1008", closing.CloseCode())
	}
	if d := time.Since(start); d < beat {
		t.Errorf("closed after %v, before the first heartbeat", d)
	}
}

package wstest

import (
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Join sends join for room with id "join" and returns the joined
// frame, failing the test if any other frame comes first.
func (c *Conn) Join(room string) protocol.ServerFrame {
	c.t.Helper()
	c.Send(Frame(protocol.TypeJoin, "id", "join", "room", room))
	f := c.Expect(protocol.TypeJoined)
	if f.Room != room {
		c.t.Fatalf("joined %q, want %q", f.Room, room)
	}
	return f
}

// Publish publishes data to room with id "publish" and returns the ack,
// failing the test if any other frame comes first.
func (c *Conn) Publish(room string, data any) protocol.ServerFrame {
	c.t.Helper()
	c.Send(Frame(protocol.TypePublish, "id", "publish", "room", room, "data", data))
	return c.Expect(protocol.TypeAck)
}

// Ping sends ping and reads up to its pong. It returns the frames that came
// before the pong: since a session's frames are answered in order, they are
// everything the server had queued for it when it handled the ping.
func (c *Conn) Ping() []protocol.ServerFrame {
	c.t.Helper()
	c.Send(Frame(protocol.TypePing, "id", "barrier"))
	var before []protocol.ServerFrame
	for {
		f := c.Next()
		if f.Type == protocol.TypePong && string(f.ID) == `"barrier"` {
			return before
		}
		before = append(before, f)
	}
}

// ExpectMessage returns the next frame and fails unless it is a message of
// room at offset.
func (c *Conn) ExpectMessage(room string, offset uint64) protocol.ServerFrame {
	c.t.Helper()
	f := c.Expect(protocol.TypeMessage)
	if f.Room != room || f.Offset != offset {
		c.t.Fatalf("got message %s, want room %q offset %d", Describe(f), room, offset)
	}
	return f
}

// CloseWith sends a close frame with code, as a client ending the session
// does.
func (c *Conn) CloseWith(code int, reason string) {
	c.t.Helper()
	msg := websocket.FormatCloseMessage(code, reason)
	if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(Timeout)); err != nil {
		c.t.Fatalf("send close %d: %v", code, err)
	}
}

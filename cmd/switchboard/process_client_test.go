package main

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// waitLong bounds the waits of the process tests for deliveries and closes:
// long enough for a loaded machine running the tests with -race.
const waitLong = 20 * time.Second

// client is one user's session as a process test sees it, across the
// connections that resumed it, perhaps on other instances.
type client struct {
	user  string
	conns []*wstest.Collector
	// at is the instance of the current connection.
	at *instance
}

// connect dials the user's first session on in.
func connect(t testing.TB, in *instance, user string) *client {
	t.Helper()
	c := &client{user: user}
	c.reconnect(t, in, wstest.Hello{})
	return c
}

// reconnect opens a new connection for the client on in with hello (its
// user filled in), as a client resuming its session does.
func (c *client) reconnect(t testing.TB, in *instance, hello wstest.Hello) *wstest.Collector {
	t.Helper()
	hello.User = c.user
	k := in.dial(t, hello)
	c.conns = append(c.conns, k)
	c.at = in
	return k
}

// cur is the current connection.
func (c *client) cur() *wstest.Collector { return c.conns[len(c.conns)-1] }

// session is the id of the current connection's session.
func (c *client) session() string { return c.cur().Conn().Welcome.Session }

// frames returns everything every connection of the client received, in
// order, each connection's welcome first.
func (c *client) frames() []protocol.ServerFrame {
	var all []protocol.ServerFrame
	for _, k := range c.conns {
		all = append(all, k.Conn().Welcome)
		all = append(all, k.Frames()...)
	}
	return all
}

// drop closes the current connection without a close frame, as a client
// whose network went away, and waits until its reader has stopped.
func (c *client) drop(t testing.TB) {
	t.Helper()
	_ = c.cur().Conn().WS().Close()
	if _, err := c.cur().WaitClosed(5 * time.Second); err != nil {
		t.Fatalf("%s: %v", c.user, err)
	}
}

// ask sends frame with id and returns the answer carrying that id.
func (c *client) ask(t testing.TB, id, frame string) protocol.ServerFrame {
	t.Helper()
	c.cur().Conn().Send(frame)
	qid := strconv.Quote(id)
	f, err := c.cur().WaitFor(waitLong, fmt.Sprintf("%s: answer to %s", c.user, id), func(f protocol.ServerFrame) bool {
		return string(f.ID) == qid
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// request is ask failing the test on an error frame.
func (c *client) request(t testing.TB, id, frame string) protocol.ServerFrame {
	t.Helper()
	f := c.ask(t, id, frame)
	if f.Type == protocol.TypeError {
		t.Fatalf("%s: %s answered %s", c.user, frame, wstest.Describe(f))
	}
	return f
}

// join joins room (from since if given) and returns the joined frame.
func (c *client) join(t testing.TB, room string, since *protocol.Position) protocol.ServerFrame {
	t.Helper()
	id := fmt.Sprintf("join-%s-%d", room, len(c.conns))
	kv := []any{"id", id, "room", room}
	if since != nil {
		kv = append(kv, "since", since)
	}
	f := c.request(t, id, wstest.Frame(protocol.TypeJoin, kv...))
	if f.Type != protocol.TypeJoined || f.Room != room {
		t.Fatalf("%s: join %s answered %s", c.user, room, wstest.Describe(f))
	}
	return f
}

// presence asks for room's presence with a presence frame.
func (c *client) presence(t testing.TB, room string) protocol.ServerFrame {
	t.Helper()
	id := fmt.Sprintf("presence-%s-%d", room, time.Now().UnixNano())
	f := c.request(t, id, wstest.Frame(protocol.TypePresence, "id", id, "room", room))
	if f.Type != protocol.TypePresence {
		t.Fatalf("%s: presence answered %s", c.user, wstest.Describe(f))
	}
	return f
}

// publishSeq sends publish frames (or, when room starts with '@', send
// frames to that user) with ids and payload numbers lo..hi from publisher
// p, without waiting for the acks. It may run in a goroutine of its own;
// nothing else may send on conn meanwhile.
func publishSeq(conn *wstest.Conn, room, p string, lo, hi int) error {
	for n := lo; n <= hi; n++ {
		var frame string
		if user, ok := cutInbox(room); ok {
			frame = wstest.Frame(protocol.TypeSend, "id", n, "to", user, "data", payload{P: p, N: n})
		} else {
			frame = wstest.Frame(protocol.TypePublish, "id", n, "room", room, "data", payload{P: p, N: n})
		}
		if err := conn.TrySend(frame); err != nil {
			return fmt.Errorf("%s: publish #%d: %w", p, n, err)
		}
	}
	return nil
}

// apiSeq publishes payloads lo..hi of publisher p to room (a user's inbox
// "@user": through /api/send) through in's HTTP API, one after the other,
// with from set to p. Anything but 200 is an error.
func apiSeq(in *instance, room, p string, lo, hi int) error {
	for n := lo; n <= hi; n++ {
		res, err := in.apiPublish(room, payload{P: p, N: n}, p, "")
		if err != nil {
			return err
		}
		if res.Status != http.StatusOK {
			return fmt.Errorf("%s: API publish #%d to %s on %s = %d %s", p, n, room, in.name, res.Status, res.Code)
		}
	}
	return nil
}

func cutInbox(room string) (string, bool) {
	if len(room) > 1 && room[0] == '@' {
		return room[1:], true
	}
	return "", false
}

// waitAcks waits until the client's current connection holds the acks of
// the publishes (or sends) to room with ids lo..hi. An error frame for one
// of them fails the test.
func (c *client) waitAcks(t testing.TB, room string, lo, hi int) {
	t.Helper()
	var failed string
	err := c.cur().Wait(waitLong, fmt.Sprintf("%s: acks %d-%d in %s", c.user, lo, hi, room), func(frames []protocol.ServerFrame) bool {
		got := 0
		for _, f := range frames {
			n, err := strconv.Atoi(string(f.ID))
			if err != nil || n < lo || n > hi {
				continue
			}
			switch {
			case f.Type == protocol.TypeError:
				failed = wstest.Describe(f)
				return true
			case f.Type == protocol.TypeAck && f.Room == room:
				got++
			}
		}
		return got == hi-lo+1
	})
	if err != nil {
		t.Fatal(err)
	}
	if failed != "" {
		t.Fatalf("%s: a publish to %s failed: %s", c.user, room, failed)
	}
}

// lastReconnect returns the server:reconnect frame among frames, failing
// the test unless there is exactly one and it is the last frame.
func lastReconnect(t testing.TB, who string, frames []protocol.ServerFrame) protocol.ServerFrame {
	t.Helper()
	if n := countType(frames, protocol.TypeReconnect); n != 1 {
		t.Fatalf("%s got %d server:reconnect frames, want 1", who, n)
	}
	f := frames[len(frames)-1]
	if f.Type != protocol.TypeReconnect {
		t.Fatalf("%s: last frame before the close is %s, want server:reconnect", who, wstest.Describe(f))
	}
	return f
}

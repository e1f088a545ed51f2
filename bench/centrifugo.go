package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// centrifugoAdapter speaks Centrifugo v6's bidirectional JSON protocol
// (client protocol v2) over WebSocket, written from its documentation:
// every client command is {"id":N,"<method>":{…}}, every reply carries the
// same id and either the method's result or "error":{code,message};
// asynchronous pushes come as {"push":{"channel":…,"pub":{"data":…}}}; the
// server's application-level ping is an empty object {} which the client
// answers with {} when the connect result says pong. One WebSocket frame
// may hold several newline-separated replies.
//
// Rooms map to channels of the "bench" namespace; a user's inbox "@u" maps
// to the user-limited channel "inbox:#u" (bench/peers/centrifugo.json
// configures both namespaces with history, as Switchboard keeps history
// for every room).
type centrifugoAdapter struct{}

// centrifugoChannel is the channel that stands for a Switchboard room.
func centrifugoChannel(room string) string {
	if user, ok := strings.CutPrefix(room, "@"); ok {
		return "inbox:#" + user
	}
	return "bench:" + room
}

// cfReply holds the fields of a Centrifugo reply the load generator reads.
type cfReply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    uint32 `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Connect *struct {
		Client string `json:"client"`
		Ping   uint32 `json:"ping"`
		Pong   bool   `json:"pong"`
	} `json:"connect"`
	Push *struct {
		Channel    string `json:"channel"`
		Disconnect *struct {
			Code   uint32 `json:"code"`
			Reason string `json:"reason"`
		} `json:"disconnect"`
	} `json:"push"`
}

func (centrifugoAdapter) handshake(ctx context.Context, c *conn, rooms []string) error {
	deadline, _ := ctx.Deadline()
	connect := map[string]any{"name": "switchboard-bench"}
	if c.token != "" {
		connect["token"] = c.token
	}
	b, _ := json.Marshal(map[string]any{"id": 1, "connect": connect})
	if err := c.writeFrame(b); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	r, err := cfAwait(c, deadline, 1)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if r.Connect == nil {
		return fmt.Errorf("connect: the reply has no connect result")
	}
	c.pong = r.Connect.Pong
	if c.inbox {
		rooms = append([]string{"@" + c.user}, rooms...)
	}
	for i, room := range rooms {
		id := uint32(i + 2)
		b, _ := json.Marshal(map[string]any{"id": id, "subscribe": map[string]any{"channel": centrifugoChannel(room)}})
		if err := c.writeFrame(b); err != nil {
			return fmt.Errorf("subscribe %q: %w", centrifugoChannel(room), err)
		}
		if _, err := cfAwait(c, deadline, id); err != nil {
			return fmt.Errorf("subscribe %q: %w", centrifugoChannel(room), err)
		}
	}
	return nil
}

// cfAwait reads frames until the reply with id arrives, answering pings on
// the way.
func cfAwait(c *conn, deadline time.Time, id uint32) (*cfReply, error) {
	if deadline.IsZero() {
		deadline = time.Now().Add(DefaultDialTimeout)
	}
	for {
		b, err := c.readFrame(deadline)
		if err != nil {
			return nil, closeReason(err)
		}
		var found *cfReply
		var fail error
		lines(b, func(line []byte) {
			if string(line) == "{}" {
				_ = c.writeFrame([]byte("{}"))
				return
			}
			var r cfReply
			if json.Unmarshal(line, &r) != nil {
				return
			}
			if r.Push != nil && r.Push.Disconnect != nil {
				fail = fmt.Errorf("%w: disconnect %d %q", errClosed, r.Push.Disconnect.Code, r.Push.Disconnect.Reason)
				return
			}
			if r.ID != id {
				return
			}
			if r.Error != nil {
				fail = fmt.Errorf("error %d: %s", r.Error.Code, r.Error.Message)
				return
			}
			found = &r
		})
		if fail != nil {
			return nil, fail
		}
		if found != nil {
			return found, nil
		}
	}
}

func (centrifugoAdapter) appendPublish(dst []byte, id uint64, room string, data []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, uint64(uint32(id)), 10)
	dst = append(dst, `,"publish":{"channel":`...)
	dst = strconv.AppendQuote(dst, centrifugoChannel(room))
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, "}}"...)
}

func (centrifugoAdapter) control(c *conn, line []byte) {
	if string(line) == "{}" {
		if c.pong {
			_ = c.writeFrame([]byte("{}"))
		}
		return
	}
	var r cfReply
	if json.Unmarshal(line, &r) != nil {
		c.w.note("undecodable frame")
		return
	}
	switch {
	case r.Push != nil && r.Push.Disconnect != nil:
		c.w.note(fmt.Sprintf("disconnect %d", r.Push.Disconnect.Code))
	case r.ID != 0 && r.Error != nil:
		c.answered(uint64(r.ID), false)
		c.w.note(fmt.Sprintf("error %d", r.Error.Code))
	case r.ID != 0:
		c.answered(uint64(r.ID), true)
	}
}

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// switchboardAdapter speaks PROTOCOL.md: hello (token, or user in dev
// mode), join per room (the inbox is joined by the server), publish frames
// answered by ack, and message frames.
type switchboardAdapter struct{}

// sbFrame holds the fields of a server frame the load generator reads.
type sbFrame struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Room    string          `json:"room"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

func (switchboardAdapter) handshake(ctx context.Context, c *conn, rooms []string) error {
	hello := map[string]any{"type": "hello", "batch": c.w.setup.Batch}
	if c.token != "" {
		hello["token"] = c.token
	} else {
		hello["user"] = c.user
	}
	b, _ := json.Marshal(hello)
	if err := c.writeFrame(b); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	deadline, _ := ctx.Deadline()
	if err := sbAwait(c, deadline, "welcome", ""); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	for i, room := range rooms {
		id := strconv.Itoa(i + 1)
		b, _ := json.Marshal(map[string]any{"type": "join", "id": i + 1, "room": room})
		if err := c.writeFrame(b); err != nil {
			return fmt.Errorf("join %q: %w", room, err)
		}
		if err := sbAwait(c, deadline, "joined", id); err != nil {
			return fmt.Errorf("join %q: %w", room, err)
		}
	}
	return nil
}

// sbAwait reads frames until one of type want (with id, if not empty)
// arrives; an error frame for that id, or a close, fails.
func sbAwait(c *conn, deadline time.Time, want, id string) error {
	if deadline.IsZero() {
		deadline = time.Now().Add(DefaultDialTimeout)
	}
	for {
		b, err := c.readFrame(deadline)
		if err != nil {
			return closeReason(err)
		}
		var fail error
		found := false
		lines(b, func(line []byte) {
			var f sbFrame
			if json.Unmarshal(line, &f) != nil {
				return
			}
			switch {
			case f.Type == want && (id == "" || string(f.ID) == id):
				found = true
			case f.Type == "error" && (id == "" || string(f.ID) == id):
				fail = fmt.Errorf("%s: %s", f.Code, f.Message)
			}
		})
		if fail != nil {
			return fail
		}
		if found {
			return nil
		}
	}
}

func (switchboardAdapter) appendPublish(dst []byte, id uint64, room string, data []byte) []byte {
	dst = append(dst, `{"type":"publish","id":`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `,"room":`...)
	dst = strconv.AppendQuote(dst, room)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

func (switchboardAdapter) control(c *conn, line []byte) {
	var f sbFrame
	if json.Unmarshal(line, &f) != nil {
		c.w.note("undecodable frame")
		return
	}
	switch f.Type {
	case "ack":
		if id, err := strconv.ParseUint(string(f.ID), 10, 64); err == nil {
			c.answered(id, true)
		}
	case "error":
		if id, err := strconv.ParseUint(string(f.ID), 10, 64); err == nil {
			c.answered(id, false)
		}
		c.w.note("error " + f.Code)
	case "reset":
		c.w.note("reset")
	case "server:reconnect":
		c.w.note("server:reconnect")
	case "pong", "joined", "left", "welcome":
	default:
		c.w.note("frame " + f.Type)
	}
}

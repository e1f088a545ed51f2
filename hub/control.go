package hub

import (
	"context"
	"encoding/json"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// ControlRoom is the broker room that carries commands between instances.
// Its name cannot be a client room ('$' is not a room character), so no
// client can join or publish to it.
const ControlRoom = "$control"

// command is a message of the control room.
type command struct {
	Op   string `json:"op"`
	User string `json:"user,omitempty"`
}

// control is the hub's broker.Handler for the control room. It is a type of
// its own because brokers tell handlers apart by identity.
type control struct{ h *Hub }

// Deliver runs a command on this instance.
func (c *control) Deliver(m *broker.Message) {
	var cmd command
	if err := json.Unmarshal(m.Data, &cmd); err != nil {
		c.h.log.Warn("bad control command", "err", err)
		return
	}
	switch cmd.Op {
	case "disconnect":
		if n := c.h.DisconnectUser(cmd.User); n > 0 {
			c.h.log.Info("user disconnected by the API", "user", cmd.User, "sessions", n)
		}
	default:
		c.h.log.Warn("unknown control command", "op", cmd.Op)
	}
}

// Reset is nothing to the control room: commands are not replayed.
func (c *control) Reset(string, broker.Position) {}

// subscribeControl subscribes to the control room, retrying until it works
// or ctx ends (the broker may be down when the instance starts).
func (h *Hub) subscribeControl(ctx context.Context) {
	for {
		sctx, cancel := h.brokerCtx(ctx)
		err := h.broker.Subscribe(sctx, h.control, ControlRoom)
		cancel()
		if err == nil {
			return
		}
		h.log.Warn("subscribe to the control room", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-h.stopped:
			return
		case <-time.After(time.Second):
		}
	}
}

// DisconnectEverywhere closes every session of user, on every instance,
// with close code 4004. It returns how many sessions the user had.
func (h *Hub) DisconnectEverywhere(ctx context.Context, user string) (int, error) {
	st, err := h.UserStatus(ctx, user)
	if err != nil {
		return 0, err
	}
	data, _ := json.Marshal(command{Op: "disconnect", User: user})
	if _, err := h.broker.Publish(ctx, ControlRoom, broker.Publication{Data: data}); err != nil {
		return 0, err
	}
	return st.Sessions, nil
}

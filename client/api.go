package client

import (
	"context"
	"fmt"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Requests wait for the connection while the client is reconnecting, as
// long as their ctx allows; an answer lost with a connection is asked for
// again on the next one. Refusals that mean "nothing was done, try again"
// (unavailable, rate_limited) are retried with back-off until ctx ends. The
// server's refusals are returned as *protocol.Error (use errors.As); after
// the client stopped, the error matches ErrClosed.

// Join joins room and returns the position its stream starts after. From
// then on the room's messages arrive through Messages or Config.Handler,
// and the room stays joined across reconnects until Leave. Joining a room
// that is joined already returns its current position.
func (c *Client) Join(ctx context.Context, room string) (Position, error) {
	pos, _, err := c.join(ctx, room, nil)
	return pos, err
}

// JoinSince joins room and first delivers the messages after since that the
// server still has (PROTOCOL.md, "Recovery"). recovered reports whether all
// of them were; if not, the stream starts at pos in the room's current
// epoch.
func (c *Client) JoinSince(ctx context.Context, room string, since Position) (pos Position, recovered bool, err error) {
	if since.Epoch == "" {
		return Position{}, false, fmt.Errorf("join %q: %w", room, protocol.Errorf(protocol.CodeBadRequest, "since needs an epoch"))
	}
	return c.join(ctx, room, &since)
}

func (c *Client) join(ctx context.Context, room string, since *Position) (Position, bool, error) {
	if err := protocol.ParseRoom(room); err != nil {
		return Position{}, false, fmt.Errorf("join %q: %w", room, err)
	}
	f, err := c.do(ctx, protocol.ClientFrame{Type: protocol.TypeJoin, Room: room, Since: since})
	if err != nil {
		return Position{}, false, fmt.Errorf("join %q: %w", room, err)
	}
	return Position{Epoch: f.Epoch, Offset: f.Offset}, f.Recovered, nil
}

// Leave leaves room. Messages of room that arrived before the server's
// answer may still be waiting in the queue and be delivered after Leave
// returns; none arrives after. Leaving a room that is not joined is not an
// error.
func (c *Client) Leave(ctx context.Context, room string) error {
	if err := protocol.ParseRoom(room); err != nil {
		return fmt.Errorf("leave %q: %w", room, err)
	}
	if _, err := c.do(ctx, protocol.ClientFrame{Type: protocol.TypeLeave, Room: room}); err != nil {
		return fmt.Errorf("leave %q: %w", room, err)
	}
	return nil
}

// Publish publishes data to room, which the client must have joined, and
// returns the message's position once the broker stored it. data is sent as
// is if it is a json.RawMessage, and encoded with encoding/json otherwise.
//
// Each publish carries a random idempotency key. If the connection drops
// before the ack, the publish is sent again with the same key after the
// reconnect, so the message is stored once and Publish returns its one
// position; the client's own message is not delivered back (unless
// Config.Echo). If ctx ends first, the publish may or may not have been
// stored. Publishes to a room are stored and acked in the order they were
// made, but for one that the server refused with unavailable or
// rate_limited: it is sent again after a back-off, behind later ones.
func (c *Client) Publish(ctx context.Context, room string, data any) (Position, error) {
	if err := protocol.ParseRoom(room); err != nil {
		return Position{}, fmt.Errorf("publish to %q: %w", room, err)
	}
	return c.publish(ctx, "publish to "+room, protocol.ClientFrame{Type: protocol.TypePublish, Room: room}, data)
}

// Send sends data to user's inbox (a direct message) and returns its
// position in the inbox "@user". It retries like Publish.
func (c *Client) Send(ctx context.Context, user string, data any) (Position, error) {
	if !protocol.ValidUser(user) {
		return Position{}, fmt.Errorf("send to %q: %w", user, protocol.Errorf(protocol.CodeBadRequest, "not a valid user id"))
	}
	return c.publish(ctx, "send to "+user, protocol.ClientFrame{Type: protocol.TypeSend, To: user}, data)
}

func (c *Client) publish(ctx context.Context, what string, f protocol.ClientFrame, data any) (Position, error) {
	raw, err := encodeData(data)
	if err != nil {
		return Position{}, fmt.Errorf("%s: %w", what, err)
	}
	f.Data, f.Key = raw, newKey()
	ack, err := c.do(ctx, f)
	if err != nil {
		return Position{}, fmt.Errorf("%s: %w", what, err)
	}
	return Position{Epoch: ack.Epoch, Offset: ack.Offset}, nil
}

// Presence lists the users present in a room.
type Presence struct {
	Room string
	// Total is the number of distinct users.
	Total int
	// Users are the users with their session counts, sorted by user.
	Users []UserSessions
}

// Presence returns who is in room, across all instances.
func (c *Client) Presence(ctx context.Context, room string) (Presence, error) {
	if err := protocol.ParseRoom(room); err != nil {
		return Presence{}, fmt.Errorf("presence of %q: %w", room, err)
	}
	f, err := c.do(ctx, protocol.ClientFrame{Type: protocol.TypePresence, Room: room})
	if err != nil {
		return Presence{}, fmt.Errorf("presence of %q: %w", room, err)
	}
	return Presence{Room: f.Room, Total: f.Total, Users: f.Users}, nil
}

// HistoryQuery selects messages of a room's history. The zero value asks
// for the latest messages.
type HistoryQuery struct {
	// Since, if set, asks for the messages after it; a position of another
	// epoch than the room's current one gets the latest messages.
	Since *Position
	// Limit caps the number of messages; 0 or more than the server's
	// history size means its history size.
	Limit int
}

// History is a part of a room's history.
type History struct {
	Room string
	// Position is the room's latest position.
	Position Position
	// Messages are oldest first.
	Messages []Message
}

// History reads room's history. It does not need the room to be joined,
// and does not change what the client has received.
func (c *Client) History(ctx context.Context, room string, q HistoryQuery) (History, error) {
	if err := protocol.ParseRoom(room); err != nil {
		return History{}, fmt.Errorf("history of %q: %w", room, err)
	}
	if q.Since != nil && q.Since.Epoch == "" {
		return History{}, fmt.Errorf("history of %q: %w", room, protocol.Errorf(protocol.CodeBadRequest, "since needs an epoch"))
	}
	f, err := c.do(ctx, protocol.ClientFrame{Type: protocol.TypeHistory, Room: room, Since: q.Since, Limit: max(q.Limit, 0)})
	if err != nil {
		return History{}, fmt.Errorf("history of %q: %w", room, err)
	}
	h := History{Room: f.Room, Position: Position{Epoch: f.Epoch, Offset: f.Offset}, Messages: make([]Message, len(f.Messages))}
	for i := range f.Messages {
		h.Messages[i] = messageFrom(&f.Messages[i])
	}
	return h, nil
}

package client

import (
	"encoding/json"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Position is a place in a room's stream: an epoch and an offset
// (PROTOCOL.md, "offset / epoch").
type Position = protocol.Position

// UserSessions counts one user's sessions in a room.
type UserSessions = protocol.UserSessions

// Kind says what a Message reports.
type Kind int

// Kinds of Message.
const (
	// KindMessage is a message published to Room at Position.
	KindMessage Kind = iota
	// KindReset says that Room's stream was not continuous for this
	// client: messages before Position may be missing (the server sent
	// reset, or a resume after a reconnect answered recovered: false). The
	// stream continues after Position, often in a new epoch; reload the
	// room's state from your own source.
	KindReset
	// KindLeft says that the client is no longer joined to Room: the server
	// refused to join it again after a reconnect. Err holds the refusal, a
	// *protocol.Error.
	KindLeft
)

func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindReset:
		return "reset"
	case KindLeft:
		return "left"
	}
	return "unknown"
}

// Message is what a joined room delivers: a message, or a reset or left
// notice (see Kind). Per room, they come in stream order, and each message
// exactly once, across reconnects.
type Message struct {
	Kind Kind
	Room string
	// Position is the message's position; for KindReset, where the stream
	// continues after.
	Position
	// From is the publishing user; empty for anonymous HTTP API publishes.
	From string
	// Data is the message's JSON value.
	Data json.RawMessage
	// Time is the broker-side publish time.
	Time time.Time
	// Err is set for KindLeft.
	Err error
}

// messageFrom converts a message frame.
func messageFrom(f *protocol.ServerFrame) Message {
	m := Message{
		Kind:     KindMessage,
		Room:     f.Room,
		Position: Position{Epoch: f.Epoch, Offset: f.Offset},
		From:     f.From,
		Data:     f.Data,
	}
	if f.TS != 0 {
		m.Time = time.UnixMilli(f.TS)
	}
	return m
}

// State is the connection state of a Client.
type State int

// States of a Client. A client starts connecting, and moves between
// connected, disconnected (waiting before the next attempt) and connecting
// until it is closed.
const (
	StateDisconnected State = iota
	StateConnecting
	StateConnected
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateDisconnected:
		return "disconnected"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateClosed:
		return "closed"
	}
	return "unknown"
}

// emit queues m for the dispatcher. c.mu must be held.
func (c *Client) emit(m Message) {
	c.queue = append(c.queue, m)
	select {
	case c.wakeDispatch <- struct{}{}:
	default:
	}
}

// dispatch hands queued messages to Config.Handler or the Messages channel
// until the client stops (after the queue is empty) or Close is called (at
// once).
func (c *Client) dispatch() {
	defer close(c.dispatchDone)
	if c.cfg.Handler == nil {
		defer close(c.msgs)
	}
	for {
		c.mu.Lock()
		for len(c.queue) == 0 {
			end := c.stopped
			c.mu.Unlock()
			if end {
				return
			}
			select {
			case <-c.wakeDispatch:
			case <-c.quit:
				return
			}
			c.mu.Lock()
		}
		m := c.queue[0]
		c.queue[0] = Message{}
		c.queue = c.queue[1:]
		if len(c.queue) == 0 {
			c.queue = nil
		}
		c.mu.Unlock()
		select {
		case c.space <- struct{}{}:
		default:
		}
		select {
		case <-c.quit:
			return
		default:
		}
		if c.cfg.Handler != nil {
			c.cfg.Handler(m)
			continue
		}
		select {
		case c.msgs <- m:
		case <-c.quit:
			return
		}
	}
}

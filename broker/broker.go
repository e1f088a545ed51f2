// Package broker is the contract between an instance's hub and the bus that
// carries messages between instances: the Broker interface, the values that
// cross it, and its sentinel errors.
//
// Every message goes through the broker, local or not: Publish stores the
// message in the room's history, gives it the room's next offset and hands it
// to every Handler subscribed to the room, on every instance. Per room, a
// Handler sees messages in offset order with no hole; where a broker cannot
// keep that promise (its live path lost messages that history no longer
// holds, or the room's epoch changed) it calls Handler.Reset instead.
//
// Implementations: broker/memory (embedded, one process) and broker/redis.
// broker/brokertest holds the conformance suite every implementation passes.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Sentinel errors of every broker.
var (
	// ErrUnavailable means the broker could not be reached; for Publish it
	// means the message was NOT stored, unless the error also wraps
	// ErrUnconfirmed.
	ErrUnavailable = errors.New("broker: unavailable")
	// ErrUnconfirmed marks a publish that reached the broker's connection
	// but whose answer never came: the connection broke or went silent.
	// The message may have been stored; publishing again with the same
	// idempotency key tells. Errors that wrap it wrap ErrUnavailable too.
	ErrUnconfirmed = errors.New("broker: publish not confirmed")
	// ErrNotFound means a looked-up record (a session state) does not exist.
	ErrNotFound = errors.New("broker: not found")
	// ErrClosed means the broker was closed.
	ErrClosed = errors.New("broker: closed")
)

// Position is a place in a room's stream: (epoch, offset).
type Position = protocol.Position

// Message is a stored message as brokers deliver it. Handlers share one
// *Message and must treat it as read-only.
type Message struct {
	Room   string
	Epoch  string
	Offset uint64
	// Time is the broker-side publish time in Unix milliseconds.
	Time int64
	// From is the publishing user; empty for anonymous API publishes.
	From string
	// Origin is the id of the publishing session, so that it can be answered
	// with an ack instead of its own message; empty for API publishes.
	Origin string
	// Data is compact JSON.
	Data json.RawMessage
}

// Position returns the message's position.
func (m *Message) Position() Position { return Position{Epoch: m.Epoch, Offset: m.Offset} }

// Publication is what a publisher hands to Publish.
type Publication struct {
	From   string
	Origin string
	// Data is compact JSON; empty Data is stored as null.
	Data json.RawMessage
	// Key, when set, makes the publish idempotent: a key already used in the
	// same room within the broker's idempotency TTL is not published again,
	// and Publish returns the first publish's position.
	Key string
}

// HistoryQuery selects messages of a room's history.
type HistoryQuery struct {
	// After selects messages with an offset greater than After.
	After uint64
	// Limit is the most messages returned; 0 means all that history holds.
	Limit int
	// Tail selects the last Limit messages after After instead of the first.
	Tail bool
}

// History is the answer to a history read.
type History struct {
	// Position is the room's latest position at the time of the read.
	Position
	// Messages are in offset order.
	Messages []*Message
}

// PresenceEntry is one session's presence in a room.
type PresenceEntry struct {
	Session  string
	User     string
	Instance string
}

// SessionState is what thin-client session recovery needs of a session: its
// user and, per joined room, the position of the last message it was sent.
type SessionState struct {
	ID    string
	User  string
	Rooms map[string]Position
}

// InstanceInfo describes a live instance in the registry.
type InstanceInfo struct {
	ID            string
	Address       string
	Sessions      int
	Started       time.Time
	LastHeartbeat time.Time
}

// Handler receives the messages of the rooms it subscribed to. For one room,
// calls are made in offset order and never concurrently; calls for different
// rooms may be concurrent. A Handler must not block and must not call the
// broker from inside a call. Brokers tell handlers apart by identity, so a
// Handler must be comparable (a pointer).
type Handler interface {
	// Deliver hands over the next message of a subscribed room.
	Deliver(m *Message)
	// Reset says that the broker could not keep room continuous: messages
	// may have been lost, and the room's position is now pos. It comes
	// before the first message after pos, which has offset pos.Offset+1;
	// a new epoch is always announced this way.
	Reset(room string, pos Position)
}

// Rooms is the message path of the bus: publishing into a room's history,
// live delivery to subscribed handlers, and history reads. It is the role
// the hub's fan-out and the HTTP API's publish and history routes need.
type Rooms interface {
	// Publish stores p in room's history with the room's next offset and
	// delivers it to every subscribed Handler, on every instance. It returns
	// only after the message is stored, so its position is safe to ack.
	Publish(ctx context.Context, room string, p Publication) (Position, error)
	// Subscribe starts delivering the messages of rooms published from now
	// on to h. Subscribing twice to one room is a no-op.
	Subscribe(ctx context.Context, h Handler, rooms ...string) error
	// Unsubscribe stops delivering rooms to h.
	Unsubscribe(ctx context.Context, h Handler, rooms ...string) error
	// Position returns room's latest position, starting an epoch with offset
	// 0 if the room has none.
	Position(ctx context.Context, room string) (Position, error)
	// History reads room's history. Like Position it starts an epoch for
	// a room that has none, so its answer always names one. A negative
	// Limit is an error.
	History(ctx context.Context, room string, q HistoryQuery) (History, error)
}

// Presence records which sessions are in which rooms, across instances.
type Presence interface {
	// AddPresence records a session's presence in room until it is removed
	// or, on remote brokers, until its instance stops refreshing it (see
	// Registry.Heartbeat).
	AddPresence(ctx context.Context, room string, e PresenceEntry) error
	// RemovePresence removes a session's presence from room.
	RemovePresence(ctx context.Context, room, session string) error
	// Presence lists the sessions present in room, sorted by user, then
	// session.
	Presence(ctx context.Context, room string) ([]PresenceEntry, error)
}

// SessionStore keeps session states for thin-client recovery
// (hello.session).
type SessionStore interface {
	// SaveSessions records session states; each expires ttl after it was
	// saved.
	SaveSessions(ctx context.Context, ttl time.Duration, states ...SessionState) error
	// LoadSession returns a saved session state or an error wrapping
	// ErrNotFound.
	LoadSession(ctx context.Context, id string) (SessionState, error)
}

// Registry is the list of live instances.
type Registry interface {
	// Heartbeat records info in the instance registry and refreshes the
	// expiry of this instance's presence entries.
	Heartbeat(ctx context.Context, info InstanceInfo) error
	// Deregister removes an instance from the registry at once.
	Deregister(ctx context.Context, id string) error
	// Instances lists the live instances, sorted by id.
	Instances(ctx context.Context) ([]InstanceInfo, error)
}

// Broker is the bus shared by the instances: every role above, and Close.
// Code that needs one role asks for that role's interface only. All
// methods are safe for concurrent use. Every method that talks to a remote
// broker returns an error wrapping ErrUnavailable when it cannot be
// reached.
type Broker interface {
	Rooms
	Presence
	SessionStore
	Registry
	// Close releases the broker's connections. Subscriptions end.
	Close(ctx context.Context) error
}

// Checker is an optional capability of a broker: Ready reports whether it
// can serve now (connected, its live path working). /readyz asks it.
type Checker interface {
	Ready(ctx context.Context) error
}

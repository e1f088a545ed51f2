// Package memory is the embedded broker: one process, no network, the
// default when no Redis is configured. It keeps the same semantics as the
// Redis broker, so the hub cannot tell them apart: per-room epochs and
// contiguous offsets, a bounded history that expires HistoryTTL after the
// room's last publish, idempotent publishes, presence, session states for
// thin-client recovery and an instance registry.
//
// # Rooms
//
// Each room has an epoch (a random opaque string), the offset of its last
// message and a ring of its last HistorySize messages. A room's state
// expires HistoryTTL after its last publish, or after Position or History
// started its epoch; the next Publish, Position or History then starts a new
// epoch at offset 0. Handlers that were subscribed while the old epoch was
// live get Handler.Reset with the new position before the first message of
// the new epoch.
//
// Publish assigns the offset, appends to history and calls Deliver on every
// subscribed Handler, all while holding the room's lock: per room, handlers
// see messages in offset order, never concurrently, and a Subscribe or
// Unsubscribe is a clean cut between two publishes. Handlers therefore must
// not block and must not call the broker (see broker.Handler); doing so
// deadlocks. Handlers are compared by identity: they are map keys, so their
// dynamic type must be comparable: a pointer, typically, to a type that is
// not zero-size (distinct zero-size values may share an address).
//
// Messages handed to handlers and returned by History are shared with the
// broker's history and must be treated as read-only.
//
// # Memory
//
// Expiry is lazy: it is checked whenever a room is used. In addition, room
// lookups sweep the whole room map at most once per min(HistoryTTL,
// IdempotencyTTL) of clock time, dropping expired histories and idempotency
// keys and removing rooms that hold nothing any more, so abandoned rooms do
// not pile up.
//
// All rooms' history together is bounded by HistoryMaxBytes (256 MiB by
// default), counted with MessageBytes. Every held message is also linked
// into one age list, oldest first; a publish that takes the total over the
// budget then drops the oldest messages of the whole broker, whichever
// rooms they belong to, until it fits again. Dropping a room's oldest
// messages is the trim HistorySize makes anyway: the room keeps its epoch
// and offset, and a recovery from before the trim is not continuous, so
// the hub answers it recovered: false and never a hole. Saved session states and stale instances are pruned the same
// way by their own calls. The broker starts no goroutines.
//
// # Locks
//
// Lock order: the broker's room-map lock, then a room's lock. The presence,
// session, instance and age-list locks are leaves: nothing else is locked while one of
// them is held. Handlers run with their room's lock held.
package memory

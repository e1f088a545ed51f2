// Package hub is the core of one Switchboard instance: it owns the sessions
// (one per WebSocket connection), the local rooms and their members, and the
// broker subscriptions, and it implements broker.Handler to fan each message
// out to the local members of its room.
//
// # One delivery path
//
// Every publish, local or not, goes to the broker; the broker hands the
// stored message to Hub.Deliver on every instance subscribed to the room.
// Deliver encodes the frame once and appends the same bytes to the bounded
// queue of each local member. The publishing session is skipped (it gets the
// ack instead) unless it asked for echo.
//
// # Sessions
//
// The HTTP handler upgrades the connection and returns. An idle session is
// one goroutine parked in a readiness wait on a minimal stack; when data
// comes it starts a reader that decodes and handles client frames one at a
// time, in order, and hands back to a fresh waiter once the read buffer is
// empty. The hub writes its WebSocket frames itself (wire.go): the flusher's
// few shared workers give each session with queued frames one non-blocking
// write, and only what the socket does not take goes to a goroutine of the
// session's own (Session.writeLoop), which also does closing. Heartbeat
// pings come from one hub-wide ticker and take the same way. A queue that
// grows past Config.SendQueueBytes closes its session with 4008 and never
// blocks the hub.
//
// # Continuity
//
// Each room member remembers the next offset it expects. A join first makes
// the member "recovering" (live messages are buffered), then reads the
// room's position or, for a join with since, its history; it sends the missed
// messages and joined, then the buffered live messages it has not yet seen.
// So a member never sees a message twice or out of order, and a hole is
// answered with a reset frame, never with silence.
//
// # Locks
//
// Lock order: Hub.mu, then room.mu, then Session.mu, then the flusher's. No
// lock is held across broker calls or socket I/O; enqueueing a frame never
// blocks.
package hub

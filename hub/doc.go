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
// The HTTP handler upgrades the connection (package transport does the
// handshake and owns the socket) and returns. A Session is the
// transport.Handler of its connection: the first message must be hello,
// every later one is a request, handled one at a time, in order. Frames go
// out through the connection's bounded send queue: live messages with
// Send, which closes a slow consumer with 4008 rather than block the hub;
// answers a client asked for (replays, history) with SendWait, which
// waits for room. Heartbeat pings come from one hub-wide ticker. A broker
// call made for a session is cancelled when the session closes.
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
// Lock order: Hub.mu, then room.mu, then Session.mu; a transport.Conn's
// lock is taken last and released before it calls the Session back. No
// lock is held across broker calls or socket I/O; sending a live frame
// never blocks.
package hub

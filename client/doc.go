// Package client is the Go SDK of Switchboard: a client that connects to a
// deployment over WebSocket, joins rooms, publishes and receives messages,
// and survives deploys, crashes and network faults by itself.
//
// # Connections
//
// Dial connects to one of Config.URLs (a random one first, then another
// random one on every attempt), sends hello with a token from Config.Token (fetched
// again for every connection) and returns after the server's welcome. When
// a connection ends, the client reconnects following PROTOCOL.md's close
// code table: it stops after 1000, 1008, 1009 and 4004 (unless
// Config.ReconnectOnDisconnect), waits exactly reconnectAfter after a
// server:reconnect (a drain, 4001), backs off longer after 4029, and
// otherwise (4003 with a fresh token, 4008, 1001, 1013, network errors)
// backs off exponentially with full jitter (Config.Backoff). A dead
// connection (nothing received within Config.HeartbeatTimeout; the client
// pings after half of it) is dropped and replaced. The state (connecting,
// connected, disconnected, closed) is reported to Config.OnStateChange.
//
// # Failing fast
//
// The client retries only what can succeed later: network errors (refused
// connections, resets, timeouts), and HTTP answers to the upgrade request
// that say "not now": 5xx (an instance that drains answers 503, a load
// balancer without a healthy backend 502), 408 and 429. When the answer
// carries Retry-After (capped at 5 minutes), the next attempt waits that
// long plus the usual jittered back-off, so that the clients told the same
// delay do not all come back at once. Any other answer, such as 200 from a
// web page, a redirect, 401 or 403 from a gateway, or 404 for a wrong
// path, would be the same on every attempt: Dial returns it at once, and a
// running client whose reconnection gets it stops, as an *UpgradeError
// holding the HTTP status (errors.As; it matches ErrClosed). Before the
// first welcome, the client also stops when the server refuses the token
// (close code 4003), when Config.Token fails, and when the TLS handshake
// cannot succeed (an untrusted certificate, a wss:// URL of a server
// without TLS), so that a mistake in the configuration shows at Dial
// instead of as endless reconnections.
//
// The connections are made with Config.NetDial, Config.TLSConfig,
// Config.Proxy and Config.Header, all standard library types: the
// package's API exposes no type of the WebSocket library it uses.
//
// # Exactly once, in order
//
// The client remembers, per joined room and for its inbox, the position of
// the last message it received. On every reconnect, hello resumes all of
// them from there and names the previous session, so the server sends what
// was missed and then the live stream (PROTOCOL.md, "Recovery"). The client
// drops any message at or before the position it has, so each message is
// delivered once and in offset order per room, across reconnects. When the
// server cannot recover a room (reset, or recovered: false), the client
// delivers a KindReset message and follows the new position. A resumed room
// that the server refuses to join again is delivered as KindLeft.
//
// Requests (Join, Leave, Publish, Send, Presence, History) take a context
// and return the server's answer. A request issued while disconnected waits
// for the connection; one written on a connection that ended before its
// answer is written again, in the original order, on the next one. Every
// publish carries a random idempotency key that a retry keeps, so a
// dropped connection never turns one publish into two messages, and the
// caller gets exactly one answer (PROTOCOL.md, guarantee 6). The client's
// own publishes are acked, not delivered back: the client skips them when a
// resume replays them, holding back the resumed messages of its own user
// until the retried publishes are answered.
//
// # Goroutines and locks
//
// A Client runs a connection goroutine (Dial, reconnects, states) and a
// dispatcher that hands messages, in order, to Config.Handler or to the
// Messages channel. Each connection adds a reader, a writer (the only one
// writing data frames) and a heartbeat watchdog; they end with the
// connection, and Close waits for all of them. One mutex, Client.mu, guards
// the client's state; no I/O, callback or blocking send happens under it.
// The reader hands messages to a queue bounded by Config.QueueLength and
// stops reading while it is full.
package client

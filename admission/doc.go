// Package admission decides which WebSocket connections an instance takes
// on: how many at once (per instance and per client address), and how many
// new sessions per second, resuming ones first.
//
// # Counts
//
// Conns counts open connections, over the instance and per client address
// (an IPv6 client per /64 network), against their ceilings. A connection
// is counted when it is accepted (Acquire) and released exactly once when
// it ends (Release); a refusal counts nothing.
//
// # Client addresses
//
// ClientAddr names the client of a request: the TCP peer, unless the peer
// is one of the trusted proxies (Proxies), in which case it is the
// right-most address of X-Forwarded-For that is not a trusted proxy. The
// entries to its left were written by the client or by proxies nobody
// vouches for, so they are never used. ForwardedHost is the host the
// client asked for when a trusted proxy says so.
//
// # Accept rate, resuming sessions first
//
// Gate spends a token bucket on sessions as their hello arrives, the
// moment it is known whether a session resumes (hello.session or
// hello.resume) or starts cold. While tokens last, every hello passes at
// once. When they run out, hellos wait in one bounded queue per kind; each
// new token goes to the oldest resuming hello, and to a cold one only when
// no resuming hello waits. A hello that waited for the bound without a
// token is refused, and so is one that finds the queue full, except that a
// resuming hello takes the place of the newest cold one (which is refused
// instead). A waiting hello holds no goroutine of its own: the caller's
// goroutine blocks, and one timer per Gate hands out tokens and refusals.
package admission

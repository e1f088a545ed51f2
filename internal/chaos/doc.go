// Package chaos is the zero-loss proof of Switchboard (issue 5): a workload
// of Go clients and publishers that runs against a deployment while
// something else kills and restarts its instances, and a checker that says,
// afterwards, whether every client holds every acknowledged message of its
// rooms and inbox exactly once and in offset order.
//
// # The workload
//
// Start dials the clients (client.Dial with the URLs of every instance, in
// dev mode: users without tokens), some users with two sessions, and joins
// each to a few rooms; every client also has its inbox. Publish starts the
// publishers at a steady rate: clients that publish to their rooms and send
// to users' inboxes (client.Publish and client.Send, which retry with their
// idempotency key across reconnects), and HTTP API publishers (POST
// /api/publish and /api/send with a key each, retried with the same key on
// the next instance after a network error or a 5xx until acknowledged).
// Stop ends the publishing and waits for the publishes in flight;
// WaitCaughtUp waits until every client has received everything; Report
// checks.
//
// # What counts
//
// A publish counts once it is acknowledged: a client's ack or an API 200.
// An API publish answered 503 is not stored (PROTOCOL.md, "unavailable");
// one whose answer was lost may be, and its retry with the same key returns
// the original position (guarantee 6). So every room's acknowledged
// positions, and the offsets below them (offsets have no holes), are what
// each member must hold: every offset after the position it joined at, up
// to the room's highest acknowledged one, delivered exactly once, in
// order, with the data that was acknowledged at that position. A client's
// own acknowledged publishes count as held, because the server acks them
// instead of delivering them back (guarantee 1); the other session of the
// same user receives them.
//
// The Ledger is safe for concurrent use: the publishers record acks in it,
// and each client's Handler and OnStateChange record into its Tracker. Lock
// order: Ledger, then Tracker.
package chaos

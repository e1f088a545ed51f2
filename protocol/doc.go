// Package protocol is the wire contract of Switchboard, version 1: the frames a
// client and a server exchange over a WebSocket, their error and close codes,
// and the rules for room and user names.
//
// It imports nothing else of Switchboard, so the server, the Go client and the
// tests share one definition of the wire. PROTOCOL.md is the normative text;
// docs/protocol.md records what this package settles where PROTOCOL.md is silent.
//
// Client frames are decoded with [Decode] into one [ClientFrame] that carries
// the union of all client fields. Server frames are plain structs encoded with
// [Encode]; the hot path, a room message, has its own allocation-light
// [AppendMessage] so that a server encodes each message once and shares the
// bytes with every recipient.
package protocol

// Package auth verifies and signs the JSON Web Tokens that Switchboard
// sessions present in hello and refresh (PROTOCOL.md, "Auth"), and decides
// which rooms a token lets its user join and publish to.
//
// # Tokens and claims
//
// A [Verifier] checks a token's signature and time claims and turns it into
// [Claims]. It accepts HS256 (and HS384, HS512) with a shared secret, and
// RS256, RS384, RS512 or ES256, ES384, ES512 with a PEM public key; each key
// only for its own family, so a token cannot choose how it is checked
// (algorithm confusion) and "none" is never accepted. The claims read are:
//
//   - sub: the user id, required, a valid id per protocol.ValidUser.
//   - exp: the expiry, required when VerifierConfig.RequireExp is set (every
//     mode but --dev). nbf is honoured too. Both get a small leeway for clock
//     skew: a token is accepted until exp plus the leeway, and
//     Claims.ValidUntil says when that is, so that a session can last
//     exactly as long as its token would still be accepted.
//   - rooms: optional array of room patterns the user may join. Absent means
//     every room; an empty array means none.
//   - publish: optional array of room patterns the user may publish to.
//     Absent means the same rooms as rooms; an empty array means none.
//
// Other claims are ignored. [Sign] mints HS256 tokens for `switchboard
// token` and for tests.
//
// Every verification failure satisfies errors.Is(err, [ErrInvalidToken]); an
// expired token also satisfies errors.Is(err, [ErrExpired]). Error messages
// never contain the token.
//
// # Patterns
//
// A pattern is a room name that may contain '*', which matches any run of
// characters (none included, ':' and '.' included), and '?', which matches
// exactly one character. Every other character matches itself. "chat:*"
// matches "chat:" and "chat:a.b"; "*:admin" matches "ops:admin"; "*"
// matches every room. [ValidPattern] says whether a pattern is well formed,
// [Match] applies one.
//
// # Inboxes
//
// Patterns never grant an inbox. Whatever rooms and publish say, a user may
// always join its own inbox "@<user>" and never another user's. Direct
// messages to another user go through the send path, which the hub checks
// on its own (--no-direct), not through [Claims.CanPublish].
//
// A Verifier is immutable and safe for concurrent use; the methods of Claims
// only read it.
package auth

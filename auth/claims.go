package auth

import (
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Claims is what a verified token says about its holder. The zero value
// belongs to no user: it may join every non-inbox room and no inbox.
type Claims struct {
	// User is the user id (the token's sub).
	User string
	// Expires is the token's exp, without leeway. Zero means the token
	// does not expire.
	Expires time.Time
	// ValidUntil is when Verify stops accepting the token: Expires plus
	// the verifier's leeway for clock skew (zero when Expires is). A
	// session lives until ValidUntil, not Expires, so that the token that
	// opened it is never refused a moment after it was accepted (see
	// docs/protocol.md, "Auth"). Set by Verify; Sign ignores it.
	ValidUntil time.Time
	// Rooms are the patterns of the rooms User may join. They restrict
	// joins when HasRooms is set or Rooms is not empty; otherwise every
	// room is allowed.
	Rooms []string
	// Publish are the patterns of the rooms User may publish to. They
	// restrict publishing when HasPublish is set or Publish is not empty;
	// otherwise publishing follows Rooms.
	Publish []string
	// HasRooms records that the token carried a rooms claim, so that an
	// empty list (no room) differs from an absent claim (every room).
	HasRooms bool
	// HasPublish records that the token carried a publish claim, so that
	// an empty list (no room) differs from an absent claim (as Rooms).
	HasPublish bool
}

// CanJoin reports whether the user may join room. A user may always join its
// own inbox "@<User>" and never another inbox, whatever Rooms says. Other
// rooms must match one of Rooms, unless the token had no rooms claim. CanJoin
// does not check that room is a well-formed name; the caller does that first
// (protocol.ParseRoom).
func (c Claims) CanJoin(room string) bool {
	if user, ok := protocol.InboxUser(room); ok {
		return c.ownInbox(user)
	}
	if c.HasRooms || len(c.Rooms) > 0 {
		return matchAny(c.Rooms, room)
	}
	return true
}

// CanPublish reports whether the user may publish to room with a publish
// frame. Other rules still apply: the session must have joined the room.
//
// For an inbox, CanPublish is true only for the user's own inbox: writing to
// another user's inbox is a direct message, which goes through send and is
// checked by the hub (--no-direct), not by token patterns. Other rooms must
// match one of Publish; without a publish claim, the rooms CanJoin allows.
func (c Claims) CanPublish(room string) bool {
	if user, ok := protocol.InboxUser(room); ok {
		return c.ownInbox(user)
	}
	if c.HasPublish || len(c.Publish) > 0 {
		return matchAny(c.Publish, room)
	}
	return c.CanJoin(room)
}

// ownInbox reports whether user, taken from an inbox name, is c's user.
func (c Claims) ownInbox(user string) bool {
	return c.User != "" && user == c.User
}

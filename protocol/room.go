package protocol

import (
	"fmt"
	"strings"
)

// MaxRoomLen is the longest room name, in bytes.
const MaxRoomLen = 128

// MaxUserLen is the longest user id, in bytes, so that the inbox "@" + id is
// at most 128 bytes too.
const MaxUserLen = 127

// InboxPrefix starts the name of every user's inbox room.
const InboxPrefix = "@"

// ValidRoom reports whether name is a legal room name: 1-128 characters of
// [A-Za-z0-9_.:-]. Inboxes ("@user") are not rooms in this sense; see
// [ParseRoom].
func ValidRoom(name string) bool {
	if len(name) == 0 || len(name) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !roomChar(name[i]) {
			return false
		}
	}
	return true
}

func roomChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == ':' || c == '-'
}

// ValidUser reports whether id is a legal user id: 1-127 bytes of printable
// ASCII other than space, '{' and '}' (braces would break the broker's key
// hash tags). E-mail addresses and ids like "auth0|123" are fine.
func ValidUser(id string) bool {
	if len(id) == 0 || len(id) > MaxUserLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c > '~' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// Inbox returns the inbox room of user.
func Inbox(user string) string { return InboxPrefix + user }

// InboxUser returns the user whose inbox room is room, and whether room is an
// inbox at all.
func InboxUser(room string) (string, bool) {
	if !strings.HasPrefix(room, InboxPrefix) {
		return "", false
	}
	return room[len(InboxPrefix):], true
}

// ParseRoom checks a room name as a client or the API may give it: either a
// legal room name or the inbox of a legal user id. The error is a *Error with
// code bad_room.
func ParseRoom(name string) error {
	if name == "" {
		return &Error{Code: CodeBadRoom, Message: fmt.Sprintf("the room name is missing or empty: use 1-%d characters of A-Z a-z 0-9 _ . : -", MaxRoomLen)}
	}
	if user, ok := InboxUser(name); ok {
		if ValidUser(user) {
			return nil
		}
		return &Error{Code: CodeBadRoom, Message: fmt.Sprintf("%q is not a valid inbox: the user id must be 1-%d printable characters without spaces or braces", clip(name), MaxUserLen)}
	}
	if ValidRoom(name) {
		return nil
	}
	return &Error{Code: CodeBadRoom, Message: fmt.Sprintf("%q is not a valid room name: use 1-%d characters of A-Z a-z 0-9 _ . : -", clip(name), MaxRoomLen)}
}

// clip shortens a name for an error message so that an abusive name does not
// make an abusive error frame.
func clip(s string) string {
	if len(s) > 140 {
		return s[:140] + "…"
	}
	return s
}

func sprintf(format string, args ...any) string {
	// Skip fmt for a plain message, but not when it holds a verb: vet asks
	// callers to write "100%%", which must still come out as "100%".
	if len(args) == 0 && !strings.Contains(format, "%") {
		return format
	}
	return fmt.Sprintf(format, args...)
}

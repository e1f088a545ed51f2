package auth

import (
	"errors"
	"fmt"
)

// MaxPatternLen is the longest room pattern, in bytes. It is longer than
// protocol.MaxRoomLen because wildcards match runs of any length.
const MaxPatternLen = 256

// ErrBadPattern is wrapped by the errors of [ValidPattern].
var ErrBadPattern = errors.New("auth: bad pattern")

// ValidPattern reports, as an error wrapping [ErrBadPattern], why p is not a
// well-formed room pattern: 1 to [MaxPatternLen] bytes of room-name
// characters (A-Z a-z 0-9 _ . : -) and the wildcards '*' and '?'. Inboxes
// ('@') cannot be named by patterns; see the package doc. The error does not
// repeat the pattern, so callers that want it in a message add it themselves.
func ValidPattern(p string) error {
	if reason := patternProblem(p); reason != "" {
		return fmt.Errorf("%w: %s", ErrBadPattern, reason)
	}
	return nil
}

// patternProblem returns why p is not a valid pattern, or "" if it is.
func patternProblem(p string) string {
	if p == "" {
		return "empty"
	}
	if len(p) > MaxPatternLen {
		return fmt.Sprintf("longer than %d bytes", MaxPatternLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case patternChar(c):
		case c == '@':
			return fmt.Sprintf("'@' at byte %d: inboxes cannot be granted by patterns", i)
		default:
			return fmt.Sprintf("character %q at byte %d is not allowed; use A-Z a-z 0-9 _ . : - * ?", rune(c), i)
		}
	}
	return ""
}

// patternChar reports whether c may appear in a pattern: a room-name
// character (protocol.ValidRoom) or a wildcard.
func patternChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '.' || c == ':' || c == '-' || c == '*' || c == '?'
}

// Match reports whether room matches pattern. '*' matches any run of bytes,
// the empty run included; '?' matches exactly one byte; every other byte
// matches itself. Room names are ASCII, so bytes are characters. Match does
// not validate either argument: a malformed pattern simply matches
// literally. It runs in O(len(pattern)*len(room)) time at worst and
// allocates nothing.
func Match(pattern, room string) bool {
	p, r := 0, 0
	// star is the index of the last '*' seen in pattern (-1: none yet) and
	// next the room index that star's run will try to end at next. On a
	// mismatch we let the last star swallow one more byte and retry; earlier
	// stars never need to move, because whatever an earlier star could
	// absorb, the last one can too.
	star, next := -1, 0
	for r < len(room) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, next = p, r
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == room[r]):
			p++
			r++
		case star >= 0:
			next++
			p, r = star+1, next
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchAny reports whether room matches one of patterns.
func matchAny(patterns []string, room string) bool {
	for _, p := range patterns {
		if Match(p, room) {
			return true
		}
	}
	return false
}

package redis

import (
	"slices"

	"github.com/switchboard-rt/switchboard/broker"
)

// handlerSet is the handlers of one room. It is a slice: a room almost
// always has exactly one (its instance's hub), and a map per room would
// cost hundreds of bytes for each of an instance's (inbox) rooms.
type handlerSet []broker.Handler

func (s handlerSet) has(h broker.Handler) bool { return slices.Contains(s, h) }

// add adds h if it is not in s yet.
func (s *handlerSet) add(h broker.Handler) {
	if !s.has(h) {
		*s = append(*s, h)
	}
}

// remove removes h if it is in s.
func (s *handlerSet) remove(h broker.Handler) {
	*s = slices.DeleteFunc(*s, func(x broker.Handler) bool { return x == h })
}

// presenceValue is what an entry records besides its session. It keeps the
// caller's strings rather than the stored value built from them, which
// would be one more allocation per entry.
type presenceValue struct{ user, instance string }

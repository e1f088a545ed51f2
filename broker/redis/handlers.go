package redis

import (
	"iter"
	"slices"

	"github.com/switchboard-rt/switchboard/broker"
)

// handlerSet is the handlers of one room, in the order they were added. A
// room almost always has exactly one (its instance's hub), and every idle
// connection has a room of its own (its inbox), so the first handler is
// held in place: one handler costs no allocation, and a set is 24 bytes.
// The zero value is empty. Handlers are never nil.
type handlerSet struct {
	first broker.Handler    // nil if the set is empty
	rest  *[]broker.Handler // the others, if any
}

func (s handlerSet) has(h broker.Handler) bool {
	return s.first != nil && (s.first == h || s.rest != nil && slices.Contains(*s.rest, h))
}

// len returns the number of handlers.
func (s handlerSet) len() int {
	switch {
	case s.first == nil:
		return 0
	case s.rest == nil:
		return 1
	}
	return 1 + len(*s.rest)
}

// add adds h if it is not in s yet.
func (s *handlerSet) add(h broker.Handler) {
	switch {
	case s.has(h):
	case s.first == nil:
		s.first = h
	case s.rest == nil:
		s.rest = &[]broker.Handler{h}
	default:
		*s.rest = append(*s.rest, h)
	}
}

// remove removes h if it is in s.
func (s *handlerSet) remove(h broker.Handler) {
	switch {
	case s.first == nil:
	case s.first == h && s.rest == nil:
		s.first = nil
	case s.first == h:
		s.first = (*s.rest)[0]
		*s.rest = slices.Delete(*s.rest, 0, 1)
	case s.rest != nil:
		*s.rest = slices.DeleteFunc(*s.rest, func(x broker.Handler) bool { return x == h })
	}
	if s.rest != nil && len(*s.rest) == 0 {
		s.rest = nil
	}
}

// all yields the handlers in the order they were added.
func (s *handlerSet) all() iter.Seq[broker.Handler] {
	return func(yield func(broker.Handler) bool) {
		if s.first == nil || !yield(s.first) || s.rest == nil {
			return
		}
		for _, h := range *s.rest {
			if !yield(h) {
				return
			}
		}
	}
}

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

// presenceSessions is this Broker's entries in one room, session → entry:
// a short slice while the room holds few (most hold one: inboxes, rooms of
// two), a map beyond that.
type presenceSessions struct {
	list []presenceSession
	m    map[string]presenceValue
}

// presenceValue is what an entry records besides its session. It keeps the
// caller's strings rather than the stored value built from them, which
// would be one more allocation per entry.
type presenceValue struct{ user, instance string }

type presenceSession struct {
	session string
	presenceValue
}

// presenceListMax is the most entries kept in the slice.
const presenceListMax = 8

func (p *presenceSessions) len() int {
	if p.m != nil {
		return len(p.m)
	}
	return len(p.list)
}

// set adds or replaces session's entry.
func (p *presenceSessions) set(session string, value presenceValue) {
	if p.m != nil {
		p.m[session] = value
		return
	}
	for i := range p.list {
		if p.list[i].session == session {
			p.list[i].presenceValue = value
			return
		}
	}
	if len(p.list) < presenceListMax {
		p.list = append(p.list, presenceSession{session, value})
		return
	}
	p.m = make(map[string]presenceValue, 2*presenceListMax)
	for _, e := range p.list {
		p.m[e.session] = e.presenceValue
	}
	p.m[session] = value
	p.list = nil
}

// delete removes session's entry, if any.
func (p *presenceSessions) delete(session string) {
	if p.m != nil {
		delete(p.m, session)
		return
	}
	p.list = slices.DeleteFunc(p.list, func(e presenceSession) bool { return e.session == session })
}

// all yields every entry.
func (p *presenceSessions) all(yield func(session string, value presenceValue) bool) {
	if p.m != nil {
		for s, v := range p.m {
			if !yield(s, v) {
				return
			}
		}
		return
	}
	for _, e := range p.list {
		if !yield(e.session, e.presenceValue) {
			return
		}
	}
}

package hub

import (
	"iter"
	"slices"

	"github.com/switchboard-rt/switchboard/broker"
)

// member is one session's membership of a room: the position it expects
// next, and while its join is still sending what it missed, the live
// messages held back meanwhile. Guarded by room.mu.
type member struct {
	epoch string
	next  uint64
	// rec is set while the member is recovering: live messages go to
	// rec.pending until the join has sent what the member missed. Kept
	// apart because a member recovers only for the moment of its join,
	// and every session is a member of its inbox for its whole life.
	rec *recovery
}

// recovery is what a recovering member holds back.
type recovery struct {
	pending []*broker.Message
	// pendingBytes counts pending's data. Past the send queue's bound the
	// buffer is dropped and overflowed set: the join then reads those
	// messages from the history (see Hub.finishJoin).
	pendingBytes int
	overflowed   bool
	// pendingReset is a reset that arrived while recovering.
	pendingReset *broker.Position
}

// fewMembers is the most members a room keeps in a slice; more go to a
// map. Most rooms of an instance are inboxes with one member, for which a
// map would cost about 190 bytes and the slice costs 16.
const fewMembers = 8

// members is a room's local members. Guarded by room.mu.
type members struct {
	few  []memberEntry // while len <= fewMembers and many is nil
	many map[*Session]*member
}

type memberEntry struct {
	s *Session
	m *member
}

// get returns s's membership, or nil.
func (ms *members) get(s *Session) *member {
	if ms.many != nil {
		return ms.many[s]
	}
	for _, e := range ms.few {
		if e.s == s {
			return e.m
		}
	}
	return nil
}

// set makes m s's membership.
func (ms *members) set(s *Session, m *member) {
	if ms.many != nil {
		ms.many[s] = m
		return
	}
	for i := range ms.few {
		if ms.few[i].s == s {
			ms.few[i].m = m
			return
		}
	}
	if len(ms.few) < fewMembers {
		ms.few = append(ms.few, memberEntry{s, m})
		return
	}
	ms.many = make(map[*Session]*member, 2*fewMembers)
	for _, e := range ms.few {
		ms.many[e.s] = e.m
	}
	ms.many[s] = m
	ms.few = nil
}

// remove drops s's membership, if any.
func (ms *members) remove(s *Session) {
	if ms.many != nil {
		delete(ms.many, s)
		return
	}
	if i := slices.IndexFunc(ms.few, func(e memberEntry) bool { return e.s == s }); i >= 0 {
		ms.few = slices.Delete(ms.few, i, i+1)
	}
}

// len returns the number of members.
func (ms *members) len() int {
	if ms.many != nil {
		return len(ms.many)
	}
	return len(ms.few)
}

// all yields every member.
func (ms *members) all() iter.Seq2[*Session, *member] {
	return func(yield func(*Session, *member) bool) {
		if ms.many != nil {
			for s, m := range ms.many {
				if !yield(s, m) {
					return
				}
			}
			return
		}
		for _, e := range ms.few {
			if !yield(e.s, e.m) {
				return
			}
		}
	}
}

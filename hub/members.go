package hub

import "github.com/switchboard-rt/switchboard/broker"

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

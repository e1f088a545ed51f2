package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// payload is the data of the process tests' messages: who published it and
// its sequence number for that publisher; T is the send time in Unix
// nanoseconds where latency matters.
type payload struct {
	P string `json:"p"`
	N int    `json:"n"`
	T int64  `json:"t,omitempty"`
}

func decodePayload(f protocol.ServerFrame) (payload, error) {
	var p payload
	if err := json.Unmarshal(f.Data, &p); err != nil {
		return p, fmt.Errorf("message data %s: %w", f.Data, err)
	}
	return p, nil
}

// streamRules says what a room's stream may contain besides contiguous
// messages.
type streamRules struct {
	// resets may be announced (a new epoch, or a jump).
	resets bool
	// unrecovered resumes (joined with recovered false) are allowed.
	unrecovered bool
}

// streamCheck is what one session (across its reconnections) received in
// one room, checked against PROTOCOL.md's delivery guarantees.
type streamCheck struct {
	room string
	// messages of the room, in the order received.
	messages []protocol.ServerFrame
	// resets received, in order.
	resets []protocol.ServerFrame
	// acks of the session's own publishes to the room, in order.
	acks []protocol.ServerFrame
	// end is the position after the last message or own publish.
	end protocol.Position
	// problems found, each a sentence.
	problems []string
}

func (s *streamCheck) problemf(format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

// err returns the problems as one error, or nil.
func (s *streamCheck) err(who string) error {
	if len(s.problems) == 0 {
		return nil
	}
	const most = 10
	list := s.problems
	more := ""
	if len(list) > most {
		more = fmt.Sprintf("\n  ... and %d more", len(list)-most)
		list = list[:most]
	}
	return fmt.Errorf("%s in %s: %d problems:\n  %s%s", who, s.room, len(s.problems), strings.Join(list, "\n  "), more)
}

// checkStream follows room through frames, the frames of one session and
// of the sessions that resumed it, in the order they were received. The
// stream starts at the first joined of room (for an inbox: welcome), or at
// start if given. Every message must follow the previous one in the same
// epoch with no hole and no duplicate; offsets the session published itself
// (its acks) may be skipped, since it gets the ack instead. A resume's
// joined must say recovered and match the position reached. Resets are
// problems unless rules allow them.
func checkStream(frames []protocol.ServerFrame, room string, start *protocol.Position, rules streamRules) *streamCheck {
	s := &streamCheck{room: room}
	own := map[protocol.Position]bool{}
	for _, f := range frames {
		if f.Type == protocol.TypeAck && f.Room == room {
			s.acks = append(s.acks, f)
			p := protocol.Position{Epoch: f.Epoch, Offset: f.Offset}
			if own[p] {
				s.problemf("two acks for position %s/%d", f.Epoch, f.Offset)
			}
			own[p] = true
		}
	}
	var cur protocol.Position
	started := start != nil
	if started {
		cur = *start
	}
	// skipOwn moves cur over the session's own publishes that follow it.
	skipOwn := func() {
		for own[protocol.Position{Epoch: cur.Epoch, Offset: cur.Offset + 1}] {
			cur.Offset++
		}
	}
	for _, f := range frames {
		switch {
		case f.Type == protocol.TypeWelcome && f.Inbox != nil && f.Inbox.Room == room:
			if !started {
				cur, started = protocol.Position{Epoch: f.Inbox.Epoch, Offset: f.Inbox.Offset}, true
			}
		case f.Type == protocol.TypeJoined && f.Room == room:
			if !started {
				cur, started = protocol.Position{Epoch: f.Epoch, Offset: f.Offset}, true
				continue
			}
			if !f.Recovered {
				if !rules.unrecovered {
					s.problemf("resume answered joined %s/%d with recovered false (was at %s/%d)", f.Epoch, f.Offset, cur.Epoch, cur.Offset)
				}
				cur = protocol.Position{Epoch: f.Epoch, Offset: f.Offset}
				continue
			}
			skipOwn()
			if f.Epoch != cur.Epoch || f.Offset != cur.Offset {
				s.problemf("recovered joined says %s/%d but the missed messages ended at %s/%d", f.Epoch, f.Offset, cur.Epoch, cur.Offset)
			}
		case f.Type == protocol.TypeReset && f.Room == room:
			s.resets = append(s.resets, f)
			if !rules.resets {
				s.problemf("unexpected reset to %s/%d (was at %s/%d)", f.Epoch, f.Offset, cur.Epoch, cur.Offset)
			}
			cur, started = protocol.Position{Epoch: f.Epoch, Offset: f.Offset}, true
		case f.Type == protocol.TypeMessage && f.Room == room:
			s.messages = append(s.messages, f)
			switch {
			case !started:
				s.problemf("message %s/%d before the stream started", f.Epoch, f.Offset)
				cur, started = protocol.Position{Epoch: f.Epoch, Offset: f.Offset}, true
			case f.Epoch != cur.Epoch:
				s.problemf("message %s/%d in another epoch than %s/%d without a reset first", f.Epoch, f.Offset, cur.Epoch, cur.Offset)
				cur = protocol.Position{Epoch: f.Epoch, Offset: f.Offset}
			case f.Offset <= cur.Offset:
				s.problemf("duplicate or out of order: message %d after %d (epoch %s)", f.Offset, cur.Offset, f.Epoch)
			default:
				var missing []uint64
				for o := cur.Offset + 1; o < f.Offset; o++ {
					if !own[protocol.Position{Epoch: cur.Epoch, Offset: o}] {
						missing = append(missing, o)
					}
				}
				if len(missing) > 0 {
					s.problemf("hole: %s missing before message %d (epoch %s)", offsetRanges(missing), f.Offset, f.Epoch)
				}
				cur.Offset = f.Offset
			}
		}
	}
	skipOwn()
	s.end = cur
	return s
}

// offsetRanges formats sorted offsets compactly: "3-7, 9".
func offsetRanges(offs []uint64) string {
	var parts []string
	for i := 0; i < len(offs); {
		j := i
		for j+1 < len(offs) && offs[j+1] == offs[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(offs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", offs[i], offs[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// checkPayloads checks that the messages carry, for every publisher in
// want, each sequence number 1..want[publisher] exactly once and in order,
// and nothing from anyone else.
func (s *streamCheck) checkPayloads(want map[string]int) {
	last := map[string]int{}
	seen := map[payload]bool{}
	for _, f := range s.messages {
		p, err := decodePayload(f)
		if err != nil {
			s.problemf("%v", err)
			continue
		}
		p.T = 0
		if _, ok := want[p.P]; !ok {
			s.problemf("message %d from unexpected publisher %q (n %d)", f.Offset, p.P, p.N)
			continue
		}
		if seen[p] {
			s.problemf("publication %s#%d delivered twice (offset %d)", p.P, p.N, f.Offset)
			continue
		}
		seen[p] = true
		if p.N <= last[p.P] {
			s.problemf("publication %s#%d after %s#%d: out of publisher order", p.P, p.N, p.P, last[p.P])
		}
		last[p.P] = p.N
	}
	pubs := make([]string, 0, len(want))
	for p := range want {
		pubs = append(pubs, p)
	}
	slices.Sort(pubs)
	for _, p := range pubs {
		var missing []uint64
		for n := 1; n <= want[p]; n++ {
			if !seen[payload{P: p, N: n}] {
				missing = append(missing, uint64(n))
			}
		}
		if len(missing) > 0 {
			s.problemf("publications of %s never delivered: #%s", p, offsetRanges(missing))
		}
	}
}

// checkFrom checks that every message names its publisher in from: the
// payload's publisher is the publishing user, or the API's from.
func (s *streamCheck) checkFrom() {
	for _, f := range s.messages {
		if p, err := decodePayload(f); err == nil && f.From != p.P {
			s.problemf("message %d of %s#%d says from %q", f.Offset, p.P, p.N, f.From)
		}
	}
}

// reached reports whether frames hold a message or an ack of room at
// offset or beyond in epoch (any epoch if empty).
func reached(frames []protocol.ServerFrame, room, epoch string, offset uint64) bool {
	for _, f := range frames {
		if (f.Type == protocol.TypeMessage || f.Type == protocol.TypeAck) && f.Room == room &&
			(epoch == "" || f.Epoch == epoch) && f.Offset >= offset {
			return true
		}
	}
	return false
}

// waitReached waits until the session got room's message (or its own ack)
// at offset.
func waitReached(k *wstest.Collector, timeout time.Duration, who, room, epoch string, offset uint64) error {
	return k.Wait(timeout, fmt.Sprintf("%s to reach %s offset %d", who, room, offset), func(frames []protocol.ServerFrame) bool {
		return reached(frames, room, epoch, offset)
	})
}

// countType counts the frames of type typ.
func countType(frames []protocol.ServerFrame, typ string) int {
	n := 0
	for _, f := range frames {
		if f.Type == typ {
			n++
		}
	}
	return n
}

// errorFrames returns the error frames among frames, described.
func errorFrames(frames []protocol.ServerFrame) []string {
	var out []string
	for _, f := range frames {
		if f.Type == protocol.TypeError {
			out = append(out, wstest.Describe(f))
		}
	}
	return out
}

// TestCheckStream checks the checker of the process tests: it must see
// every kind of broken stream they look for.
func TestCheckStream(t *testing.T) {
	msg := func(epoch string, off uint64) protocol.ServerFrame {
		return protocol.ServerFrame{Type: protocol.TypeMessage, Room: "r", Epoch: epoch, Offset: off}
	}
	joined := func(epoch string, off uint64, recovered bool) protocol.ServerFrame {
		return protocol.ServerFrame{Type: protocol.TypeJoined, Room: "r", Epoch: epoch, Offset: off, Recovered: recovered}
	}
	ack := func(epoch string, off uint64) protocol.ServerFrame {
		return protocol.ServerFrame{Type: protocol.TypeAck, Room: "r", Epoch: epoch, Offset: off}
	}
	reset := func(epoch string, off uint64) protocol.ServerFrame {
		return protocol.ServerFrame{Type: protocol.TypeReset, Room: "r", Epoch: epoch, Offset: off}
	}
	other := protocol.ServerFrame{Type: protocol.TypeMessage, Room: "x", Epoch: "e", Offset: 9}
	for _, tc := range []struct {
		name     string
		frames   []protocol.ServerFrame
		rules    streamRules
		problems int
		end      uint64
	}{
		{"Contiguous", []protocol.ServerFrame{joined("e", 2, false), msg("e", 3), other, msg("e", 4)}, streamRules{}, 0, 4},
		{"Hole", []protocol.ServerFrame{joined("e", 0, false), msg("e", 1), msg("e", 3)}, streamRules{}, 1, 3},
		{"Duplicate", []protocol.ServerFrame{joined("e", 0, false), msg("e", 1), msg("e", 1)}, streamRules{}, 1, 1},
		{"MessageBeforeJoined", []protocol.ServerFrame{msg("e", 1)}, streamRules{}, 1, 1},
		{"OwnAckFillsGapLater", []protocol.ServerFrame{joined("e", 0, false), msg("e", 2), ack("e", 1), ack("e", 3)}, streamRules{}, 0, 3},
		{"TwoAcksOneOffset", []protocol.ServerFrame{joined("e", 0, false), ack("e", 1), ack("e", 1)}, streamRules{}, 1, 1},
		{"EpochChangeWithoutReset", []protocol.ServerFrame{joined("e", 5, false), msg("f", 1)}, streamRules{resets: true}, 1, 1},
		{"EpochChangeAfterReset", []protocol.ServerFrame{joined("e", 5, false), reset("f", 0), msg("f", 1)}, streamRules{resets: true}, 0, 1},
		{"ResetNotAllowed", []protocol.ServerFrame{joined("e", 5, false), reset("f", 0), msg("f", 1)}, streamRules{}, 1, 1},
		{"HoleAfterReset", []protocol.ServerFrame{joined("e", 5, false), reset("f", 0), msg("f", 2)}, streamRules{resets: true}, 1, 2},
		{"Resumed", []protocol.ServerFrame{joined("e", 0, false), msg("e", 1), msg("e", 2), joined("e", 2, true), msg("e", 3)}, streamRules{}, 0, 3},
		{"ResumedJoinedAhead", []protocol.ServerFrame{joined("e", 0, false), msg("e", 1), joined("e", 2, true), msg("e", 3)}, streamRules{}, 2, 3},
		{"ResumeNotRecovered", []protocol.ServerFrame{joined("e", 0, false), msg("e", 1), joined("e", 4, false), msg("e", 5)}, streamRules{}, 1, 5},
		{"ResumeNotRecoveredAllowed", []protocol.ServerFrame{joined("e", 0, false), msg("e", 1), joined("e", 4, false), msg("e", 5)}, streamRules{unrecovered: true}, 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := checkStream(tc.frames, "r", nil, tc.rules)
			if len(s.problems) != tc.problems || s.end.Offset != tc.end {
				t.Errorf("checkStream: %d problems %q, end %d; want %d problems, end %d", len(s.problems), s.problems, s.end.Offset, tc.problems, tc.end)
			}
		})
	}
}

func TestCheckPayloads(t *testing.T) {
	msg := func(p string, n int) protocol.ServerFrame {
		return protocol.ServerFrame{Type: protocol.TypeMessage, Room: "r", Data: wstest.JSON(payload{P: p, N: n})}
	}
	for _, tc := range []struct {
		name     string
		messages []protocol.ServerFrame
		problems int
	}{
		{"All", []protocol.ServerFrame{msg("a", 1), msg("b", 1), msg("a", 2)}, 0},
		{"Twice", []protocol.ServerFrame{msg("a", 1), msg("b", 1), msg("a", 2), msg("a", 2)}, 1},
		{"OutOfOrder", []protocol.ServerFrame{msg("a", 2), msg("b", 1), msg("a", 1)}, 1},
		{"Missing", []protocol.ServerFrame{msg("a", 1), msg("b", 1)}, 1},
		{"Stranger", []protocol.ServerFrame{msg("a", 1), msg("b", 1), msg("a", 2), msg("c", 1)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &streamCheck{room: "r", messages: tc.messages}
			s.checkPayloads(map[string]int{"a": 2, "b": 1})
			if len(s.problems) != tc.problems {
				t.Errorf("checkPayloads: problems %q, want %d", s.problems, tc.problems)
			}
		})
	}
}

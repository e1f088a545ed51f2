package chaos

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// maxProblems caps the problems a Report describes; the counts are exact.
const maxProblems = 20

// Report is the outcome of a check.
type Report struct {
	// Clients is the number of clients checked.
	Clients int
	// Published counts the acknowledged publishes.
	Published int
	// Delivered counts the messages the clients delivered, each client's
	// separately.
	Delivered int
	// Lost counts the deliveries that a client should have made and did
	// not: for each client and joined room, every offset after its join
	// position up to the room's highest acknowledged one that the client
	// neither delivered nor published itself.
	Lost int
	// Duplicated counts the deliveries that repeat something the client
	// already held (an offset it delivered or published itself, or the
	// same publish at another offset), plus the publishes acknowledged at
	// more than one position.
	Duplicated int
	// Resets counts the KindReset messages the clients delivered.
	Resets int
	// LongestDisconnect is the longest time a client spent not connected
	// after it first was, up to now for a client that is not connected.
	LongestDisconnect time.Duration
	// Disconnects counts the times a client lost its connection, and
	// Reasons those by close code ("4001", "1006" …) or "network".
	Disconnects int
	Reasons     map[string]int
	// GaveUp counts the publishes that were not acknowledged in time, and
	// Refused those that the server refused for good.
	GaveUp, Refused int
	// Closed counts the clients that stopped by themselves.
	Closed int
	// Problems describes the first findings, one line each.
	Problems []string
	// problems counts every finding, described or not.
	problems int
}

// String returns the summary line.
func (r Report) String() string {
	return fmt.Sprintf("chaos: published=%d delivered=%d lost=%d duplicated=%d resets=%d longest-disconnect=%.1fs",
		r.Published, r.Delivered, r.Lost, r.Duplicated, r.Resets, r.LongestDisconnect.Seconds())
}

// Details returns what the summary line leaves out.
func (r Report) Details() string {
	var reasons []string
	for _, k := range slices.Sorted(maps.Keys(r.Reasons)) {
		reasons = append(reasons, fmt.Sprintf("%s:%d", k, r.Reasons[k]))
	}
	return fmt.Sprintf("clients=%d disconnects=%d (by close code: %s) gave-up=%d refused=%d closed=%d problems=%d",
		r.Clients, r.Disconnects, strings.Join(reasons, " "), r.GaveUp, r.Refused, r.Closed, r.problems)
}

// Err returns nil when nothing was lost, duplicated, reordered, reset,
// refused or given up, and no client stopped by itself; otherwise an error
// that lists the first problems.
func (r Report) Err() error {
	if r.problems == 0 && r.Lost == 0 && r.Duplicated == 0 && r.Resets == 0 && r.Closed == 0 &&
		r.GaveUp == 0 && r.Refused == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)", r, r.Details())
	for _, p := range r.Problems {
		b.WriteString("\n\t")
		b.WriteString(p)
	}
	if r.problems > len(r.Problems) {
		fmt.Fprintf(&b, "\n\t... and %d more", r.problems-len(r.Problems))
	}
	return errors.New(b.String())
}

func (r *Report) problem(format string, args ...any) {
	r.problems++
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// roomAcks is what was acknowledged in one room.
type roomAcks struct {
	epoch string
	max   uint64
	at    map[uint64]ack
}

// Check compares what every client delivered with what was acknowledged,
// as of now.
func (l *Ledger) Check() Report {
	return l.check(time.Now())
}

func (l *Ledger) check(now time.Time) Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Report{Clients: len(l.trackers), Published: len(l.ids), GaveUp: len(l.gaveUp), Refused: len(l.refused)}
	for _, s := range l.gaveUp {
		r.problem("not acknowledged in time: %s", s)
	}
	for _, s := range l.refused {
		r.problem("refused: %s", s)
	}
	for _, s := range l.conflicts {
		r.Lost++
		r.problem("%s", s)
	}
	for _, id := range slices.Sorted(maps.Keys(l.ids)) {
		if ps := l.ids[id]; len(ps) > 1 {
			r.Duplicated += len(ps) - 1
			r.problem("%s acknowledged at %d positions: %v", id, len(ps), ps)
		}
	}

	rooms := make(map[string]*roomAcks, len(l.acks))
	for _, room := range slices.Sorted(maps.Keys(l.acks)) {
		ra := &roomAcks{at: make(map[uint64]ack)}
		epochs := map[string]int{}
		for pos := range l.acks[room] {
			epochs[pos.Epoch]++
		}
		// The room's epoch is the one most positions were acknowledged
		// in; with Redis up, the only one.
		for e, n := range epochs {
			if n > epochs[ra.epoch] || n == epochs[ra.epoch] && e > ra.epoch {
				ra.epoch = e
			}
		}
		if len(epochs) > 1 {
			r.problem("%s: publishes were acknowledged in %d epochs: %v", room, len(epochs), epochs)
		}
		for pos, a := range l.acks[room] {
			if pos.Epoch == ra.epoch {
				ra.at[pos.Offset] = a
				ra.max = max(ra.max, pos.Offset)
			}
		}
		rooms[room] = ra
	}

	for _, tr := range l.trackers {
		tr.check(&r, rooms, now)
	}
	return r
}

// check adds what tr received and how its connection fared to r.
func (tr *Tracker) check(r *Report, rooms map[string]*roomAcks, now time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r.Resets += tr.resets
	if tr.resets > 0 {
		r.problem("%s delivered %d resets", tr.name, tr.resets)
	}
	for _, s := range tr.lefts {
		r.problem("%s was dropped from room %s", tr.name, s)
	}
	r.Disconnects += tr.disconnects
	for k, n := range tr.reasons {
		if r.Reasons == nil {
			r.Reasons = make(map[string]int)
		}
		r.Reasons[k] += n
	}
	longest := tr.longest
	if tr.up && !tr.downSince.IsZero() {
		longest = max(longest, now.Sub(tr.downSince))
	}
	r.LongestDisconnect = max(r.LongestDisconnect, longest)
	if tr.closed {
		r.Closed++
		r.problem("%s stopped by itself: %s", tr.name, errString(tr.closedErr))
	}
	for _, room := range slices.Sorted(maps.Keys(tr.streams)) {
		s := tr.streams[room]
		r.Delivered += len(s.got)
		if !s.joined {
			if len(s.got) > 0 {
				r.problem("%s delivered %d messages of %s, which it did not join", tr.name, len(s.got), room)
			}
			continue
		}
		ra := rooms[room]
		if ra == nil {
			ra = &roomAcks{epoch: s.start.Epoch}
		}
		tr.checkStream(r, room, s, ra)
	}
}

// checkStream checks one room of tr: each offset after the join position
// up to the highest acknowledged one held once, in order, with the
// acknowledged data.
func (tr *Tracker) checkStream(r *Report, room string, s *stream, ra *roomAcks) {
	start := s.start.Offset
	if s.start.Epoch != "" && s.start.Epoch != ra.epoch {
		r.problem("%s joined %s in epoch %q, but its publishes were acknowledged in %q", tr.name, room, s.start.Epoch, ra.epoch)
		start = 0
	}
	held := make(map[uint64]bool, len(s.got))
	heldIDs := make(map[string]uint64, len(s.got))
	last := start
	for _, d := range s.got {
		off := d.pos.Offset
		switch {
		case d.pos.Epoch != ra.epoch:
			r.problem("%s: %s delivered %s at %s, outside the room's epoch %q", tr.name, room, d.id, posString(d.pos), ra.epoch)
			continue
		case held[off]:
			r.Duplicated++
			r.problem("%s: %s offset %d (%s) delivered again", tr.name, room, off, d.id)
			continue
		case s.own[d.pos] != "":
			r.Duplicated++
			r.problem("%s: %s offset %d delivered, but it is the client's own acknowledged publish %s", tr.name, room, off, s.own[d.pos])
			continue
		case off <= start:
			r.problem("%s: %s offset %d (%s) delivered, but the stream started after %d", tr.name, room, off, d.id, start)
		case off < last:
			r.problem("%s: %s offset %d (%s) delivered after offset %d", tr.name, room, off, d.id, last)
		}
		if a, ok := ra.at[off]; ok && a.id != d.id {
			r.problem("%s: %s offset %d delivered %s, but %s was acknowledged there", tr.name, room, off, d.id, a.id)
		}
		if prev, ok := heldIDs[d.id]; ok {
			r.Duplicated++
			r.problem("%s: %s delivered %s at offsets %d and %d", tr.name, room, d.id, prev, off)
		}
		held[off], heldIDs[d.id] = true, off
		last = max(last, off)
	}
	for off := start + 1; off <= ra.max; off++ {
		if held[off] || s.own[protocol.Position{Epoch: ra.epoch, Offset: off}] != "" {
			continue
		}
		r.Lost++
		what := "not acknowledged to anybody"
		if a, ok := ra.at[off]; ok {
			what = a.id
		}
		r.problem("%s: %s offset %d (%s) missing", tr.name, room, off, what)
	}
}

// behind returns a description of the first client that has not yet
// received everything acknowledged, or "" when all have.
func (l *Ledger) behind() string {
	r := l.Check()
	if r.Lost == 0 {
		return ""
	}
	for _, p := range r.Problems {
		if strings.HasSuffix(p, " missing") {
			return fmt.Sprintf("%d deliveries missing, first: %s", r.Lost, p)
		}
	}
	return fmt.Sprintf("%d deliveries missing", r.Lost)
}

package chaos

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/protocol"
)

const epoch = "e1"

func at(off uint64) protocol.Position { return protocol.Position{Epoch: epoch, Offset: off} }

// msg is a delivery of publish p#n at off in room.
func msg(room string, off uint64, p string, n int) client.Message {
	data, _ := json.Marshal(Payload{P: p, N: n})
	return client.Message{Kind: client.KindMessage, Room: room, Position: at(off), Data: data}
}

// scene is a small run: users alice (two sessions, a1 and a2) and bob,
// all in room r; "api" published 1..3 at offsets 1..3, a1 published its
// 1 at offset 4; everybody joined at offset 0.
type scene struct {
	l          *Ledger
	a1, a2, b1 *Tracker
}

func newScene() scene {
	l := NewLedger()
	s := scene{l: l, a1: l.Track("a1", "alice"), a2: l.Track("a2", "alice"), b1: l.Track("b1", "bob")}
	for _, tr := range []*Tracker{s.a1, s.a2, s.b1} {
		tr.Joined("r", at(0))
		tr.Joined("@"+tr.user, at(0))
	}
	for n := 1; n <= 3; n++ {
		l.Acked("r", at(uint64(n)), Payload{P: "api", N: n}.ID(), nil)
	}
	l.Acked("r", at(4), Payload{P: "a1", N: 1}.ID(), s.a1)
	return s
}

// deliverAll makes every tracker deliver what it should: a1 offsets 1-3,
// a2 and b1 offsets 1-4.
func (s scene) deliverAll() {
	for n := 1; n <= 3; n++ {
		for _, tr := range []*Tracker{s.a1, s.a2, s.b1} {
			tr.Handle(msg("r", uint64(n), "api", n))
		}
	}
	s.a2.Handle(msg("r", 4, "a1", 1))
	s.b1.Handle(msg("r", 4, "a1", 1))
}

func TestLedger_Check(t *testing.T) {
	tests := []struct {
		name string
		// run plays the scene (after newScene).
		run                  func(s scene)
		published, delivered int
		lost, duplicated     int
		resets, closed       int
		problem              string // a substring of one of the problems; "" for none
	}{
		{
			name:      "EverythingHeldOnce",
			run:       func(s scene) { s.deliverAll() },
			published: 4, delivered: 11,
		},
		{
			name: "OwnPublishIsHeldButTheOtherSessionMustDeliverIt",
			run: func(s scene) {
				for n := 1; n <= 3; n++ {
					for _, tr := range []*Tracker{s.a1, s.a2, s.b1} {
						tr.Handle(msg("r", uint64(n), "api", n))
					}
				}
				s.b1.Handle(msg("r", 4, "a1", 1))
			},
			published: 4, delivered: 10, lost: 1, problem: "a2: r offset 4 (a1#1) missing",
		},
		{
			name: "OwnPublishDeliveredBackIsADuplicate",
			run: func(s scene) {
				s.deliverAll()
				s.a1.Handle(msg("r", 4, "a1", 1))
			},
			published: 4, delivered: 12, duplicated: 1, problem: "client's own acknowledged publish",
		},
		{
			name: "AHoleIsLost",
			run: func(s scene) {
				s.deliverAll()
				s.b1.streams["r"].got = append(s.b1.streams["r"].got[:1], s.b1.streams["r"].got[2:]...)
			},
			published: 4, delivered: 10, lost: 1, problem: "b1: r offset 2 (api#2) missing",
		},
		{
			name: "TheSameOffsetTwiceIsADuplicate",
			run: func(s scene) {
				s.deliverAll()
				s.b1.Handle(msg("r", 3, "api", 3))
			},
			published: 4, delivered: 12, duplicated: 1, problem: "b1: r offset 3 (api#3) delivered again",
		},
		{
			name: "OneMessageAtTwoOffsetsIsADuplicate",
			run: func(s scene) {
				s.deliverAll()
				s.l.Acked("r", at(5), Payload{P: "api", N: 2}.ID(), nil)
				for _, tr := range []*Tracker{s.a1, s.a2, s.b1} {
					tr.Handle(msg("r", 5, "api", 2))
				}
			},
			// api#2 acknowledged twice (1), and delivered twice by each
			// of the three (3).
			published: 4, delivered: 14, duplicated: 4, problem: "api#2 acknowledged at 2 positions",
		},
		{
			name: "OutOfOrder",
			run: func(s scene) {
				s.deliverAll()
				g := s.b1.streams["r"].got
				g[0], g[1] = g[1], g[0]
			},
			published: 4, delivered: 11, problem: "b1: r offset 1 (api#1) delivered after offset 2",
		},
		{
			name: "WrongData",
			run: func(s scene) {
				s.deliverAll()
				s.b1.streams["r"].got[0].id = "api#9"
			},
			published: 4, delivered: 11, problem: "delivered api#9, but api#1 was acknowledged there",
		},
		{
			name: "UnacknowledgedMessageBelowTheTopMustBeHeldToo",
			run: func(s scene) {
				s.deliverAll()
				s.l.Acked("r", at(6), Payload{P: "api", N: 6}.ID(), nil)
				for _, tr := range []*Tracker{s.a1, s.a2} {
					tr.Handle(msg("r", 5, "api", 5))
					tr.Handle(msg("r", 6, "api", 6))
				}
				s.b1.Handle(msg("r", 6, "api", 6))
			},
			published: 5, delivered: 16, lost: 1, problem: "b1: r offset 5 (not acknowledged to anybody) missing",
		},
		{
			name: "DirectMessagesInTheInbox",
			run: func(s scene) {
				s.deliverAll()
				// b1 sent to alice: both of her sessions receive it, b1 does
				// not hold it. alice (a1) sent to herself: a2 receives it.
				s.l.Acked("@alice", at(1), Payload{P: "b1", N: 1}.ID(), s.b1)
				s.l.Acked("@alice", at(2), Payload{P: "a1", N: 2}.ID(), s.a1)
				s.a1.Handle(msg("@alice", 1, "b1", 1))
				s.a2.Handle(msg("@alice", 1, "b1", 1))
				s.a2.Handle(msg("@alice", 2, "a1", 2))
			},
			published: 6, delivered: 14,
		},
		{
			name: "ResetsAndLeftsAreProblems",
			run: func(s scene) {
				s.deliverAll()
				s.b1.Handle(client.Message{Kind: client.KindReset, Room: "r", Position: at(4)})
				s.b1.Handle(client.Message{Kind: client.KindLeft, Room: "r", Err: errors.New("forbidden")})
			},
			published: 4, delivered: 11, resets: 1, problem: "b1 was dropped from room r: forbidden",
		},
		{
			name: "AClientThatStoppedByItself",
			run: func(s scene) {
				s.deliverAll()
				s.b1.stateAt(client.StateClosed, &client.CloseError{Code: 4004}, time.Now())
			},
			published: 4, delivered: 11, closed: 1, problem: "b1 stopped by itself",
		},
		{
			name: "ClosingOnPurposeIsNoProblem",
			run: func(s scene) {
				s.deliverAll()
				s.b1.Closing()
				s.b1.stateAt(client.StateClosed, nil, time.Now())
			},
			published: 4, delivered: 11,
		},
		{
			name: "AnotherEpoch",
			run: func(s scene) {
				s.deliverAll()
				s.b1.Handle(client.Message{Kind: client.KindMessage, Room: "r", Position: protocol.Position{Epoch: "e2", Offset: 1}, Data: json.RawMessage(`1`)})
			},
			published: 4, delivered: 12, problem: "outside the room's epoch",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newScene()
			tt.run(s)
			r := s.l.Check()
			if r.Published != tt.published || r.Delivered != tt.delivered || r.Lost != tt.lost ||
				r.Duplicated != tt.duplicated || r.Resets != tt.resets || r.Closed != tt.closed {
				t.Errorf("Check() = %v (%s), want published=%d delivered=%d lost=%d duplicated=%d resets=%d closed=%d\nproblems: %q",
					r, r.Details(), tt.published, tt.delivered, tt.lost, tt.duplicated, tt.resets, tt.closed, r.Problems)
			}
			err := r.Err()
			switch {
			case tt.problem == "" && err != nil:
				t.Errorf("Check().Err() = %v, want nil", err)
			case tt.problem != "" && (err == nil || !strings.Contains(err.Error(), tt.problem)):
				t.Errorf("Check().Err() = %v, want a problem containing %q", err, tt.problem)
			}
		})
	}
}

func TestTracker_LongestDisconnect(t *testing.T) {
	l := NewLedger()
	tr := l.Track("a", "alice")
	t0 := time.Now()
	steps := []struct {
		s  client.State
		at time.Duration
	}{
		// Connecting at first does not count.
		{client.StateConnecting, 0},
		{client.StateConnected, 5 * time.Second},
		{client.StateDisconnected, 10 * time.Second},
		{client.StateConnecting, 11 * time.Second},
		{client.StateConnected, 12 * time.Second}, // 2s
		{client.StateDisconnected, 20 * time.Second},
		{client.StateConnecting, 21 * time.Second},
		{client.StateConnected, 23500 * time.Millisecond}, // 3.5s
	}
	for _, st := range steps {
		tr.stateAt(st.s, nil, t0.Add(st.at))
	}
	r := l.check(t0.Add(30 * time.Second))
	if r.LongestDisconnect != 3500*time.Millisecond || r.Disconnects != 2 {
		t.Errorf("longest disconnect %v after %d disconnects, want 3.5s after 2", r.LongestDisconnect, r.Disconnects)
	}
	// A client that is down now counts until now.
	tr.stateAt(client.StateDisconnected, nil, t0.Add(40*time.Second))
	if r := l.check(t0.Add(45 * time.Second)); r.LongestDisconnect != 5*time.Second {
		t.Errorf("longest disconnect %v while down for 5s, want 5s", r.LongestDisconnect)
	}
}

func TestReport_String(t *testing.T) {
	r := Report{Published: 10, Delivered: 200, Resets: 1, LongestDisconnect: 1260 * time.Millisecond}
	want := "chaos: published=10 delivered=200 lost=0 duplicated=0 resets=1 longest-disconnect=1.3s"
	if got := r.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

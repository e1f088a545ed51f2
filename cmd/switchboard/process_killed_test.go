package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// savedSession reads the state Redis holds for session id (prefix "sb"),
// or returns ok false if there is none.
func savedSession(rs *redistest.Server, id string) (rooms map[string]protocol.Position, ok bool, err error) {
	raw, err := rs.Do("GET", "sb:session:{"+id+"}")
	if err != nil || raw == "" {
		return nil, false, err
	}
	var st struct {
		Rooms map[string]protocol.Position `json:"rooms"`
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return nil, false, fmt.Errorf("session state %s: %w", raw, err)
	}
	return st.Rooms, true, nil
}

// TestProcess_InstanceKilled kills an instance with SIGKILL (issue 4): its
// sessions resume on the surviving instance, one with nothing but
// hello.session (a thin client) and one with hello.resume, and get every
// message published through the survivor's API while they were away
// exactly once, room and inbox alike; the dead instance leaves GET
// /api/instances, the presence of its sessions and GET /api/users within
// the presence TTL: three registry intervals, which are min(--heartbeat,
// 5s), so 6s with --heartbeat 2s.
func TestProcess_InstanceKilled(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	rs := redistest.Start(t)
	const (
		room  = "r"
		batch = 10
		dms   = 3
		// presenceTTL follows from --heartbeat 2s.
		presenceTTL = 3 * 2 * time.Second
	)
	a := startInstance(t, "A", redisFlags(rs, "--heartbeat", "2s")...)
	b := startInstance(t, "B", redisFlags(rs, "--heartbeat", "2s")...)

	thin, full, ghost := connect(t, a, "thin"), connect(t, a, "full"), connect(t, a, "ghost")
	witness := connect(t, b, "witness")
	for _, cl := range []*client{thin, full, ghost, witness} {
		cl.join(t, room, nil)
	}
	if err := apiSeq(b, room, "before", 1, batch); err != nil {
		t.Fatal(err)
	}
	if err := apiSeq(b, "@thin", "dm-before", 1, dms); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{thin, full, ghost, witness} {
		if err := waitReached(cl.cur(), waitLong, cl.user, room, "", batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitReached(thin.cur(), waitLong, "thin", "@thin", "", dms); err != nil {
		t.Fatal(err)
	}
	// A crashed instance's sessions resume from their last saved state,
	// which is saved within about a second of a change (PROTOCOL.md,
	// "Session recovery"). Kill A once it holds what thin has seen.
	eventually(t, 5*time.Second, func() string {
		rooms, ok, err := savedSession(rs, thin.session())
		if err != nil {
			t.Fatal(err)
		}
		if !ok || rooms[room].Offset != batch || rooms["@thin"].Offset != dms {
			return fmt.Sprintf("thin's saved session state is %v (found %v), want %s at %d and @thin at %d", rooms, ok, room, batch, dms)
		}
		return ""
	})

	a.kill()
	killed := time.Now()
	for _, cl := range []*client{thin, full, ghost} {
		if _, err := cl.cur().WaitClosed(waitLong); err != nil {
			t.Fatalf("%s: %v", cl.user, err)
		}
	}
	if err := apiSeq(b, room, "away", 1, batch); err != nil {
		t.Fatal(err)
	}
	if err := apiSeq(b, "@thin", "dm-away", 1, dms); err != nil {
		t.Fatal(err)
	}

	thin.reconnect(t, b, wstest.Hello{Session: thin.session(), Batch: true})
	fullPos := checkStream(full.frames(), room, nil, streamRules{}).end
	full.reconnect(t, b, wstest.Hello{Resume: map[string]protocol.Position{room: fullPos}})
	if err := apiSeq(b, room, "after", 1, batch); err != nil {
		t.Fatal(err)
	}
	if err := apiSeq(b, "@thin", "dm-after", 1, dms); err != nil {
		t.Fatal(err)
	}

	t.Run("ResumedWithoutLoss", func(t *testing.T) {
		for _, cl := range []*client{thin, full, witness} {
			if err := waitReached(cl.cur(), waitLong, cl.user, room, "", 3*batch); err != nil {
				t.Fatal(err)
			}
			s := checkStream(cl.frames(), room, nil, streamRules{})
			s.checkPayloads(map[string]int{"before": batch, "away": batch, "after": batch})
			if err := s.err(cl.user); err != nil {
				t.Error(err)
			}
		}
		if err := waitReached(thin.cur(), waitLong, "thin", "@thin", "", 3*dms); err != nil {
			t.Fatal(err)
		}
		s := checkStream(thin.frames(), "@thin", nil, streamRules{})
		s.checkPayloads(map[string]int{"dm-before": dms, "dm-away": dms, "dm-after": dms})
		if err := s.err("thin"); err != nil {
			t.Error(err)
		}
	})

	t.Run("DeadInstanceExpires", func(t *testing.T) {
		// The dead instance still counts until its entries expire; then it
		// is gone from everything B reports.
		gone := map[string]time.Duration{}
		check := func(what string, ok bool) {
			if _, seen := gone[what]; ok && !seen {
				gone[what] = time.Since(killed)
			}
		}
		eventually(t, presenceTTL+5*time.Second, func() string {
			check("instances", slices.Equal(b.instanceIDs(t), []string{b.id}))
			ghostSt := b.userStatus(t, "ghost")
			check("ghost offline", !ghostSt.Online && ghostSt.Sessions == 0 && len(ghostSt.Instances) == 0)
			thinSt := b.userStatus(t, "thin")
			check("thin only on B", thinSt.Sessions == 1 && slices.Equal(thinSt.Instances, []string{b.id}))
			p := b.presence(t, room)
			want := []protocol.UserSessions{{User: "full", Sessions: 1}, {User: "thin", Sessions: 1}, {User: "witness", Sessions: 1}}
			check("room presence", p.Total == 3 && slices.Equal(p.Users, want))
			if len(gone) < 4 {
				return fmt.Sprintf("A's entries have not all expired (gone so far: %v; instances %v, ghost %+v, thin %+v, presence %v)",
					gone, b.instanceIDs(t), ghostSt, thinSt, p.Users)
			}
			return ""
		})
		t.Logf("after SIGKILL, A's entries were gone after: %v", gone)
		for what, d := range gone {
			// One poll interval of slack.
			if d > presenceTTL+time.Second {
				t.Errorf("%s: A's entries expired %v after SIGKILL, want within the presence TTL %v", what, d, presenceTTL)
			}
		}
	})
}

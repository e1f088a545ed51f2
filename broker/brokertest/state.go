package brokertest

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// presence returns room's presence sorted by user, then session: the
// contract does not fix an order.
func presence(t *testing.T, b broker.Broker, room string) []broker.PresenceEntry {
	t.Helper()
	es, err := b.Presence(t.Context(), room)
	if err != nil {
		t.Fatalf("Presence(%q) error: %v", room, err)
	}
	slices.SortFunc(es, func(x, y broker.PresenceEntry) int {
		return cmp.Or(cmp.Compare(x.User, y.User), cmp.Compare(x.Session, y.Session))
	})
	return es
}

func addPresence(t *testing.T, b broker.Broker, room string, e broker.PresenceEntry) {
	t.Helper()
	if err := b.AddPresence(t.Context(), room, e); err != nil {
		t.Fatalf("AddPresence(%q, %+v) error: %v", room, e, err)
	}
}

func removePresence(t *testing.T, b broker.Broker, room, session string) {
	t.Helper()
	if err := b.RemovePresence(t.Context(), room, session); err != nil {
		t.Fatalf("RemovePresence(%q, %q) error: %v", room, session, err)
	}
}

func checkPresence(t *testing.T, b broker.Broker, room string, want ...broker.PresenceEntry) {
	t.Helper()
	if got := presence(t, b, room); !slices.Equal(got, want) {
		t.Errorf("Presence(%q) = %+v, want %+v", room, got, want)
	}
}

func testPresence(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	checkPresence(t, b, "lobby")
	s1 := broker.PresenceEntry{Session: "s_1", User: "carol", Instance: "i_1"}
	s2 := broker.PresenceEntry{Session: "s_2", User: "alice", Instance: "i_1"}
	s3 := broker.PresenceEntry{Session: "s_3", User: "alice", Instance: "i_2"}
	s4 := broker.PresenceEntry{Session: "s_4", User: "bob", Instance: "i_1"}
	for _, e := range []broker.PresenceEntry{s1, s3, s2} {
		addPresence(t, b, "lobby", e)
	}
	addPresence(t, b, "other", s4)
	checkPresence(t, b, "lobby", s2, s3, s1)
	checkPresence(t, b, "other", s4)

	// Adding a session again replaces its entry.
	moved := broker.PresenceEntry{Session: "s_1", User: "carol", Instance: "i_9"}
	addPresence(t, b, "lobby", moved)
	checkPresence(t, b, "lobby", s2, s3, moved)

	removePresence(t, b, "lobby", "s_2")
	checkPresence(t, b, "lobby", s3, moved)
	removePresence(t, b, "lobby", "s_unknown")
	removePresence(t, b, "nowhere", "s_1")
	checkPresence(t, b, "lobby", s3, moved)
	checkPresence(t, b, "other", s4)

	removePresence(t, b, "lobby", "s_3")
	removePresence(t, b, "lobby", "s_1")
	checkPresence(t, b, "lobby")
	addPresence(t, b, "lobby", s2)
	checkPresence(t, b, "lobby", s2)
}

// sameSession reports whether two session states are equal, counting a nil
// and an empty Rooms map as equal.
func sameSession(x, y broker.SessionState) bool {
	return x.ID == y.ID && x.User == y.User && maps.Equal(x.Rooms, y.Rooms)
}

func saveSessions(t *testing.T, b broker.Broker, ttl time.Duration, states ...broker.SessionState) {
	t.Helper()
	if err := b.SaveSessions(t.Context(), ttl, states...); err != nil {
		t.Fatalf("SaveSessions(%v, %d states) error: %v", ttl, len(states), err)
	}
}

func loadSession(t *testing.T, b broker.Broker, id string) broker.SessionState {
	t.Helper()
	s, err := b.LoadSession(t.Context(), id)
	if err != nil {
		t.Fatalf("LoadSession(%q) error: %v", id, err)
	}
	return s
}

func checkSession(t *testing.T, b broker.Broker, want broker.SessionState) {
	t.Helper()
	if got := loadSession(t, b, want.ID); !sameSession(got, want) {
		t.Errorf("LoadSession(%q) = %+v, want %+v", want.ID, got, want)
	}
}

func testSessionsRoundTrip(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	alice := broker.SessionState{ID: "s_alice", User: "alice", Rooms: map[string]broker.Position{
		"general": {Epoch: "e1", Offset: 57},
		"@alice":  {Epoch: "e2", Offset: 0},
		"näme":    {Epoch: "e3", Offset: 1 << 40},
	}}
	bob := broker.SessionState{ID: "s_bob", User: "bob"}
	saveSessions(t, b, time.Minute, alice, bob)
	saveSessions(t, b, time.Minute) // nothing to save
	want := broker.SessionState{ID: alice.ID, User: alice.User, Rooms: maps.Clone(alice.Rooms)}
	checkSession(t, b, want)
	checkSession(t, b, bob)

	// The broker keeps its own copy: changing the saved or the loaded map
	// changes nothing stored.
	alice.Rooms["general"] = broker.Position{Epoch: "changed", Offset: 1}
	delete(alice.Rooms, "@alice")
	loaded := loadSession(t, b, "s_alice")
	loaded.Rooms["extra"] = broker.Position{Epoch: "x", Offset: 1}
	checkSession(t, b, want)

	// Saving again replaces the state.
	next := broker.SessionState{ID: "s_alice", User: "alice", Rooms: map[string]broker.Position{"general": {Epoch: "e1", Offset: 60}}}
	saveSessions(t, b, time.Minute, next)
	checkSession(t, b, next)
}

func testUnknownSession(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	if s, err := b.LoadSession(t.Context(), "s_unknown"); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("LoadSession of an unknown id = %+v, %v, want an error wrapping broker.ErrNotFound", s, err)
	}
}

func testSessionsExpire(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	const ttl = 500 * time.Millisecond
	b := open(t, Config{})
	short := broker.SessionState{ID: "s_short", User: "alice", Rooms: map[string]broker.Position{"general": {Epoch: "e", Offset: 1}}}
	long := broker.SessionState{ID: "s_long", User: "alice"}
	saveSessions(t, b, ttl, short)
	saveSessions(t, b, time.Minute, long)
	checkSession(t, b, short)
	var err error
	if !eventually(t, waitFor, func() bool { _, err = b.LoadSession(t.Context(), "s_short"); return err != nil }) {
		t.Fatalf("LoadSession still finds a state saved with ttl %v after %v", ttl, waitFor)
	}
	if !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("LoadSession of an expired state error = %v, want one wrapping broker.ErrNotFound", err)
	}
	checkSession(t, b, long)
}

func heartbeat(t *testing.T, b broker.Broker, info broker.InstanceInfo) {
	t.Helper()
	if err := b.Heartbeat(t.Context(), info); err != nil {
		t.Fatalf("Heartbeat(%q) error: %v", info.ID, err)
	}
}

// checkInstances checks that b lists want, in order, with LastHeartbeat set
// by the broker to a time between from and to.
func checkInstances(t *testing.T, b broker.Broker, from, to time.Time, want ...broker.InstanceInfo) {
	t.Helper()
	got, err := b.Instances(t.Context())
	if err != nil {
		t.Fatalf("Instances error: %v", err)
	}
	ids := func(is []broker.InstanceInfo) []string {
		var s []string
		for _, i := range is {
			s = append(s, i.ID)
		}
		return s
	}
	if !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("Instances = %q, want %q", ids(got), ids(want))
	}
	for i, g := range got {
		w := want[i]
		if g.Address != w.Address || g.Sessions != w.Sessions || !g.Started.Equal(w.Started) {
			t.Errorf("instance %q = %q, %d sessions, started %v; want %q, %d, %v", g.ID, g.Address, g.Sessions, g.Started, w.Address, w.Sessions, w.Started)
		}
		// Brokers may keep milliseconds only.
		lo, hi := from.Truncate(time.Millisecond).Add(-time.Second), to.Add(time.Second)
		if g.LastHeartbeat.Before(lo) || g.LastHeartbeat.After(hi) {
			t.Errorf("instance %q LastHeartbeat = %v, want the time of its heartbeat, between %v and %v", g.ID, g.LastHeartbeat, from, to)
		}
	}
}

func testInstanceRegistry(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	start := time.Now()
	checkInstances(t, b, start, time.Now())
	started := time.UnixMilli(1764300000000)
	ib := broker.InstanceInfo{ID: "i_b", Address: "10.0.0.2:8080", Sessions: 3, Started: started}
	ia := broker.InstanceInfo{ID: "i_a", Address: "10.0.0.1:8080", Sessions: 0, Started: started.Add(time.Second)}
	heartbeat(t, b, ib)
	heartbeat(t, b, ia)
	checkInstances(t, b, start, time.Now(), ia, ib)

	ib.Sessions = 5
	heartbeat(t, b, ib)
	checkInstances(t, b, start, time.Now(), ia, ib)

	if err := b.Deregister(t.Context(), "i_b"); err != nil {
		t.Fatalf("Deregister error: %v", err)
	}
	checkInstances(t, b, start, time.Now(), ia)
	if err := b.Deregister(t.Context(), "i_unknown"); err != nil {
		t.Errorf("Deregister of an unknown id error: %v", err)
	}
	checkInstances(t, b, start, time.Now(), ia)
}

func testClosed(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	h := newRecorder(t, "h")
	subscribe(t, b, h, "general")
	publish(t, b, "general", broker.Publication{Data: numbered(1)})
	if err := b.Close(t.Context()); err != nil {
		t.Fatalf("Close error: %v", err)
	}
	if err := b.Close(t.Context()); err != nil && !errors.Is(err, broker.ErrClosed) {
		t.Errorf("second Close error = %v, want nil or broker.ErrClosed", err)
	}
	_, err := b.Publish(t.Context(), "general", broker.Publication{Data: numbered(2)})
	if !errors.Is(err, broker.ErrClosed) && !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("Publish after Close error = %v, want one wrapping broker.ErrClosed or broker.ErrUnavailable", err)
	}
	ctx := t.Context()
	calls := []struct {
		name string
		call func() error
	}{
		{"Subscribe", func() error { return b.Subscribe(ctx, h, "other") }},
		{"Position", func() error { _, err := b.Position(ctx, "general"); return err }},
		{"History", func() error { _, err := b.History(ctx, "general", broker.HistoryQuery{}); return err }},
		{"AddPresence", func() error {
			return b.AddPresence(ctx, "general", broker.PresenceEntry{Session: "s", User: "u", Instance: "i"})
		}},
		{"Presence", func() error { _, err := b.Presence(ctx, "general"); return err }},
		{"SaveSessions", func() error { return b.SaveSessions(ctx, time.Minute, broker.SessionState{ID: "s", User: "u"}) }},
		{"LoadSession", func() error { _, err := b.LoadSession(ctx, "s"); return err }},
		{"Heartbeat", func() error { return b.Heartbeat(ctx, broker.InstanceInfo{ID: "i"}) }},
		{"Instances", func() error { _, err := b.Instances(ctx); return err }},
	}
	for _, c := range calls {
		if err := c.call(); err == nil {
			t.Errorf("%s after Close succeeded, want an error", c.name)
		}
	}
	if got := h.count("general"); got != 1 {
		t.Errorf("handler received %d messages, want 1 (the one before Close)", got)
	}
}

// The subtests of RunShared.

func testMessagesCrossBrokers(t *testing.T, a, b broker.Broker) {
	ha, hb := newRecorder(t, "on a"), newRecorder(t, "on b")
	subscribe(t, a, ha, "shared")
	subscribe(t, b, hb, "shared")
	var ps []broker.Position
	for i := range 20 {
		via := a
		if i%2 == 1 {
			via = b
		}
		ps = append(ps, publish(t, via, "shared", broker.Publication{From: "alice", Origin: fmt.Sprint(i + 1), Data: numbered(i + 1)}))
	}
	for i, p := range ps {
		if want := (broker.Position{Epoch: ps[0].Epoch, Offset: uint64(i + 1)}); p != want {
			t.Errorf("Publish #%d (alternating brokers) = %+v, want %+v", i+1, p, want)
		}
	}
	for _, h := range []*recorder{ha, hb} {
		h.waitOffset(t, "shared", ps[len(ps)-1])
		got := h.messages("shared")
		if o := offsets(got); !slices.Equal(o, span(1, 20)) {
			t.Errorf("handler %s received %v, want %v", h.name, o, span(1, 20))
			continue
		}
		for i, m := range got {
			if m.Epoch != ps[0].Epoch || string(m.Data) != string(numbered(i+1)) || m.Origin != fmt.Sprint(i+1) {
				t.Errorf("handler %s message %d = %q %s %q, want %q %s %q", h.name, m.Offset, m.Epoch, m.Data, m.Origin, ps[0].Epoch, numbered(i+1), fmt.Sprint(i+1))
			}
		}
	}
}

func testPositionAndHistoryShared(t *testing.T, a, b broker.Broker) {
	p0 := position(t, a, "shared")
	if got := position(t, b, "shared"); got != p0 {
		t.Fatalf("Position on b = %+v, want a's %+v", got, p0)
	}
	p1 := publish(t, b, "shared", broker.Publication{Data: numbered(1)})
	if want := (broker.Position{Epoch: p0.Epoch, Offset: 1}); p1 != want {
		t.Fatalf("Publish on b after Position on a = %+v, want %+v", p1, want)
	}
	p2 := publish(t, a, "shared", broker.Publication{Data: numbered(2)})
	checkHistory(t, "History on a", history(t, a, "shared", broker.HistoryQuery{}), "shared", p2, span(1, 2))
	checkHistory(t, "History on b", history(t, b, "shared", broker.HistoryQuery{}), "shared", p2, span(1, 2))
}

func testIdempotencyShared(t *testing.T, a, b broker.Broker) {
	first := publish(t, a, "shared", broker.Publication{Data: numbered(1), Key: "k"})
	if again := publish(t, b, "shared", broker.Publication{Data: numbered(2), Key: "k"}); again != first {
		t.Errorf("Publish on b with a key used on a = %+v, want %+v", again, first)
	}
	checkHistory(t, "History", history(t, b, "shared", broker.HistoryQuery{}), "shared", first, span(1, 1))
}

func testStateShared(t *testing.T, a, b broker.Broker) {
	e := broker.PresenceEntry{Session: "s_1", User: "alice", Instance: "i_a"}
	addPresence(t, a, "shared", e)
	checkPresence(t, b, "shared", e)
	removePresence(t, b, "shared", "s_1")
	checkPresence(t, a, "shared")

	s := broker.SessionState{ID: "s_1", User: "alice", Rooms: map[string]broker.Position{"shared": {Epoch: "e", Offset: 3}}}
	saveSessions(t, a, time.Minute, s)
	checkSession(t, b, s)

	start := time.Now()
	ia := broker.InstanceInfo{ID: "i_a", Address: "a:1", Sessions: 1, Started: time.UnixMilli(1764300000000)}
	ib := broker.InstanceInfo{ID: "i_b", Address: "b:1", Sessions: 2, Started: time.UnixMilli(1764300001000)}
	heartbeat(t, a, ia)
	heartbeat(t, b, ib)
	checkInstances(t, a, start, time.Now(), ia, ib)
	checkInstances(t, b, start, time.Now(), ia, ib)
	if err := a.Deregister(t.Context(), "i_a"); err != nil {
		t.Fatalf("Deregister error: %v", err)
	}
	checkInstances(t, b, start, time.Now(), ib)
}

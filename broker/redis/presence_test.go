package redis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// heartbeatCommands adds one presence entry to each of rooms rooms, then
// returns the commands Redis ran for one Heartbeat (network commands and
// those scripts called), excluding INFO.
func heartbeatCommands(t *testing.T, rooms int) (total int64, per map[string]int64) {
	t.Helper()
	s := redistest.Start(t)
	b := open(t, s.URL(), Config{ProbeInterval: time.Hour})
	info := broker.InstanceInfo{ID: b.cfg.InstanceID}
	if err := b.Heartbeat(t.Context(), info); err != nil {
		t.Fatal(err)
	}
	for i := range rooms {
		e := broker.PresenceEntry{Session: fmt.Sprint("s_", i), User: fmt.Sprint("u", i), Instance: info.ID}
		if err := b.AddPresence(t.Context(), fmt.Sprint("room-", i), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Heartbeat(t.Context(), info); err != nil {
		t.Fatal(err)
	}
	before := commandStats(t, s)
	if err := b.Heartbeat(t.Context(), info); err != nil {
		t.Fatal(err)
	}
	after := commandStats(t, s)
	per = make(map[string]int64)
	for name, calls := range after {
		if d := calls - before[name]; d > 0 && name != "info" {
			per[name] = d
			total += d
		}
	}
	return total, per
}

// TestBroker_HeartbeatCostIsConstant checks that one Heartbeat runs the
// same few Redis commands whether the instance holds presence in 10 rooms
// or in 2,000.
func TestBroker_HeartbeatCostIsConstant(t *testing.T) {
	t.Parallel()
	few, fewPer := heartbeatCommands(t, 10)
	many, manyPer := heartbeatCommands(t, 2000)
	t.Logf("one Heartbeat with 10 rooms: %d commands %v; with 2000 rooms: %d commands %v", few, fewPer, many, manyPer)
	if many > 16 {
		t.Errorf("one Heartbeat with presence in 2000 rooms ran %d Redis commands (%v), want at most 16", many, manyPer)
	}
}

// heartbeating calls b.Heartbeat every interval until the test ends.
func heartbeating(t *testing.T, b *Broker, id string, interval time.Duration) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := b.Heartbeat(context.Background(), broker.InstanceInfo{ID: id}); err != nil && !errors.Is(err, broker.ErrClosed) {
					t.Errorf("Heartbeat error: %v", err)
				}
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// checkPresenceSoon waits until room's presence, read through b, is want.
func checkPresenceSoon(t *testing.T, b *Broker, room string, want ...broker.PresenceEntry) {
	t.Helper()
	if !eventually(t, 10*time.Second, func() bool {
		es, err := b.Presence(t.Context(), room)
		return err == nil && slices.Equal(es, want)
	}) {
		es, err := b.Presence(t.Context(), room)
		t.Fatalf("Presence(%q) = %+v, %v; want %+v", room, es, err, want)
	}
}

// TestBroker_PresenceOfACrashedInstance checks that the entries of an
// instance that stopped heartbeating leave Presence within the TTL and are
// removed from the room, while those of a heartbeating instance stay, and
// that an instance restarted under the same id does not bring its
// predecessor's entries back.
func TestBroker_PresenceOfACrashedInstance(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	s := redistest.Start(t)
	prefix := newPrefix()
	alive := open(t, s.URL(), Config{Prefix: prefix, InstanceID: "i_a", PresenceTTL: ttl})
	dying := open(t, s.URL(), Config{Prefix: prefix, InstanceID: "i_d", PresenceTTL: ttl})
	ea := broker.PresenceEntry{Session: "s_a", User: "al", Instance: "i_a"}
	ed := broker.PresenceEntry{Session: "s_d", User: "dora", Instance: "i_d"}
	for _, x := range []struct {
		b *Broker
		e broker.PresenceEntry
	}{{alive, ea}, {dying, ed}} {
		if err := x.b.Heartbeat(t.Context(), broker.InstanceInfo{ID: x.e.Instance}); err != nil {
			t.Fatal(err)
		}
		for _, room := range []string{"lobby", "@" + x.e.User} {
			if err := x.b.AddPresence(t.Context(), room, x.e); err != nil {
				t.Fatal(err)
			}
		}
	}
	heartbeating(t, alive, "i_a", ttl/6)
	checkPresenceSoon(t, alive, "lobby", ea, ed)

	if err := dying.Close(t.Context()); err != nil { // a crash: nothing removed
		t.Fatal(err)
	}
	start := time.Now()
	checkPresenceSoon(t, alive, "lobby", ea)
	if waited := time.Since(start); waited > 2*ttl {
		t.Errorf("the crashed instance's entry left Presence after %v, TTL %v", waited, ttl)
	}
	if n, err := s.Do("HLEN", alive.presenceKey("lobby")); err != nil || n != "1" {
		t.Errorf("HLEN of the room after Presence = %s, %v; want 1 (the dead entry removed)", n, err)
	}
	checkPresenceSoon(t, alive, "@dora")

	// The same instance id, started again, heartbeats: the crashed
	// process's entries stay dead (including those no reader removed yet).
	if _, err := s.Do("HSET", alive.presenceKey("@dora2"), "s_d", "dora\x00i_d\x00"+dying.currentIncarnation()); err != nil {
		t.Fatal(err)
	}
	again := open(t, s.URL(), Config{Prefix: prefix, InstanceID: "i_d", PresenceTTL: ttl})
	heartbeating(t, again, "i_d", ttl/6)
	e2 := broker.PresenceEntry{Session: "s_d2", User: "dora", Instance: "i_d"}
	if err := again.AddPresence(t.Context(), "lobby", e2); err != nil {
		t.Fatal(err)
	}
	checkPresenceSoon(t, alive, "lobby", ea, e2)
	checkPresenceSoon(t, alive, "@dora2")
	// Well past the TTL, the heartbeating instances are still present.
	time.Sleep(3 * ttl) // let time pass: entries must outlive their TTL
	checkPresenceSoon(t, alive, "lobby", ea, e2)
	checkPresenceSoon(t, alive, "@al", ea)
}

// TestBroker_PresenceRestoredAfterLapse lets a Broker miss its heartbeats
// for longer than the TTL, so that a reader removes its entries; its next
// Heartbeat writes them again.
func TestBroker_PresenceRestoredAfterLapse(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	s := redistest.Start(t)
	prefix := newPrefix()
	b := open(t, s.URL(), Config{Prefix: prefix, PresenceTTL: ttl})
	reader := open(t, s.URL(), Config{Prefix: prefix, PresenceTTL: ttl})
	e := broker.PresenceEntry{Session: "s_1", User: "u", Instance: "i_1"}
	if err := b.AddPresence(t.Context(), "lobby", e); err != nil {
		t.Fatal(err)
	}
	checkPresenceSoon(t, reader, "lobby", e)
	checkPresenceSoon(t, reader, "lobby") // no heartbeat: it lapses
	if err := b.Heartbeat(t.Context(), broker.InstanceInfo{ID: "i_1"}); err != nil {
		t.Fatal(err)
	}
	if es, err := reader.Presence(t.Context(), "lobby"); err != nil || !slices.Equal(es, []broker.PresenceEntry{e}) {
		t.Errorf("Presence after the lapsed Broker's Heartbeat = %+v, %v; want %+v", es, err, e)
	}

	// An AddPresence after a lapse brings the other entries back too.
	checkPresenceSoon(t, reader, "lobby")
	e2 := broker.PresenceEntry{Session: "s_2", User: "u", Instance: "i_1"}
	if err := b.AddPresence(t.Context(), "other", e2); err != nil {
		t.Fatal(err)
	}
	checkPresenceSoon(t, reader, "lobby", e)
}

// TestBroker_PresenceRestoredAfterRedisRestart restarts Redis without
// persistence: once the Brokers notice the new server generation, they
// write their presence entries again, without waiting for a Heartbeat.
func TestBroker_PresenceRestoredAfterRedisRestart(t *testing.T) {
	t.Parallel()
	const rooms = 1200
	s := redistest.Start(t)
	prefix := newPrefix()
	cfg := Config{Prefix: prefix, ProbeInterval: 50 * time.Millisecond, Timeout: time.Second}
	cfg.InstanceID = "i_a"
	a := open(t, s.URL(), cfg)
	cfg.InstanceID = "i_b"
	b := open(t, s.URL(), cfg)
	ea := broker.PresenceEntry{Session: "s_a", User: "al", Instance: "i_a"}
	eb := broker.PresenceEntry{Session: "s_b", User: "bo", Instance: "i_b"}
	for i := range rooms {
		room := fmt.Sprint("room-", i)
		if err := a.AddPresence(t.Context(), room, ea); err != nil {
			t.Fatal(err)
		}
		if err := b.AddPresence(t.Context(), room, eb); err != nil {
			t.Fatal(err)
		}
	}
	// A room with more sessions than one script writes.
	for i := range 2 * presenceBatch {
		if err := a.AddPresence(t.Context(), "big", broker.PresenceEntry{Session: fmt.Sprintf("s_%04d", i), User: "al", Instance: "i_a"}); err != nil {
			t.Fatal(err)
		}
	}
	checkPresenceSoon(t, b, "room-0", ea, eb)

	s.Restart()
	for _, room := range []string{"room-0", fmt.Sprint("room-", rooms-1)} {
		checkPresenceSoon(t, b, room, ea, eb)
	}
	if n, err := s.Do("HLEN", a.presenceKey("big")); err != nil || n != fmt.Sprint(2*presenceBatch) {
		t.Errorf("HLEN of the big room after the restart = %s, %v; want %d", n, err, 2*presenceBatch)
	}
	for i := range rooms {
		if n, err := s.Do("HLEN", a.presenceKey(fmt.Sprint("room-", i))); err != nil || n != "2" {
			t.Fatalf("HLEN of room-%d after the restart = %s, %v; want 2", i, n, err)
		}
	}
}

// TestBroker_RestoreDoesNotResurrect removes entries while the Broker
// writes all its entries again: no removed entry comes back.
func TestBroker_RestoreDoesNotResurrect(t *testing.T) {
	t.Parallel()
	const rooms = 2000
	s := redistest.Start(t)
	b := open(t, s.URL(), Config{})
	entry := func(i int) broker.PresenceEntry {
		return broker.PresenceEntry{Session: fmt.Sprint("s_", i), User: "u", Instance: "i_1"}
	}
	for i := range rooms {
		if err := b.AddPresence(t.Context(), fmt.Sprint("room-", i), entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := b.restore(t.Context(), b.restoreWanted.Add(1)); err != nil {
				t.Errorf("restore error: %v", err)
			}
		})
	}
	for i := 0; i < rooms; i += 2 {
		if err := b.RemovePresence(t.Context(), fmt.Sprint("room-", i), entry(i).Session); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i := range rooms {
		var want []broker.PresenceEntry
		if i%2 == 1 {
			want = append(want, entry(i))
		}
		if es, err := b.Presence(t.Context(), fmt.Sprint("room-", i)); err != nil || !slices.Equal(es, want) {
			t.Fatalf("Presence(room-%d) = %+v, %v; want %+v", i, es, err, want)
		}
	}
}

// TestBroker_PresenceKeysRenewed gives presence keys a short TTL: entries
// of a heartbeating Broker outlive it many times over, a key lost anyway is
// written again, and when the Broker is gone the keys expire.
func TestBroker_PresenceKeysRenewed(t *testing.T) {
	t.Parallel()
	const keyTTL = 400 * time.Millisecond
	s := redistest.Start(t)
	b := open(t, s.URL(), Config{presenceKeyTTL: keyTTL})
	var want [][]broker.PresenceEntry
	for i := range 50 {
		e := broker.PresenceEntry{Session: fmt.Sprint("s_", i), User: "u", Instance: "i_1"}
		if err := b.AddPresence(t.Context(), fmt.Sprint("room-", i), e); err != nil {
			t.Fatal(err)
		}
		want = append(want, []broker.PresenceEntry{e})
	}
	heartbeating(t, b, "i_1", 20*time.Millisecond)
	check := func(when string) {
		t.Helper()
		for i := range want {
			room := fmt.Sprint("room-", i)
			if es, err := b.Presence(t.Context(), room); err != nil || !slices.Equal(es, want[i]) {
				t.Fatalf("%s: Presence(%s) = %+v, %v; want %+v", when, room, es, err, want[i])
			}
		}
	}
	deadline := time.Now().Add(5 * keyTTL)
	for time.Now().Before(deadline) {
		check("while heartbeating")
		time.Sleep(keyTTL / 4) // let time pass: keys must outlive their TTL
	}
	if pttl, err := s.Do("PTTL", b.presenceKey("room-0")); err != nil || pttl == "-1" || pttl == "-2" {
		t.Errorf("PTTL of a presence key = %s, %v; want a TTL", pttl, err)
	}

	if _, err := s.Do("DEL", b.presenceKey("room-7")); err != nil {
		t.Fatal(err)
	}
	checkPresenceSoon(t, b, "room-7", want[7]...)

	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !eventually(t, 10*time.Second, func() bool {
		n, err := s.Do("EXISTS", b.presenceKey("room-0"))
		return err == nil && n == "0"
	}) {
		t.Errorf("a presence key of a closed Broker still exists %v later", 10*time.Second)
	}
}

// TestRoomPresence checks the values a room's entries are written with,
// whether an entry names the Broker's own instance or another, while
// entries are replaced and removed.
func TestRoomPresence(t *testing.T) {
	b := &Broker{cfg: Config{InstanceID: "i_1"}}
	var rp roomPresence
	check := func(step string, want map[string]string) {
		t.Helper()
		got := maps.Collect(rp.stored(b, "inc"))
		if !maps.Equal(got, want) {
			t.Fatalf("%s: stored %q, want %q", step, got, want)
		}
	}
	rp.set(b, "s_1", "al", "i_1")
	rp.set(b, "s_2", "bo", "i_2")
	check("own and other instance", map[string]string{"s_1": "al\x00i_1\x00inc", "s_2": "bo\x00i_2\x00inc"})
	rp.set(b, "s_2", "bo", "i_1")
	rp.set(b, "s_1", "al", "i_3")
	check("instances swapped", map[string]string{"s_1": "al\x00i_3\x00inc", "s_2": "bo\x00i_1\x00inc"})
	rp.remove("s_1")
	check("other removed", map[string]string{"s_2": "bo\x00i_1\x00inc"})
	if len(rp.instances) != 0 {
		t.Errorf("instances after the other instance's entry left: %v", rp.instances)
	}
}

package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/brokertest"
)

// TestMain fails the run if goroutines outlive the tests: the broker must
// start none, and the suite must leave none behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestBroker_Conformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, cfg brokertest.Config) broker.Broker {
		return New(Config{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, IdempotencyTTL: cfg.IdempotencyTTL})
	})
}

func TestBroker_SharedConformance(t *testing.T) {
	brokertest.RunShared(t, func(t *testing.T) (broker.Broker, broker.Broker) {
		b := New(Config{})
		return b, b
	})
}

// clock is a manual clock for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.UnixMilli(1764300000000)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// counter is a Handler that counts its calls.
type counter struct {
	mu         sync.Mutex
	deliveries []*broker.Message
	resets     []broker.Position
}

func (c *counter) Deliver(m *broker.Message) {
	c.mu.Lock()
	c.deliveries = append(c.deliveries, m)
	c.mu.Unlock()
}

func (c *counter) Reset(room string, pos broker.Position) {
	c.mu.Lock()
	c.resets = append(c.resets, pos)
	c.mu.Unlock()
}

func (c *counter) counts() (deliveries, resets int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.deliveries), len(c.resets)
}

func mustPublish(t testing.TB, b *Broker, room string, p broker.Publication) broker.Position {
	t.Helper()
	pos, err := b.Publish(context.Background(), room, p)
	if err != nil {
		t.Fatalf("Publish(%q) error: %v", room, err)
	}
	return pos
}

func mustPosition(t *testing.T, b *Broker, room string) broker.Position {
	t.Helper()
	pos, err := b.Position(t.Context(), room)
	if err != nil {
		t.Fatalf("Position(%q) error: %v", room, err)
	}
	return pos
}

func (b *Broker) roomCount() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.rooms)
}

func TestNew_Defaults(t *testing.T) {
	for _, cfg := range []Config{{}, {HistorySize: -1, HistoryTTL: -1, IdempotencyTTL: -1, InstanceTTL: -1, HistoryMaxBytes: -1}} {
		got := New(cfg).cfg
		if got.HistorySize != 100 || got.HistoryTTL != 5*time.Minute || got.IdempotencyTTL != 5*time.Minute || got.InstanceTTL != 30*time.Second || got.HistoryMaxBytes != 256<<20 || got.Now == nil {
			t.Errorf("New(%+v) config = %+v, want the documented defaults", cfg, got)
		}
	}
}

func TestBroker_EpochFormat(t *testing.T) {
	b := New(Config{})
	seen := make(map[string]bool)
	re := regexp.MustCompile(`^[a-z2-7]{12}$`)
	for i := range 100 {
		e := mustPosition(t, b, fmt.Sprint("room-", i)).Epoch
		if !re.MatchString(e) {
			t.Errorf("epoch %q, want 12 lower-case base32 characters", e)
		}
		if seen[e] {
			t.Errorf("epoch %q started twice", e)
		}
		seen[e] = true
	}
}

func TestBroker_HistoryExpiresExactlyAfterTTL(t *testing.T) {
	c := newClock()
	b := New(Config{HistoryTTL: time.Minute, Now: c.Now})
	p1 := mustPublish(t, b, "r", broker.Publication{Data: json.RawMessage(`1`)})
	c.Add(time.Minute - time.Millisecond)
	// Neither Position nor History extends the TTL.
	if got := mustPosition(t, b, "r"); got != p1 {
		t.Fatalf("Position just before the TTL = %+v, want %+v", got, p1)
	}
	if h, err := b.History(t.Context(), "r", broker.HistoryQuery{}); err != nil || len(h.Messages) != 1 {
		t.Fatalf("History just before the TTL = %d messages, %v; want 1", len(h.Messages), err)
	}
	c.Add(time.Millisecond)
	p2 := mustPosition(t, b, "r")
	if p2.Epoch == p1.Epoch || p2.Offset != 0 {
		t.Fatalf("Position at the TTL = %+v, want offset 0 of a new epoch", p2)
	}
	// The epoch Position started lives one TTL, like a publish's.
	c.Add(time.Minute - time.Millisecond)
	if got := mustPosition(t, b, "r"); got != p2 {
		t.Fatalf("Position just before the new epoch's TTL = %+v, want %+v", got, p2)
	}
	c.Add(time.Millisecond)
	if got := mustPosition(t, b, "r"); got.Epoch == p2.Epoch {
		t.Fatalf("Position at the new epoch's TTL = %+v, want a new epoch", got)
	}
}

func TestBroker_SweepsAbandonedRooms(t *testing.T) {
	c := newClock()
	b := New(Config{HistoryTTL: time.Minute, IdempotencyTTL: 5 * time.Minute, Now: c.Now})
	for i := range 1000 {
		mustPublish(t, b, fmt.Sprint("published-", i), broker.Publication{Data: json.RawMessage(`1`)})
		mustPosition(t, b, fmt.Sprint("positioned-", i))
	}
	mustPublish(t, b, "keyed", broker.Publication{Data: json.RawMessage(`1`), Key: "k"})
	h := &counter{}
	if err := b.Subscribe(t.Context(), h, "subscribed"); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "subscribed", broker.Publication{Data: json.RawMessage(`1`)})
	if got, want := b.roomCount(), 2002; got != want {
		t.Fatalf("rooms = %d, want %d", got, want)
	}

	c.Add(2 * time.Minute)
	mustPosition(t, b, "trigger")
	// Left: the room with a live idempotency key, the subscribed room (its
	// history dropped) and the room just used.
	if got, want := b.roomCount(), 3; got != want {
		t.Errorf("rooms after the history TTL = %d, want %d", got, want)
	}
	b.mu.RLock()
	sub := b.rooms["subscribed"]
	b.mu.RUnlock()
	sub.mu.Lock()
	if sub.epoch != "" || sub.history.len() != 0 {
		t.Errorf("subscribed room after the TTL: epoch %q, %d messages held; want none", sub.epoch, sub.history.len())
	}
	sub.mu.Unlock()

	if err := b.Unsubscribe(t.Context(), h, "subscribed"); err != nil {
		t.Fatal(err)
	}
	c.Add(5 * time.Minute)
	mustPosition(t, b, "trigger")
	if got, want := b.roomCount(), 1; got != want {
		t.Errorf("rooms after the idempotency TTL = %d, want %d", got, want)
	}
}

// TestBroker_SweepRacesLookups checks, under the race detector, that a room
// swept while a call is about to lock it is looked up again instead of
// taking a message into a room that left the map.
func TestBroker_SweepRacesLookups(t *testing.T) {
	c := newClock()
	b := New(Config{HistoryTTL: 2 * time.Hour, IdempotencyTTL: time.Hour, Now: c.Now})
	for round := range 100 {
		c.Add(time.Hour) // a sweep is due
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				room := fmt.Sprintf("r-%d-%d", round, g)
				var epoch string
				for i := range 3 {
					pos, err := b.Publish(context.Background(), room, broker.Publication{Data: json.RawMessage(`1`)})
					if err != nil {
						t.Errorf("Publish error: %v", err)
						return
					}
					if i == 0 {
						epoch = pos.Epoch
					}
					if want := (broker.Position{Epoch: epoch, Offset: uint64(i + 1)}); pos != want {
						t.Errorf("Publish #%d to %q = %+v, want %+v", i+1, room, pos, want)
					}
				}
			})
		}
		wg.Wait()
	}
}

func TestBroker_ResetsOnlyHandlersThatKnewTheOldEpoch(t *testing.T) {
	c := newClock()
	b := New(Config{HistoryTTL: time.Minute, Now: c.Now})
	early, late := &counter{}, &counter{}
	if err := b.Subscribe(t.Context(), early, "r"); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "r", broker.Publication{Data: json.RawMessage(`1`)})
	c.Add(time.Minute)
	if err := b.Subscribe(t.Context(), late, "r"); err != nil {
		t.Fatal(err)
	}
	p := mustPublish(t, b, "r", broker.Publication{Data: json.RawMessage(`2`)})
	if p.Offset != 1 {
		t.Fatalf("Publish after expiry = %+v, want offset 1", p)
	}
	if d, r := early.counts(); d != 2 || r != 1 || early.resets[0] != (broker.Position{Epoch: p.Epoch}) {
		t.Errorf("early handler: %d deliveries, resets %v; want 2 and one reset to %s/0", d, early.resets, p.Epoch)
	}
	if d, r := late.counts(); d != 1 || r != 0 {
		t.Errorf("late handler: %d deliveries, %d resets; want 1 and 0", d, r)
	}
}

func TestBroker_DeliversBeforePublishReturns(t *testing.T) {
	b := New(Config{})
	h := &counter{}
	if err := b.Subscribe(t.Context(), h, "r"); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		mustPublish(t, b, "r", broker.Publication{Data: json.RawMessage(`1`)})
		if d, _ := h.counts(); d != i+1 {
			t.Fatalf("after Publish #%d returned, handler had %d deliveries, want %d", i+1, d, i+1)
		}
	}
}

func TestBroker_PublishCopiesData(t *testing.T) {
	b := New(Config{})
	data := []byte(`{"a":1}`)
	mustPublish(t, b, "r", broker.Publication{Data: data})
	copy(data, `{"b":2}`)
	mustPublish(t, b, "r", broker.Publication{})
	h, err := b.History(t.Context(), "r", broker.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range h.Messages {
		got = append(got, string(m.Data))
	}
	if want := []string{`{"a":1}`, `null`}; !slices.Equal(got, want) {
		t.Errorf("history data = %q, want %q", got, want)
	}
}

func TestBroker_HistoryRejectsNegativeLimit(t *testing.T) {
	b := New(Config{})
	if _, err := b.History(t.Context(), "r", broker.HistoryQuery{Limit: -1}); err == nil {
		t.Error("History with Limit -1 succeeded, want an error")
	}
}

func TestBroker_PresenceIsSortedAndEmptyRoomsAreDropped(t *testing.T) {
	b := New(Config{})
	entries := []broker.PresenceEntry{
		{Session: "s_3", User: "bob"}, {Session: "s_2", User: "alice"}, {Session: "s_1", User: "bob"},
	}
	for _, e := range entries {
		if err := b.AddPresence(t.Context(), "r", e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Presence(t.Context(), "r")
	if err != nil {
		t.Fatal(err)
	}
	if want := []broker.PresenceEntry{entries[1], entries[2], entries[0]}; !slices.Equal(got, want) {
		t.Errorf("Presence = %+v, want %+v", got, want)
	}
	for _, e := range entries {
		if err := b.RemovePresence(t.Context(), "r", e.Session); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(b.presence); n != 0 {
		t.Errorf("presence map holds %d rooms after every session left, want 0", n)
	}
	if err := b.AddPresence(t.Context(), "r", broker.PresenceEntry{User: "u"}); err == nil {
		t.Error("AddPresence without a session succeeded, want an error")
	}
}

func TestBroker_SessionsExpireAndAreSwept(t *testing.T) {
	c := newClock()
	b := New(Config{Now: c.Now})
	for i := range 100 {
		if err := b.SaveSessions(t.Context(), time.Minute, broker.SessionState{ID: fmt.Sprint("s_", i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.Add(time.Minute - time.Millisecond)
	if _, err := b.LoadSession(t.Context(), "s_1"); err != nil {
		t.Fatalf("LoadSession just before the ttl error: %v", err)
	}
	c.Add(time.Millisecond)
	if _, err := b.LoadSession(t.Context(), "s_1"); !errors.Is(err, broker.ErrNotFound) {
		t.Fatalf("LoadSession at the ttl error = %v, want broker.ErrNotFound", err)
	}
	if err := b.SaveSessions(t.Context(), time.Minute, broker.SessionState{ID: "s_new"}); err != nil {
		t.Fatal(err)
	}
	if n := len(b.sessions); n != 1 {
		t.Errorf("sessions held after the ttl = %d, want 1", n)
	}
	for _, ttl := range []time.Duration{0, -time.Second} {
		if err := b.SaveSessions(t.Context(), ttl, broker.SessionState{ID: "s"}); err == nil {
			t.Errorf("SaveSessions with ttl %v succeeded, want an error", ttl)
		}
	}
	if err := b.SaveSessions(t.Context(), time.Minute, broker.SessionState{User: "u"}); err == nil {
		t.Error("SaveSessions of a state without ID succeeded, want an error")
	}
}

func TestBroker_InstancesExpire(t *testing.T) {
	c := newClock()
	b := New(Config{InstanceTTL: 30 * time.Second, Now: c.Now})
	given := time.UnixMilli(1764200000000)
	if err := b.Heartbeat(t.Context(), broker.InstanceInfo{ID: "i_a"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(t.Context(), broker.InstanceInfo{ID: "i_b", LastHeartbeat: given}); err != nil {
		t.Fatal(err)
	}
	list, err := b.Instances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || !list[0].LastHeartbeat.Equal(c.Now()) || !list[1].LastHeartbeat.Equal(given) {
		t.Fatalf("Instances = %+v, want i_a heard now and i_b with its own LastHeartbeat", list)
	}
	c.Add(20 * time.Second)
	if err := b.Heartbeat(t.Context(), broker.InstanceInfo{ID: "i_b"}); err != nil {
		t.Fatal(err)
	}
	c.Add(10*time.Second - time.Millisecond)
	if list, _ := b.Instances(t.Context()); len(list) != 2 {
		t.Errorf("Instances just before i_a's TTL = %+v, want both", list)
	}
	c.Add(time.Millisecond)
	if list, _ := b.Instances(t.Context()); len(list) != 1 || list[0].ID != "i_b" {
		t.Errorf("Instances at i_a's TTL = %+v, want only i_b", list)
	}
	if err := b.Heartbeat(t.Context(), broker.InstanceInfo{}); err == nil {
		t.Error("Heartbeat without an ID succeeded, want an error")
	}
}

func TestBroker_EveryCallFailsAfterClose(t *testing.T) {
	b := New(Config{})
	h := &counter{}
	ctx := t.Context()
	if err := b.Subscribe(ctx, h, "r"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := b.Close(ctx); err != nil {
			t.Fatalf("Close error: %v", err)
		}
	}
	calls := map[string]func() error{
		"Publish":        func() error { _, err := b.Publish(ctx, "r", broker.Publication{}); return err },
		"Subscribe":      func() error { return b.Subscribe(ctx, h, "r") },
		"Unsubscribe":    func() error { return b.Unsubscribe(ctx, h, "r") },
		"Position":       func() error { _, err := b.Position(ctx, "r"); return err },
		"History":        func() error { _, err := b.History(ctx, "r", broker.HistoryQuery{}); return err },
		"AddPresence":    func() error { return b.AddPresence(ctx, "r", broker.PresenceEntry{Session: "s"}) },
		"RemovePresence": func() error { return b.RemovePresence(ctx, "r", "s") },
		"Presence":       func() error { _, err := b.Presence(ctx, "r"); return err },
		"SaveSessions":   func() error { return b.SaveSessions(ctx, time.Minute) },
		"LoadSession":    func() error { _, err := b.LoadSession(ctx, "s"); return err },
		"Heartbeat":      func() error { return b.Heartbeat(ctx, broker.InstanceInfo{ID: "i"}) },
		"Deregister":     func() error { return b.Deregister(ctx, "i") },
		"Instances":      func() error { _, err := b.Instances(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("%s after Close error = %v, want broker.ErrClosed", name, err)
		}
	}
	if d, r := h.counts(); d != 0 || r != 0 {
		t.Errorf("handler got %d deliveries and %d resets, want none", d, r)
	}
}

// noop is a Handler that does nothing. It has a field so that distinct
// values have distinct addresses.
type noop struct{ _ byte }

func (*noop) Deliver(*broker.Message)       {}
func (*noop) Reset(string, broker.Position) {}

func BenchmarkPublish(b *testing.B) {
	br := New(Config{})
	if err := br.Subscribe(b.Context(), &noop{}, "bench"); err != nil {
		b.Fatal(err)
	}
	p := broker.Publication{From: "alice", Origin: "s_1", Data: json.RawMessage(`{"text":"hello, world"}`)}
	for b.Loop() {
		if _, err := br.Publish(b.Context(), "bench", p); err != nil {
			b.Fatal(err)
		}
	}
}

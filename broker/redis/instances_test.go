package redis

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// TestBroker_TwoInstancesDeliverEverythingOnce has publishers on two
// brokers sharing one Redis (two instances) and checks that a handler on
// each receives every message of the room once, in order.
func TestBroker_TwoInstancesDeliverEverythingOnce(t *testing.T) {
	t.Parallel()
	const workers, each = 4, 250
	s := redistest.Start(t)
	prefix := newPrefix()
	a := open(t, s.URL(), Config{Prefix: prefix, InstanceID: "i_a"})
	b := open(t, s.URL(), Config{Prefix: prefix, InstanceID: "i_b"})
	ha, hb := newRecorder(t), newRecorder(t)
	if err := a.Subscribe(t.Context(), ha, "room"); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(t.Context(), hb, "room"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last broker.Position
	for w := range 2 * workers {
		via := a
		if w%2 == 1 {
			via = b
		}
		wg.Go(func() {
			for i := range each {
				pos, err := via.Publish(t.Context(), "room", broker.Publication{Origin: fmt.Sprint(w), Data: json.RawMessage(fmt.Sprint(i))})
				if err != nil {
					t.Errorf("Publish error: %v", err)
					return
				}
				mu.Lock()
				if pos.Offset > last.Offset {
					last = pos
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if last.Offset != 2*workers*each {
		t.Fatalf("last offset %d, want %d", last.Offset, 2*workers*each)
	}
	for name, h := range map[string]*recorder{"a": ha, "b": hb} {
		waitFor(t, h, last)
		if got := h.offsets(last.Epoch); !slices.Equal(got, span(1, last.Offset)) {
			t.Errorf("handler on %s received %d messages, want 1..%d once each, in order", name, len(got), last.Offset)
		}
		if r := h.resets(); len(r) != 0 {
			t.Errorf("handler on %s got resets %v", name, r)
		}
	}
}

// TestBroker_IdempotentPublishStoredOnce repeats a keyed publish on two
// instances concurrently: it is stored and delivered once.
func TestBroker_IdempotentPublishStoredOnce(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	prefix := newPrefix()
	a := open(t, s.URL(), Config{Prefix: prefix})
	b := open(t, s.URL(), Config{Prefix: prefix})
	h := newRecorder(t)
	if err := a.Subscribe(t.Context(), h, "r"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[broker.Position]int{}
	for i := range 20 {
		via := []*Broker{a, b}[i%2]
		wg.Go(func() {
			pos, err := via.Publish(t.Context(), "r", broker.Publication{Data: json.RawMessage(fmt.Sprint(i)), Key: "k"})
			if err != nil {
				t.Errorf("Publish error: %v", err)
				return
			}
			mu.Lock()
			got[pos]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(got) != 1 {
		t.Fatalf("20 publishes with one key got positions %v, want one", got)
	}
	last := publish(t, b, "r", `"unkeyed"`)
	if last.Offset != 2 {
		t.Errorf("next Publish = %+v, want offset 2", last)
	}
	waitFor(t, h, last)
	if o := h.offsets(last.Epoch); !slices.Equal(o, []uint64{1, 2}) {
		t.Errorf("handler received %v, want [1 2]", o)
	}
	if n, err := s.Do("XLEN", a.logKey("r")); err != nil || n != "2" {
		t.Errorf("XLEN of the room's stream = %s, %v; want 2", n, err)
	}
}

// TestBroker_PresenceExpiresWithoutHeartbeat stops one instance without
// cleanup: its presence and registry entries expire, while those of an
// instance that keeps heartbeating stay.
func TestBroker_PresenceExpiresWithoutHeartbeat(t *testing.T) {
	t.Parallel()
	const ttl = 500 * time.Millisecond
	s := redistest.Start(t)
	prefix := newPrefix()
	dying := open(t, s.URL(), Config{Prefix: prefix, PresenceTTL: ttl})
	alive := open(t, s.URL(), Config{Prefix: prefix, PresenceTTL: ttl})
	ctx := t.Context()
	for _, x := range []struct {
		b *Broker
		e broker.PresenceEntry
	}{
		{dying, broker.PresenceEntry{Session: "s_d", User: "dora", Instance: "i_d"}},
		{alive, broker.PresenceEntry{Session: "s_a", User: "al", Instance: "i_a"}},
	} {
		if err := x.b.AddPresence(ctx, "lobby", x.e); err != nil {
			t.Fatal(err)
		}
		if err := x.b.Heartbeat(ctx, broker.InstanceInfo{ID: x.e.Instance}); err != nil {
			t.Fatal(err)
		}
	}
	if es, err := alive.Presence(ctx, "lobby"); err != nil || len(es) != 2 {
		t.Fatalf("Presence = %+v, %v; want both sessions", es, err)
	}
	if err := dying.Close(ctx); err != nil { // a crash: nothing removed
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(ttl / 5)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if err := alive.Heartbeat(ctx, broker.InstanceInfo{ID: "i_a"}); err != nil {
					t.Errorf("Heartbeat error: %v", err)
				}
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	start := time.Now()
	want := []broker.PresenceEntry{{Session: "s_a", User: "al", Instance: "i_a"}}
	if !eventually(t, 5*time.Second, func() bool {
		es, err := alive.Presence(ctx, "lobby")
		return err == nil && slices.Equal(es, want)
	}) {
		es, err := alive.Presence(ctx, "lobby")
		t.Fatalf("Presence = %+v, %v; want only %+v", es, err, want)
	}
	if waited := time.Since(start); waited > 3*ttl {
		t.Errorf("the dead instance's entry took %v to expire, TTL %v", waited, ttl)
	}
	if !eventually(t, 5*time.Second, func() bool {
		is, err := alive.Instances(ctx)
		return err == nil && len(is) == 1 && is[0].ID == "i_a"
	}) {
		is, err := alive.Instances(ctx)
		t.Fatalf("Instances = %+v, %v; want only i_a", is, err)
	}
	// Well past the TTL, the heartbeating instance is still present.
	time.Sleep(2 * ttl) // let time pass: entries must outlive their TTL
	if es, err := alive.Presence(ctx, "lobby"); err != nil || !slices.Equal(es, want) {
		t.Errorf("Presence %v later = %+v, %v; want %+v", 2*ttl, es, err, want)
	}
}

// TestBroker_HeartbeatRestoresPresence checks that presence entries come
// back with the next heartbeat after Redis lost them.
func TestBroker_HeartbeatRestoresPresence(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	b := open(t, s.URL(), Config{})
	e := broker.PresenceEntry{Session: "s_1", User: "u", Instance: "i_1"}
	if err := b.AddPresence(t.Context(), "lobby", e); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(t.Context(), broker.InstanceInfo{ID: "i_1"}); err != nil {
		t.Fatal(err)
	}
	if es, err := b.Presence(t.Context(), "lobby"); err != nil || !slices.Equal(es, []broker.PresenceEntry{e}) {
		t.Errorf("Presence after FLUSHALL and Heartbeat = %+v, %v; want %+v", es, err, e)
	}
	if err := b.RemovePresence(t.Context(), "lobby", "s_1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(t.Context(), broker.InstanceInfo{ID: "i_1"}); err != nil {
		t.Fatal(err)
	}
	if es, err := b.Presence(t.Context(), "lobby"); err != nil || len(es) != 0 {
		t.Errorf("Presence after RemovePresence and Heartbeat = %+v, %v; want none", es, err)
	}
}

// TestBroker_ManyRoomsResubscribe subscribes many rooms in one call and
// checks that, after the pub/sub connection is cut, messages published to
// every room meanwhile arrive.
func TestBroker_ManyRoomsResubscribe(t *testing.T) {
	t.Parallel()
	const rooms = 1500
	s := redistest.Start(t)
	prefix := newPrefix()
	sub := open(t, s.URL(), Config{Prefix: prefix, ProbeInterval: 50 * time.Millisecond})
	pub := open(t, s.URL(), Config{Prefix: prefix})
	names := make([]string, rooms)
	for i := range names {
		names[i] = fmt.Sprint("room-", i)
	}
	h := &counter{}
	if err := sub.Subscribe(t.Context(), h, names...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		publish(t, pub, name, `1`)
	}
	if !eventually(t, waitTimeout, func() bool { return h.count() == rooms }) {
		t.Fatalf("handler received %d messages, want %d", h.count(), rooms)
	}
	if h.resets.Load() != 0 {
		t.Errorf("handler got %d resets, want none", h.resets.Load())
	}
	if err := sub.Unsubscribe(t.Context(), h, names...); err != nil {
		t.Fatal(err)
	}
	// The channels are unsubscribed right after Unsubscribe returns.
	if !eventually(t, 5*time.Second, func() bool { n, err := pubsubChannels(s, prefix); return err == nil && n == 0 }) {
		n, err := pubsubChannels(s, prefix)
		t.Errorf("room channels subscribed after Unsubscribe: %d, %v; want 0", n, err)
	}
}

// pubsubChannels counts the room channels with subscribers under prefix.
func pubsubChannels(s *redistest.Server, prefix string) (int, error) {
	// redistest.Do returns the first line of an array reply: "*<count>".
	line, err := s.Do("PUBSUB", "SHARDCHANNELS", prefix+":{*}:ch")
	if err != nil {
		return 0, err
	}
	var n int
	_, err = fmt.Sscanf(line, "*%d", &n)
	return n, err
}

// counter is a Handler that counts its calls.
type counter struct {
	delivered, resets atomic.Int64
}

func (c *counter) Deliver(*broker.Message)       { c.delivered.Add(1) }
func (c *counter) Reset(string, broker.Position) { c.resets.Add(1) }
func (c *counter) count() int                    { return int(c.delivered.Load()) }

// TestBroker_SecondHandlerIsACleanCut subscribes further handlers to a room
// that is already subscribed while publishers run: each gets a contiguous
// run of messages that starts after what was published before its
// Subscribe call and includes everything published after it returned.
func TestBroker_SecondHandlerIsACleanCut(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	prefix := newPrefix()
	sub := open(t, s.URL(), Config{Prefix: prefix})
	pub := open(t, s.URL(), Config{Prefix: prefix})
	first := newRecorder(t)
	if err := sub.Subscribe(t.Context(), first, "r"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := pub.Publish(t.Context(), "r", broker.Publication{Data: json.RawMessage(`1`)}); err != nil {
					t.Errorf("Publish error: %v", err)
					return
				}
			}
		})
	}
	type joined struct {
		h      *recorder
		before broker.Position // published before Subscribe was called
		after  broker.Position // published after it returned
	}
	var js []joined
	for range 20 {
		j := joined{h: newRecorder(t)}
		j.before = publish(t, pub, "r", `0`)
		if err := sub.Subscribe(t.Context(), j.h, "r"); err != nil {
			t.Fatal(err)
		}
		j.after = publish(t, pub, "r", `2`)
		js = append(js, j)
	}
	close(stop)
	wg.Wait()
	last := publish(t, pub, "r", `3`)
	for i, j := range js {
		waitFor(t, j.h, last)
		got := j.h.offsets(last.Epoch)
		if got[0] <= j.before.Offset || got[0] > j.after.Offset {
			t.Errorf("handler %d: first offset %d, want one in (%d, %d]", i, got[0], j.before.Offset, j.after.Offset)
		}
		if !slices.Equal(got, span(got[0], last.Offset)) {
			t.Errorf("handler %d received %d messages from %d, want %d..%d", i, len(got), got[0], got[0], last.Offset)
		}
	}
}

// slowHandler is a recorder that takes its time over each delivery, as a
// hub with many local members would.
type slowHandler struct {
	*recorder
	delay time.Duration
}

func (h slowHandler) Deliver(m *broker.Message) {
	time.Sleep(h.delay) // the point: a slow handler
	h.recorder.Deliver(m)
}

// TestBroker_DispatchQueueFull gives the dispatcher a queue of 16 messages
// and a slow handler while publishers run: messages that find the queue
// full are dropped (and counted) and read from history instead, so the
// handler still gets every message once, in order, without a Reset.
func TestBroker_DispatchQueueFull(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	prefix := newPrefix()
	reg := prometheus.NewRegistry()
	sub := open(t, s.URL(), Config{Prefix: prefix, DispatchQueue: 16, HistorySize: 10_000, Registerer: reg})
	pub := open(t, s.URL(), Config{Prefix: prefix, HistorySize: 10_000})
	h := slowHandler{newRecorder(t), time.Millisecond}
	if err := sub.Subscribe(t.Context(), h, "r"); err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 150
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last broker.Position
	for range workers {
		wg.Go(func() {
			for range each {
				pos := publish(t, pub, "r", `1`)
				mu.Lock()
				if pos.Offset > last.Offset {
					last = pos
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	waitFor(t, h.recorder, last)
	if got := h.offsets(last.Epoch); !slices.Equal(got, span(1, last.Offset)) {
		t.Errorf("handler received %d messages, want 1..%d once each, in order", len(got), last.Offset)
	}
	if r := h.resets(); len(r) != 0 {
		t.Errorf("handler got resets %v, want none", r)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.Metric{}
	for _, f := range families {
		got[f.GetName()] = f.GetMetric()[0]
	}
	dropped := got["switchboard_redis_dispatch_dropped_total"].GetCounter().GetValue()
	t.Logf("%d messages, %.0f dropped from the full queue and read from history", last.Offset, dropped)
	if dropped == 0 {
		t.Error("no message was dropped: the queue never filled, the test proves nothing")
	}
	for _, name := range []string{"switchboard_redis_dispatch_queue", "switchboard_redis_catchups_total"} {
		if got[name] == nil {
			t.Errorf("metric %s not registered", name)
		}
	}
}

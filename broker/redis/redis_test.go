package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/brokertest"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// TestMain fails the run if goroutines outlive the tests: every Broker must
// stop its own (and rueidis's) when closed. Two timers of rueidis's
// cluster client are let go, closed client or not: after the cluster's
// topology changed it closes the replaced connections five seconds later,
// and after an error it refreshes the topology up to a second later.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"))
}

var prefixes atomic.Int64

// newPrefix returns a key prefix no other broker of this test binary uses.
func newPrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

// open returns a Broker on url with cfg, closed when the test ends.
func open(t testing.TB, url string, cfg Config) *Broker {
	t.Helper()
	cfg.URL = url
	if cfg.Prefix == "" {
		cfg.Prefix = newPrefix()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New(%+v) error: %v", cfg, err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

func TestBroker_Conformance(t *testing.T) {
	s := redistest.Start(t)
	brokertest.Run(t, func(t *testing.T, cfg brokertest.Config) broker.Broker {
		return open(t, s.URL(), Config{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, IdempotencyTTL: cfg.IdempotencyTTL})
	})
}

func TestBroker_SharedConformance(t *testing.T) {
	s := redistest.Start(t)
	brokertest.RunShared(t, func(t *testing.T) (broker.Broker, broker.Broker) {
		prefix := newPrefix()
		return open(t, s.URL(), Config{Prefix: prefix, InstanceID: "i_a"}), open(t, s.URL(), Config{Prefix: prefix, InstanceID: "i_b"})
	})
}

// conformance runs the conformance suites, as subtests of t, against
// brokers from open, which adds the address and the mode to cfg.
func conformance(t *testing.T, open func(t testing.TB, cfg Config) *Broker) {
	t.Run("Conformance", func(t *testing.T) {
		brokertest.Run(t, func(t *testing.T, cfg brokertest.Config) broker.Broker {
			return open(t, Config{HistorySize: cfg.HistorySize, HistoryTTL: cfg.HistoryTTL, IdempotencyTTL: cfg.IdempotencyTTL})
		})
	})
	t.Run("SharedConformance", func(t *testing.T) {
		brokertest.RunShared(t, func(t *testing.T) (broker.Broker, broker.Broker) {
			prefix := newPrefix()
			return open(t, Config{Prefix: prefix, InstanceID: "i_a"}), open(t, Config{Prefix: prefix, InstanceID: "i_b"})
		})
	})
}

func TestNew_Config(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"NoURL", Config{}},
		{"BadScheme", Config{URL: "http://localhost"}},
		{"BraceInPrefix", Config{URL: "redis://127.0.0.1:1", Prefix: "a{b"}},
		{"NegativeHistorySize", Config{URL: "redis://127.0.0.1:1", HistorySize: -1}},
		{"NegativeProbeInterval", Config{URL: "redis://127.0.0.1:1", ProbeInterval: -time.Second}},
		{"SubMillisecondTTL", Config{URL: "redis://127.0.0.1:1", HistoryTTL: time.Microsecond}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if b, err := New(t.Context(), c.cfg); err == nil {
				_ = b.Close(t.Context())
				t.Errorf("New(%+v) succeeded, want an error", c.cfg)
			}
		})
	}
	t.Run("Defaults", func(t *testing.T) {
		got, err := Config{URL: "redis://x"}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if got.Prefix != "sb" || got.HistorySize != 100 || got.HistoryTTL != 5*time.Minute || got.IdempotencyTTL != 5*time.Minute ||
			got.PresenceTTL != 30*time.Second || got.ProbeInterval != time.Second || got.Timeout != 5*time.Second ||
			!strings.HasPrefix(got.InstanceID, "i_") || got.Logger == nil {
			t.Errorf("defaults = %+v", got)
		}
	})
}

func TestNew_UnreachableRedisIsUnavailable(t *testing.T) {
	s := redistest.Start(t)
	s.Stop()
	b, err := New(t.Context(), Config{URL: s.URL(), Timeout: 500 * time.Millisecond})
	if err == nil {
		_ = b.Close(t.Context())
		t.Fatal("New with Redis down succeeded")
	}
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("New with Redis down error = %v, want one wrapping broker.ErrUnavailable", err)
	}
}

func TestEnvelope_Decode(t *testing.T) {
	cases := []struct {
		name, env string
		want      *broker.Message
	}{
		{"Plain", "1\nep\n7\n1764300000123\n5\n3\nalices_1{\"a\":1}",
			&broker.Message{Room: "r", Epoch: "ep", Offset: 7, Time: 1764300000123, From: "alice", Origin: "s_1", Data: json.RawMessage(`{"a":1}`)}},
		{"EmptyFromAndOrigin", "1\nep\n1\n5\n0\n0\nnull",
			&broker.Message{Room: "r", Epoch: "ep", Offset: 1, Time: 5, Data: json.RawMessage(`null`)}},
		{"NewlinesInParts", "1\nep\n2\n5\n2\n1\na\nb\"x\ny\"",
			&broker.Message{Room: "r", Epoch: "ep", Offset: 2, Time: 5, From: "a\n", Origin: "b", Data: json.RawMessage("\"x\ny\"")}},
		{"Truncated", "1\nep\n2\n5\n9\n1\nab", nil},
		{"OtherVersion", "2\nep\n2\n5\n0\n0\nnull", nil},
		{"NoEpoch", "1\n\n2\n5\n0\n0\nnull", nil},
		{"BadOffset", "1\nep\n-2\n5\n0\n0\nnull", nil},
		{"TooFewFields", "1\nep\n2\n", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := decodeEnvelope("r", c.env)
			if c.want == nil {
				if err == nil {
					t.Errorf("decodeEnvelope(%q) = %+v, want an error", c.env, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeEnvelope(%q) error: %v", c.env, err)
			}
			if got.Room != c.want.Room || got.Position() != c.want.Position() || got.Time != c.want.Time ||
				got.From != c.want.From || got.Origin != c.want.Origin || string(got.Data) != string(c.want.Data) {
				t.Errorf("decodeEnvelope(%q) = %+v, want %+v", c.env, got, c.want)
			}
		})
	}
}

// event is one call a recorder received: a delivery (msg set) or a reset.
type event struct {
	msg   *broker.Message
	reset broker.Position
	at    time.Time
}

func (e event) String() string {
	if e.msg != nil {
		return fmt.Sprintf("%s/%d", e.msg.Epoch, e.msg.Offset)
	}
	return fmt.Sprintf("reset %s/%d", e.reset.Epoch, e.reset.Offset)
}

// recorder is a Handler that records the calls for one room and checks the
// Handler promises as they arrive: no concurrent calls, offsets in order
// without hole or duplicate, a new epoch only after a Reset.
type recorder struct {
	mu     sync.Mutex
	busy   bool
	events []event
	last   broker.Position
	errs   []string
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.errs {
			t.Error(e)
		}
	})
	return r
}

func (r *recorder) enter() {
	r.mu.Lock()
	if r.busy {
		r.errs = append(r.errs, "concurrent handler calls")
	}
	r.busy = true
	r.mu.Unlock()
	runtime.Gosched()
}

func (r *recorder) Deliver(m *broker.Message) {
	r.enter()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.busy = false
	switch {
	case r.last.Epoch == "":
	case m.Epoch != r.last.Epoch:
		r.errs = append(r.errs, fmt.Sprintf("delivered %s/%d after %s/%d without a Reset", m.Epoch, m.Offset, r.last.Epoch, r.last.Offset))
	case m.Offset != r.last.Offset+1:
		r.errs = append(r.errs, fmt.Sprintf("delivered offset %d after %d", m.Offset, r.last.Offset))
	}
	r.last = m.Position()
	r.events = append(r.events, event{msg: m, at: time.Now()})
}

func (r *recorder) Reset(room string, pos broker.Position) {
	r.enter()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.busy = false
	r.last = pos
	r.events = append(r.events, event{reset: pos, at: time.Now()})
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// has reports whether r received the message at pos.
func (r *recorder) has(pos broker.Position) bool {
	for _, e := range r.snapshot() {
		if e.msg != nil && e.msg.Position() == pos {
			return true
		}
	}
	return false
}

// messages returns the offsets delivered in epoch.
func (r *recorder) offsets(epoch string) []uint64 {
	var os []uint64
	for _, e := range r.snapshot() {
		if e.msg != nil && e.msg.Epoch == epoch {
			os = append(os, e.msg.Offset)
		}
	}
	return os
}

// longestGap returns the longest time between two calls r received.
func (r *recorder) longestGap() time.Duration {
	es := r.snapshot()
	var gap time.Duration
	for i := 1; i < len(es); i++ {
		gap = max(gap, es[i].at.Sub(es[i-1].at))
	}
	return gap
}

func (r *recorder) resets() []broker.Position {
	var ps []broker.Position
	for _, e := range r.snapshot() {
		if e.msg == nil {
			ps = append(ps, e.reset)
		}
	}
	return ps
}

// eventually polls cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

func waitFor(t *testing.T, r *recorder, pos broker.Position) {
	t.Helper()
	if !eventually(t, waitTimeout, func() bool { return r.has(pos) }) {
		t.Fatalf("handler did not receive %s/%d; it received %v", pos.Epoch, pos.Offset, r.snapshot())
	}
}

func publish(t testing.TB, b *Broker, room string, data string) broker.Position {
	t.Helper()
	pos, err := b.Publish(context.Background(), room, broker.Publication{From: "alice", Data: json.RawMessage(data)})
	if err != nil {
		t.Fatalf("Publish(%q) error: %v", room, err)
	}
	return pos
}

func span(from, to uint64) []uint64 {
	var os []uint64
	for o := from; o <= to; o++ {
		os = append(os, o)
	}
	return os
}

// waitTimeout bounds the waits of these tests. It is generous because the
// whole suite shares two cores with several redis-servers: it only decides
// how long a failing test takes to say so.
const waitTimeout = 30 * time.Second

package brokertest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// checkHistory checks that h is at pos and holds the messages numbered
// (see publishN) with offsets want, in room.
func checkHistory(t *testing.T, what string, h broker.History, room string, pos broker.Position, want []uint64) {
	t.Helper()
	if h.Position != pos {
		t.Errorf("%s: Position = %+v, want %+v", what, h.Position, pos)
	}
	if got := offsets(h.Messages); !slices.Equal(got, want) {
		t.Errorf("%s: offsets %v, want %v", what, got, want)
		return
	}
	for _, m := range h.Messages {
		if m.Room != room || m.Epoch != pos.Epoch || string(m.Data) != string(numbered(int(m.Offset))) {
			t.Errorf("%s: message %d = %q %q %s, want %q %q %s", what, m.Offset, m.Room, m.Epoch, m.Data, room, pos.Epoch, numbered(int(m.Offset)))
		}
	}
}

func testHistoryQueries(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	ps := publishN(t, b, "general", 10)
	last := ps[9]
	cases := []struct {
		name string
		q    broker.HistoryQuery
		want []uint64
	}{
		{"All", broker.HistoryQuery{}, span(1, 10)},
		{"After", broker.HistoryQuery{After: 3}, span(4, 10)},
		{"Limit", broker.HistoryQuery{Limit: 3}, span(1, 3)},
		{"Tail", broker.HistoryQuery{Limit: 3, Tail: true}, span(8, 10)},
		{"AfterAndLimit", broker.HistoryQuery{After: 3, Limit: 2}, span(4, 5)},
		{"AfterAndTail", broker.HistoryQuery{After: 3, Limit: 2, Tail: true}, span(9, 10)},
		{"TailLongerThanWhatIsAfter", broker.HistoryQuery{After: 7, Limit: 5, Tail: true}, span(8, 10)},
		{"TailWithoutLimit", broker.HistoryQuery{Tail: true}, span(1, 10)},
		{"LimitAboveCount", broker.HistoryQuery{Limit: 50}, span(1, 10)},
		{"LimitOne", broker.HistoryQuery{Limit: 1}, span(1, 1)},
		{"AfterLast", broker.HistoryQuery{After: 10}, nil},
		{"AfterBeyondLast", broker.HistoryQuery{After: 99, Limit: 3, Tail: true}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkHistory(t, "History", history(t, b, "general", c.q), "general", last, c.want)
		})
	}
}

func testHistoryOfNewRoom(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	h := history(t, b, "general", broker.HistoryQuery{})
	if h.Epoch == "" || h.Offset != 0 || len(h.Messages) != 0 {
		t.Fatalf("History of a new room = %+v with %d messages, want offset 0 in a non-empty epoch and none", h.Position, len(h.Messages))
	}
	if got := position(t, b, "general"); got != h.Position {
		t.Errorf("Position after History = %+v, want %+v", got, h.Position)
	}
	if got, want := publish(t, b, "general", broker.Publication{Data: numbered(1)}), (broker.Position{Epoch: h.Epoch, Offset: 1}); got != want {
		t.Errorf("Publish after History = %+v, want %+v", got, want)
	}
}

func testHistorySize(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	const size = 10
	b := open(t, Config{HistorySize: size})
	ps := publishN(t, b, "general", size+5)
	last := ps[len(ps)-1]
	cases := []struct {
		name string
		q    broker.HistoryQuery
		want []uint64
	}{
		{"All", broker.HistoryQuery{}, span(6, 15)},
		{"AfterOlderThanHistory", broker.HistoryQuery{After: 2}, span(6, 15)},
		{"AfterInsideHistory", broker.HistoryQuery{After: 8}, span(9, 15)},
		{"Limit", broker.HistoryQuery{Limit: 3}, span(6, 8)},
		{"Tail", broker.HistoryQuery{Limit: 3, Tail: true}, span(13, 15)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkHistory(t, "History", history(t, b, "general", c.q), "general", last, c.want)
		})
	}
}

func testHistoryExpires(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	const ttl = 500 * time.Millisecond
	b := open(t, Config{HistoryTTL: ttl})
	ps := publishN(t, b, "general", 3)
	e1 := ps[0].Epoch
	if got := position(t, b, "general"); got != ps[2] {
		t.Fatalf("Position right after publishing = %+v, want %+v", got, ps[2])
	}
	// An epoch that Position started expires too.
	q0 := position(t, b, "quiet")

	var p2 broker.Position
	if !eventually(t, waitFor, func() bool { p2 = position(t, b, "general"); return p2.Epoch != e1 }) {
		t.Fatalf("Position = %+v %v after the last publish, want a new epoch (history TTL %v)", p2, waitFor, ttl)
	}
	if p2.Epoch == "" || p2.Offset != 0 {
		t.Errorf("Position after expiry = %+v, want offset 0 in a non-empty epoch", p2)
	}
	h := history(t, b, "general", broker.HistoryQuery{})
	if h.Position != p2 || len(h.Messages) != 0 {
		t.Errorf("History after expiry = %+v with offsets %v, want %+v and no messages", h.Position, offsets(h.Messages), p2)
	}
	if got, want := publish(t, b, "general", broker.Publication{Data: numbered(1)}), (broker.Position{Epoch: p2.Epoch, Offset: 1}); got != want {
		t.Errorf("Publish after expiry = %+v, want %+v", got, want)
	}

	var q1 broker.Position
	if !eventually(t, waitFor, func() bool { q1 = position(t, b, "quiet"); return q1.Epoch != q0.Epoch }) {
		t.Fatalf("Position of a room without publishes = %+v %v after it started, want a new epoch (history TTL %v)", q1, waitFor, ttl)
	}
	if q1.Offset != 0 {
		t.Errorf("Position of a room without publishes after expiry = %+v, want offset 0", q1)
	}
}

func testPublishRefreshesTTL(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	const ttl = time.Second
	b := open(t, Config{HistoryTTL: ttl})
	p1 := publish(t, b, "general", broker.Publication{Data: numbered(1)})
	time.Sleep(ttl * 6 / 10) // let time pass: not a wait for a condition
	p2 := publish(t, b, "general", broker.Publication{Data: numbered(2)})
	if want := (broker.Position{Epoch: p1.Epoch, Offset: 2}); p2 != want {
		t.Fatalf("Publish %v after the first = %+v, want %+v", ttl*6/10, p2, want)
	}
	time.Sleep(ttl * 6 / 10)
	if got := position(t, b, "general"); got != p2 {
		t.Errorf("Position %v after the first publish and %v after the last = %+v, want %+v (TTL %v counts from the last publish)", ttl*12/10, ttl*6/10, got, p2, ttl)
	}
	checkHistory(t, "History", history(t, b, "general", broker.HistoryQuery{}), "general", p2, span(1, 2))
}

func testIdempotentPublish(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	h := newRecorder(t, "h")
	subscribe(t, b, h, "general")
	first := publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"first"`), Key: "k1"})
	again := publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"again"`), Key: "k1"})
	if again != first {
		t.Errorf("Publish with a repeated key = %+v, want the first position %+v", again, first)
	}
	n1 := publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"no key"`)})
	n2 := publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"no key"`)})
	if want := (broker.Position{Epoch: first.Epoch, Offset: 2}); n1 != want {
		t.Errorf("Publish without key after a deduplicated one = %+v, want %+v", n1, want)
	}
	if want := (broker.Position{Epoch: first.Epoch, Offset: 3}); n2 != want {
		t.Errorf("second identical Publish without key = %+v, want %+v", n2, want)
	}
	if again := publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"later"`), Key: "k1"}); again != first {
		t.Errorf("Publish with a repeated key after other publishes = %+v, want %+v", again, first)
	}
	k2 := publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"k2"`), Key: "k2"})
	if want := (broker.Position{Epoch: first.Epoch, Offset: 4}); k2 != want {
		t.Errorf("Publish with a new key = %+v, want %+v", k2, want)
	}

	h.waitOffset(t, "general", k2)
	if got := offsets(h.messages("general")); !slices.Equal(got, span(1, 4)) {
		t.Errorf("handler received %v, want %v", got, span(1, 4))
	}
	hist := history(t, b, "general", broker.HistoryQuery{})
	var data []string
	for _, m := range hist.Messages {
		data = append(data, string(m.Data))
	}
	if want := []string{`"first"`, `"no key"`, `"no key"`, `"k2"`}; !slices.Equal(data, want) {
		t.Errorf("History data = %v, want %v", data, want)
	}
}

func testIdempotencyPerRoom(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	a := publish(t, b, "a", broker.Publication{Data: json.RawMessage(`"in a"`), Key: "k"})
	c := publish(t, b, "c", broker.Publication{Data: json.RawMessage(`"in c"`), Key: "k"})
	if c.Offset != 1 || c.Epoch == "" {
		t.Errorf("Publish to room c with a key used in room a = %+v, want offset 1 of c's epoch", c)
	}
	if c == a {
		t.Errorf("Publish to room c with a key used in room a returned a's position %+v", a)
	}
	hist := history(t, b, "c", broker.HistoryQuery{})
	if len(hist.Messages) != 1 || string(hist.Messages[0].Data) != `"in c"` {
		t.Errorf("History of c = offsets %v, want one message with data \"in c\"", offsets(hist.Messages))
	}
}

func testIdempotencyExpires(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	const ttl = 500 * time.Millisecond
	b := open(t, Config{IdempotencyTTL: ttl})
	first := publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"first"`), Key: "k"})
	var later broker.Position
	// Each try is a no-op until the key has expired; then it publishes once.
	if !eventually(t, waitFor, func() bool {
		later = publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"later"`), Key: "k"})
		return later != first
	}) {
		t.Fatalf("Publish with key k still answers %+v %v after the first (idempotency TTL %v)", first, waitFor, ttl)
	}
	if want := (broker.Position{Epoch: first.Epoch, Offset: 2}); later != want {
		t.Errorf("Publish with an expired key = %+v, want %+v", later, want)
	}
	if again := publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"again"`), Key: "k"}); again != later {
		t.Errorf("Publish repeating the renewed key = %+v, want %+v", again, later)
	}
	hist := history(t, b, "general", broker.HistoryQuery{})
	var data []string
	for _, m := range hist.Messages {
		data = append(data, string(m.Data))
	}
	if want := []string{`"first"`, `"later"`}; !slices.Equal(data, want) {
		t.Errorf("History data = %v, want %v", data, want)
	}
}

func testCanceledContext(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Publish(ctx, "general", broker.Publication{Data: numbered(1)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a canceled context error = %v, want one wrapping context.Canceled", err)
	}
	if p := position(t, b, "general"); p.Offset != 0 {
		t.Errorf("Position after a canceled Publish = %+v, want offset 0", p)
	}
}

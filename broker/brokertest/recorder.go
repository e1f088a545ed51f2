package brokertest

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// event is one call a recorder received: a delivery (msg set) or a reset.
type event struct {
	room  string
	msg   *broker.Message
	reset broker.Position
}

func (e event) String() string {
	if e.msg != nil {
		return fmt.Sprintf("deliver %s/%d", e.msg.Epoch, e.msg.Offset)
	}
	return fmt.Sprintf("reset to %s/%d", e.reset.Epoch, e.reset.Offset)
}

// recorder is a broker.Handler that records every call and checks, as calls
// arrive, the promises of broker.Handler: per room, calls are never
// concurrent, messages come in offset order with no hole and no duplicate,
// and an epoch changes only through a Reset.
type recorder struct {
	name string

	mu     sync.Mutex
	events []event
	last   map[string]broker.Position // per room: last delivered or reset position
	busy   map[string]bool
	errs   []string
}

func newRecorder(t *testing.T, name string) *recorder {
	r := &recorder{name: name, last: make(map[string]broker.Position), busy: make(map[string]bool)}
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.errs {
			t.Errorf("handler %s: %s", r.name, e)
		}
	})
	return r
}

func (r *recorder) enter(room string) {
	r.mu.Lock()
	if r.busy[room] {
		r.errs = append(r.errs, fmt.Sprintf("room %q: concurrent calls", room))
	}
	r.busy[room] = true
	r.mu.Unlock()
	// Widen the window in which an overlapping call would be seen.
	runtime.Gosched()
}

func (r *recorder) exit(room string) {
	r.mu.Lock()
	r.busy[room] = false
	r.mu.Unlock()
}

func (r *recorder) Deliver(m *broker.Message) {
	if m == nil {
		r.mu.Lock()
		r.errs = append(r.errs, "Deliver(nil)")
		r.mu.Unlock()
		return
	}
	r.enter(m.Room)
	defer r.exit(m.Room)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{room: m.Room, msg: m})
	switch last, ok := r.last[m.Room]; {
	case m.Epoch == "" || m.Offset == 0:
		r.errs = append(r.errs, fmt.Sprintf("room %q: delivered message at position %q/%d, want a non-empty epoch and an offset >= 1", m.Room, m.Epoch, m.Offset))
	case !ok:
		// The first message after Subscribe may have any offset.
	case m.Epoch != last.Epoch:
		r.errs = append(r.errs, fmt.Sprintf("room %q: delivered %s/%d after %s/%d without a Reset", m.Room, m.Epoch, m.Offset, last.Epoch, last.Offset))
	case m.Offset != last.Offset+1:
		r.errs = append(r.errs, fmt.Sprintf("room %q: delivered offset %d after %d, want %d", m.Room, m.Offset, last.Offset, last.Offset+1))
	}
	r.last[m.Room] = m.Position()
}

func (r *recorder) Reset(room string, pos broker.Position) {
	r.enter(room)
	defer r.exit(room)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, event{room: room, reset: pos})
	if pos.Epoch == "" {
		r.errs = append(r.errs, fmt.Sprintf("room %q: Reset to an empty epoch", room))
	}
	r.last[room] = pos
}

// forget drops what r knows of room's stream, so that the first message of
// a new subscription may have any offset.
func (r *recorder) forget(room string) {
	r.mu.Lock()
	delete(r.last, room)
	r.mu.Unlock()
}

// roomEvents returns the calls r received for room.
func (r *recorder) roomEvents(room string) []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var es []event
	for _, e := range r.events {
		if e.room == room {
			es = append(es, e)
		}
	}
	return es
}

// messages returns the messages r received for room.
func (r *recorder) messages(room string) []*broker.Message {
	var ms []*broker.Message
	for _, e := range r.roomEvents(room) {
		if e.msg != nil {
			ms = append(ms, e.msg)
		}
	}
	return ms
}

func (r *recorder) count(room string) int { return len(r.messages(room)) }

// rooms returns the rooms r received calls for.
func (r *recorder) rooms() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rooms []string
	for _, e := range r.events {
		if !slices.Contains(rooms, e.room) {
			rooms = append(rooms, e.room)
		}
	}
	return rooms
}

// waitCount waits until r has received at least n messages of room.
func (r *recorder) waitCount(t *testing.T, room string, n int) {
	t.Helper()
	if !eventually(t, waitFor, func() bool { return r.count(room) >= n }) {
		t.Fatalf("handler %s received %d messages of %q within %v, want %d (offsets %v)", r.name, r.count(room), room, waitFor, n, offsets(r.messages(room)))
	}
}

// waitOffset waits until r has received the message of room at pos.
func (r *recorder) waitOffset(t *testing.T, room string, pos broker.Position) {
	t.Helper()
	has := func() bool {
		for _, m := range r.messages(room) {
			if m.Position() == pos {
				return true
			}
		}
		return false
	}
	if !eventually(t, waitFor, has) {
		t.Fatalf("handler %s did not receive %q at %s/%d within %v; it received %v", r.name, room, pos.Epoch, pos.Offset, waitFor, r.roomEvents(room))
	}
}

// eventually polls cond until it holds or timeout passes, and reports
// whether it held.
func eventually(t *testing.T, timeout time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// publish publishes p to room and fails the test on error.
func publish(t *testing.T, b broker.Broker, room string, p broker.Publication) broker.Position {
	t.Helper()
	pos, err := b.Publish(t.Context(), room, p)
	if err != nil {
		t.Fatalf("Publish(%q, %s) error: %v", room, p.Data, err)
	}
	return pos
}

// publishN publishes n messages with data numbered from 1 to room and
// returns their positions.
func publishN(t *testing.T, b broker.Broker, room string, n int) []broker.Position {
	t.Helper()
	ps := make([]broker.Position, n)
	for i := range n {
		ps[i] = publish(t, b, room, broker.Publication{From: "alice", Origin: "s_1", Data: numbered(i + 1)})
	}
	return ps
}

// numbered returns the data of message n in publishN.
func numbered(n int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)) }

func position(t *testing.T, b broker.Broker, room string) broker.Position {
	t.Helper()
	pos, err := b.Position(t.Context(), room)
	if err != nil {
		t.Fatalf("Position(%q) error: %v", room, err)
	}
	return pos
}

func history(t *testing.T, b broker.Broker, room string, q broker.HistoryQuery) broker.History {
	t.Helper()
	h, err := b.History(t.Context(), room, q)
	if err != nil {
		t.Fatalf("History(%q, %+v) error: %v", room, q, err)
	}
	return h
}

func subscribe(t *testing.T, b broker.Broker, h broker.Handler, rooms ...string) {
	t.Helper()
	if err := b.Subscribe(t.Context(), h, rooms...); err != nil {
		t.Fatalf("Subscribe(%q) error: %v", rooms, err)
	}
}

func unsubscribe(t *testing.T, b broker.Broker, h broker.Handler, rooms ...string) {
	t.Helper()
	if err := b.Unsubscribe(t.Context(), h, rooms...); err != nil {
		t.Fatalf("Unsubscribe(%q) error: %v", rooms, err)
	}
}

// offsets returns the offsets of ms.
func offsets(ms []*broker.Message) []uint64 {
	os := make([]uint64, len(ms))
	for i, m := range ms {
		os[i] = m.Offset
	}
	return os
}

// span returns the offsets from..to (empty if to < from).
func span(from, to uint64) []uint64 {
	var os []uint64
	for o := from; o <= to; o++ {
		os = append(os, o)
	}
	return os
}

// showOffsets prints offsets compactly for failure messages.
func showOffsets(os []uint64) string {
	if len(os) > 12 {
		return fmt.Sprintf("%d offsets %v ... %v", len(os), os[:6], os[len(os)-6:])
	}
	return fmt.Sprint(os)
}

// sameMessage reports how got differs from want, or "" if it does not.
func sameMessage(got, want *broker.Message) string {
	var diffs []string
	if got.Room != want.Room {
		diffs = append(diffs, fmt.Sprintf("Room %q, want %q", got.Room, want.Room))
	}
	if got.Position() != want.Position() {
		diffs = append(diffs, fmt.Sprintf("position %s/%d, want %s/%d", got.Epoch, got.Offset, want.Epoch, want.Offset))
	}
	if got.Time != want.Time {
		diffs = append(diffs, fmt.Sprintf("Time %d, want %d", got.Time, want.Time))
	}
	if got.From != want.From {
		diffs = append(diffs, fmt.Sprintf("From %q, want %q", got.From, want.From))
	}
	if got.Origin != want.Origin {
		diffs = append(diffs, fmt.Sprintf("Origin %q, want %q", got.Origin, want.Origin))
	}
	if string(got.Data) != string(want.Data) {
		diffs = append(diffs, fmt.Sprintf("Data %s, want %s", got.Data, want.Data))
	}
	return strings.Join(diffs, "; ")
}

package memory

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/broker"
)

// payload returns n bytes of JSON: a string.
func payload(n int, fill byte) json.RawMessage {
	return json.RawMessage(`"` + string(bytes.Repeat([]byte{fill}, n-2)) + `"`)
}

// heldBytes adds up, room by room, what the histories hold: the broker's own
// counter must agree with it.
func (b *Broker) heldBytes() int64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var n int64
	for _, r := range b.rooms {
		r.mu.Lock()
		for i := range r.history.len() {
			n += MessageBytes(r.history.at(i).m)
		}
		r.mu.Unlock()
	}
	return n
}

// The scenario: 64 KB messages across rotating rooms. Without a
// budget, five minutes of them piled up hundreds of MB; with one, the history
// of all rooms together stays within it, and the newest messages are the ones
// kept.
func TestBroker_HistoryBudgetAcrossRotatingRooms(t *testing.T) {
	const budget = 2 << 20
	b := New(Config{HistoryMaxBytes: budget})
	msg := payload(64<<10, 'x')
	for i := range 400 { // 25 MiB in all
		room := fmt.Sprintf("room-%d", i%37)
		mustPublish(t, b, room, broker.Publication{Data: msg})
		if got := b.HistoryBytes(); got > budget {
			t.Fatalf("after %d publishes history holds %d bytes, budget %d", i+1, got, budget)
		}
	}
	if held, counted := b.heldBytes(), b.HistoryBytes(); held != counted {
		t.Fatalf("rooms hold %d bytes, the counter says %d", held, counted)
	}
	// Nearly the whole budget is in use: eviction drops only what it must.
	if got, min := b.HistoryBytes(), int64(budget-MessageBytes(&broker.Message{Data: msg, Room: "room-00", Epoch: "xxxxxxxxxxxx"})); got < min {
		t.Errorf("history holds %d bytes, want at least %d: eviction dropped more than it had to", got, min)
	}
	// The last publish's room still has it; the first rooms' oldest
	// messages went first.
	h, err := b.History(t.Context(), "room-28", broker.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(h.Messages); n == 0 || h.Messages[n-1].Offset != h.Offset {
		t.Fatalf("the newest room lost its newest message: %d messages, position %v", n, h.Position)
	}
}

// An evicted message is trimmed like --history-size trims: the room keeps
// its epoch and offset, and its history starts later, so a recovery from
// before the trim cannot be continuous (the hub answers recovered: false).
func TestBroker_EvictionIsATrim(t *testing.T) {
	msg := payload(10<<10, 'y')
	size := MessageBytes(&broker.Message{Room: "a", Epoch: "xxxxxxxxxxxx", Data: msg})
	b := New(Config{HistoryMaxBytes: 5 * size})
	var first broker.Position
	for i := range 3 {
		pos := mustPublish(t, b, "a", broker.Publication{Data: msg})
		if i == 0 {
			first = pos
		}
	}
	for range 4 {
		mustPublish(t, b, "b", broker.Publication{Data: msg})
	}
	// Seven messages, room for five: a's two oldest went.
	h, err := b.History(t.Context(), "a", broker.HistoryQuery{After: 0})
	if err != nil {
		t.Fatal(err)
	}
	if h.Epoch != first.Epoch || h.Offset != 3 {
		t.Fatalf("room a is at %v, want epoch %s offset 3", h.Position, first.Epoch)
	}
	if len(h.Messages) != 1 || h.Messages[0].Offset != 3 {
		t.Fatalf("room a holds %v, want only offset 3", offsetsOf(h.Messages))
	}
	// A recovery from offset 0 finds a history that does not continue it.
	if h.Messages[0].Offset == first.Offset {
		t.Fatal("the evicted first message is still served")
	}
	hb, _ := b.History(t.Context(), "b", broker.HistoryQuery{})
	if got := offsetsOf(hb.Messages); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("room b holds %v, want [1 2 3 4]", got)
	}
	// Publishing continues at the next offset: no new epoch, no hole.
	if pos := mustPublish(t, b, "a", broker.Publication{Data: msg}); pos.Epoch != first.Epoch || pos.Offset != 4 {
		t.Fatalf("next publish to a at %v, want %s/4", pos, first.Epoch)
	}
}

func offsetsOf(ms []*broker.Message) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Offset)
	}
	return out
}

// Concurrent publishers to many rooms and history-size trims keep the
// counter exact and within the budget once they are done.
func TestBroker_HistoryBudgetUnderConcurrency(t *testing.T) {
	const budget = 1 << 20
	b := New(Config{HistoryMaxBytes: budget, HistorySize: 5})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				mustPublish(t, b, fmt.Sprintf("r%d", (w*7+i)%23), broker.Publication{Data: payload(1+(i*97)%20000+2, 'z')})
			}
		})
	}
	wg.Wait()
	if held, counted := b.heldBytes(), b.HistoryBytes(); held != counted || counted > budget {
		t.Fatalf("rooms hold %d bytes, counter %d, budget %d", held, counted, budget)
	}
}

package brokertest

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

func testOffsetsAreContiguous(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	ps := publishN(t, b, "general", 20)
	if ps[0].Epoch == "" || ps[0].Offset != 1 {
		t.Fatalf("first Publish to a new room = %+v, want offset 1 in a non-empty epoch", ps[0])
	}
	for i, p := range ps {
		want := broker.Position{Epoch: ps[0].Epoch, Offset: uint64(i + 1)}
		if p != want {
			t.Errorf("Publish #%d = %+v, want %+v", i+1, p, want)
		}
	}
	if got, want := position(t, b, "general"), ps[len(ps)-1]; got != want {
		t.Errorf("Position after 20 publishes = %+v, want %+v", got, want)
	}
}

func testPositionOfNewRoom(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	p0 := position(t, b, "general")
	if p0.Epoch == "" || p0.Offset != 0 {
		t.Fatalf("Position of a new room = %+v, want offset 0 in a non-empty epoch", p0)
	}
	if got := position(t, b, "general"); got != p0 {
		t.Errorf("second Position = %+v, want %+v", got, p0)
	}
	if got, want := publish(t, b, "general", broker.Publication{Data: numbered(1)}), (broker.Position{Epoch: p0.Epoch, Offset: 1}); got != want {
		t.Errorf("Publish after Position = %+v, want %+v", got, want)
	}
	if other := position(t, b, "other"); other.Offset != 0 || other.Epoch == "" {
		t.Errorf("Position of another new room = %+v, want offset 0 in a non-empty epoch", other)
	}
}

func testConcurrentPublishers(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	const workers, each = 8, 100
	const total = workers * each
	b := open(t, Config{HistorySize: total})
	h := newRecorder(t, "h")
	subscribe(t, b, h, "general")

	start := time.Now()
	sent := make(map[uint64]broker.Publication) // by offset
	var epochs sync.Map
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var last uint64
			for i := range each {
				p := broker.Publication{
					From:   fmt.Sprintf("user-%d", w),
					Origin: fmt.Sprintf("s_%d_%d", w, i),
					Data:   json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)),
				}
				pos, err := b.Publish(t.Context(), "general", p)
				if err != nil {
					t.Errorf("worker %d: Publish #%d error: %v", w, i, err)
					return
				}
				if pos.Offset <= last {
					t.Errorf("worker %d: Publish #%d got offset %d after %d, want a larger one", w, i, pos.Offset, last)
				}
				last = pos.Offset
				epochs.Store(pos.Epoch, true)
				mu.Lock()
				if prev, dup := sent[pos.Offset]; dup {
					t.Errorf("offset %d assigned twice: to %s and %s", pos.Offset, prev.Data, p.Data)
				}
				sent[pos.Offset] = p
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	end := time.Now()
	if t.Failed() {
		t.FailNow()
	}

	var epoch string
	n := 0
	epochs.Range(func(k, _ any) bool { epoch = k.(string); n++; return true })
	if n != 1 {
		t.Fatalf("publishes got %d epochs, want 1", n)
	}
	for o := uint64(1); o <= total; o++ {
		if _, ok := sent[o]; !ok {
			t.Errorf("offset %d was never assigned", o)
		}
	}
	if len(sent) != total {
		t.Fatalf("%d offsets assigned, want %d", len(sent), total)
	}

	h.waitCount(t, "general", total)
	got := h.messages("general")
	if gotOffsets := offsets(got); !slices.Equal(gotOffsets, span(1, total)) {
		t.Fatalf("handler received %s, want 1..%d in order", showOffsets(gotOffsets), total)
	}
	hist := history(t, b, "general", broker.HistoryQuery{})
	if len(hist.Messages) != total {
		t.Fatalf("History holds %d messages, want %d", len(hist.Messages), total)
	}
	lo, hi := start.Add(-time.Minute).UnixMilli(), end.Add(time.Minute).UnixMilli()
	for i, m := range got {
		p := sent[m.Offset]
		want := &broker.Message{Room: "general", Epoch: epoch, Offset: m.Offset, Time: hist.Messages[i].Time, From: p.From, Origin: p.Origin, Data: p.Data}
		if d := sameMessage(m, want); d != "" {
			t.Errorf("delivered message %d: %s", m.Offset, d)
		}
		if d := sameMessage(hist.Messages[i], want); d != "" {
			t.Errorf("history message %d: %s", m.Offset, d)
		}
		if m.Time < lo || m.Time > hi {
			t.Errorf("message %d: Time %d, want a Unix millisecond time near %d", m.Offset, m.Time, start.UnixMilli())
		}
	}
}

func testSubscribeIsACleanCut(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	publishN(t, b, "general", 5)
	h := newRecorder(t, "h")
	subscribe(t, b, h, "general")
	ps := publishN(t, b, "general", 5)
	h.waitOffset(t, "general", ps[4])
	if got := offsets(h.messages("general")); !slices.Equal(got, span(6, 10)) {
		t.Errorf("handler subscribed after offset 5 received %v, want %v", got, span(6, 10))
	}
}

func testSubscribeDuringPublishing(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	const workers, each = 4, 200
	b := open(t, Config{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if _, err := b.Publish(t.Context(), "general", broker.Publication{Data: json.RawMessage(fmt.Sprintf(`[%d,%d]`, w, i))}); err != nil {
					t.Errorf("worker %d: Publish #%d error: %v", w, i, err)
					return
				}
			}
		})
	}
	eventually(t, waitFor, func() bool {
		p, err := b.Position(t.Context(), "general")
		return err != nil || p.Offset >= 50
	})
	before := position(t, b, "general")
	h := newRecorder(t, "h")
	subscribe(t, b, h, "general")
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// This one is surely published after Subscribe returned.
	last := publish(t, b, "general", broker.Publication{Data: json.RawMessage(`"last"`)})
	if last.Offset != workers*each+1 {
		t.Fatalf("last Publish got offset %d, want %d", last.Offset, workers*each+1)
	}
	h.waitOffset(t, "general", last)
	got := offsets(h.messages("general"))
	if got[0] <= before.Offset {
		t.Errorf("handler received offset %d, published before Subscribe (offset was %d)", got[0], before.Offset)
	}
	if want := span(got[0], last.Offset); !slices.Equal(got, want) {
		t.Errorf("handler received %s, want the contiguous %d..%d", showOffsets(got), got[0], last.Offset)
	}
}

func testTwoHandlers(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	h1, h2 := newRecorder(t, "h1"), newRecorder(t, "h2")
	subscribe(t, b, h1, "general")
	subscribe(t, b, h2, "general")
	ps := publishN(t, b, "general", 50)
	h1.waitCount(t, "general", 50)
	h2.waitCount(t, "general", 50)
	for _, h := range []*recorder{h1, h2} {
		got := h.messages("general")
		if len(got) != 50 {
			t.Errorf("handler %s received %d messages, want 50", h.name, len(got))
			continue
		}
		for i, m := range got {
			if m.Position() != ps[i] || string(m.Data) != string(numbered(i+1)) {
				t.Errorf("handler %s message #%d = %s/%d %s, want %s/%d %s", h.name, i+1, m.Epoch, m.Offset, m.Data, ps[i].Epoch, ps[i].Offset, numbered(i+1))
			}
		}
	}
}

func testUnsubscribe(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	h, w := newRecorder(t, "h"), newRecorder(t, "witness")
	subscribe(t, b, h, "general")
	subscribe(t, b, w, "general")
	publishN(t, b, "general", 3)
	h.waitCount(t, "general", 3)

	unsubscribe(t, b, h, "general")
	h.forget("general")
	ps := publishN(t, b, "general", 3)
	w.waitOffset(t, "general", ps[2])
	if got := offsets(h.messages("general")); !slices.Equal(got, span(1, 3)) {
		t.Errorf("unsubscribed handler received %v, want %v", got, span(1, 3))
	}

	// Unsubscribing what is not subscribed is a no-op.
	unsubscribe(t, b, h, "general")
	unsubscribe(t, b, h, "never-used")
	unsubscribe(t, b, h)

	subscribe(t, b, h, "general")
	last := publish(t, b, "general", broker.Publication{Data: numbered(7)})
	h.waitOffset(t, "general", last)
	if got, want := offsets(h.messages("general")), []uint64{1, 2, 3, 7}; !slices.Equal(got, want) {
		t.Errorf("resubscribed handler received %v, want %v", got, want)
	}
}

func testOtherRooms(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	h, w := newRecorder(t, "h"), newRecorder(t, "witness")
	subscribe(t, b, h, "a", "b")
	subscribe(t, b, w, "c")
	var lastC broker.Position
	for i := range 5 {
		publish(t, b, "a", broker.Publication{Data: numbered(i)})
		lastC = publish(t, b, "c", broker.Publication{Data: numbered(i)})
		publish(t, b, "b", broker.Publication{Data: numbered(i)})
	}
	h.waitCount(t, "a", 5)
	h.waitCount(t, "b", 5)
	w.waitOffset(t, "c", lastC)
	for _, room := range []string{"a", "b"} {
		ms := h.messages(room)
		if got := offsets(ms); !slices.Equal(got, span(1, 5)) {
			t.Errorf("handler received %v of %q, want %v", got, room, span(1, 5))
		}
		for _, m := range ms {
			if m.Room != room {
				t.Errorf("message %d of %q has Room %q", m.Offset, room, m.Room)
			}
		}
	}
	// Rooms have no order between them (on a cluster, a and b may come
	// through different connections): compare the sets.
	if got := h.rooms(); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"a", "b"}) {
		t.Errorf("handler subscribed to a and b received calls for %q", got)
	}
	if got := w.rooms(); !slices.Equal(got, []string{"c"}) {
		t.Errorf("handler subscribed to c received calls for %q", got)
	}
}

func testSubscribeTwice(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	h, w := newRecorder(t, "h"), newRecorder(t, "witness")
	subscribe(t, b, h, "general")
	subscribe(t, b, h, "general")
	subscribe(t, b, h, "general", "general")
	subscribe(t, b, w, "general")
	ps := publishN(t, b, "general", 3)
	w.waitOffset(t, "general", ps[2])
	h.waitOffset(t, "general", ps[2])
	if got := offsets(h.messages("general")); !slices.Equal(got, span(1, 3)) {
		t.Errorf("handler subscribed three times received %v, want %v", got, span(1, 3))
	}

	// One Unsubscribe undoes them all.
	unsubscribe(t, b, h, "general")
	last := publish(t, b, "general", broker.Publication{Data: numbered(4)})
	w.waitOffset(t, "general", last)
	if got := h.count("general"); got != 3 {
		t.Errorf("after one Unsubscribe, handler received %d messages, want 3", got)
	}
}

func testEpochChangeResets(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{HistoryTTL: 500 * time.Millisecond})
	h := newRecorder(t, "h")
	subscribe(t, b, h, "general")
	ps := publishN(t, b, "general", 2)
	h.waitOffset(t, "general", ps[1])
	e1 := ps[0].Epoch

	var p2 broker.Position
	if !eventually(t, waitFor, func() bool { p2 = position(t, b, "general"); return p2.Epoch != e1 }) {
		t.Fatalf("Position still in epoch %q %v after the history TTL", e1, waitFor)
	}
	publish(t, b, "general", broker.Publication{Data: numbered(3)})
	last := publish(t, b, "general", broker.Publication{Data: numbered(4)})
	if want := (broker.Position{Epoch: p2.Epoch, Offset: 2}); last != want {
		t.Fatalf("second Publish in the new epoch = %+v, want %+v", last, want)
	}
	h.waitOffset(t, "general", last)

	// Want: deliver e1/1, deliver e1/2, reset to e2/k, deliver e2/k+1..2.
	es := h.roomEvents("general")
	if len(es) < 3 || es[0].msg == nil || es[0].msg.Position() != ps[0] || es[1].msg == nil || es[1].msg.Position() != ps[1] {
		t.Fatalf("handler received %v, want the two messages of the first epoch first", es)
	}
	reset := es[2]
	if reset.msg != nil || reset.reset.Epoch != p2.Epoch || reset.reset.Offset > 1 {
		t.Fatalf("handler received %v after the first epoch, want a reset to epoch %q at offset 0 or 1", reset, p2.Epoch)
	}
	var got []uint64
	for _, e := range es[3:] {
		if e.msg == nil || e.msg.Epoch != p2.Epoch {
			t.Fatalf("handler received %v after the reset, want only messages of epoch %q", es, p2.Epoch)
		}
		got = append(got, e.msg.Offset)
	}
	if want := span(reset.reset.Offset+1, 2); !slices.Equal(got, want) {
		t.Errorf("after reset to offset %d the handler received %v, want %v", reset.reset.Offset, got, want)
	}
}

func testDataRoundTrips(t *testing.T, open func(*testing.T, Config) broker.Broker) {
	b := open(t, Config{})
	cases := []struct{ name, data string }{
		{"Object", `{"text":"hi","n":[1,2.5,-3e7],"ok":true,"nested":{"a":null,"b":{}}}`},
		{"UnicodeString", `"héllo, 世界 🎉 — ñ"`},
		{"EscapedString", `"line\nbreak \"quoted\" back\\slash \u0000 \u00e9 \ud83c\udf89"`},
		{"HTMLCharacters", `{"html":"<b>&amp;</b>","sep":"\u2028 ` + "\u2029" + `"}`},
		{"Integer", `42`},
		{"BigNumber", `12345678901234567890123`},
		{"Float", `-0.000125e-10`},
		{"Null", `null`},
		{"True", `true`},
		{"EmptyArray", `[]`},
		{"EmptyString", `""`},
	}
	h := newRecorder(t, "h")
	subscribe(t, b, h, "data")
	var last broker.Position
	for _, c := range cases {
		last = publish(t, b, "data", broker.Publication{From: "ünï", Origin: "s_🎉", Data: json.RawMessage(c.data)})
	}
	h.waitOffset(t, "data", last)
	got := h.messages("data")
	hist := history(t, b, "data", broker.HistoryQuery{})
	if len(got) != len(cases) || len(hist.Messages) != len(cases) {
		t.Fatalf("handler received %d messages and history holds %d, want %d", len(got), len(hist.Messages), len(cases))
	}
	for i, c := range cases {
		if string(got[i].Data) != c.data {
			t.Errorf("%s: delivered Data %s, want %s", c.name, got[i].Data, c.data)
		}
		if string(hist.Messages[i].Data) != c.data {
			t.Errorf("%s: history Data %s, want %s", c.name, hist.Messages[i].Data, c.data)
		}
		if got[i].From != "ünï" || got[i].Origin != "s_🎉" {
			t.Errorf("%s: From, Origin = %q, %q, want %q, %q", c.name, got[i].From, got[i].Origin, "ünï", "s_🎉")
		}
	}
}

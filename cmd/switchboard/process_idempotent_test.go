package main

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProcess_IdempotentPublish checks PROTOCOL.md guarantee 6 across
// instances: a publish repeated with the same key, through the API of two
// instances, one after the other and concurrently, and by clients on two
// instances, is stored and delivered once, and every repeat answers the
// first publish's position.
func TestProcess_IdempotentPublish(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	rs := redistest.Start(t)
	a := startInstance(t, "A", redisFlags(rs)...)
	b := startInstance(t, "B", redisFlags(rs)...)
	const room = "r"
	ma, mb := connect(t, a, "m-A"), connect(t, b, "m-B")
	ma.join(t, room, nil)
	mb.join(t, room, nil)

	// The same API publish, repeated on A and B in turn.
	first := a.mustPublish(t, room, payload{P: "key-1", N: 1}, "", "key-1")
	for i := range 6 {
		in := []*instance{a, b}[i%2]
		if got := in.mustPublish(t, room, payload{P: "key-1", N: 1}, "", "key-1"); got != first {
			t.Errorf("repeat %d of key-1 on %s answered %+v, want the first position %+v", i, in.name, got, first)
		}
	}

	// The same API publish sent at once by eight callers on A and B.
	answers := make([]publishResult, 8)
	errs := make(chan error, len(answers))
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			res, err := []*instance{a, b}[i%2].apiPublish(room, payload{P: "key-2", N: 1}, "", "key-2")
			answers[i] = res
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	if err := errorsOf(errs); err != nil {
		t.Fatal(err)
	}
	for i, res := range answers {
		if res.Status != http.StatusOK || res.Pos != answers[0].Pos {
			t.Errorf("concurrent key-2 publish %d answered %d %+v, want 200 %+v like the others", i, res.Status, res.Pos, answers[0].Pos)
		}
	}

	// Clients on A and B publish with the same key: B's repeat is acked
	// with A's position and not published again.
	frame := wstest.Frame(protocol.TypePublish, "id", "k3", "room", room, "key", "key-3", "data", payload{P: "key-3", N: 1})
	ackA := ma.request(t, "k3", frame)
	ackB := mb.request(t, "k3", frame)
	if ackA.Type != protocol.TypeAck || ackB.Type != protocol.TypeAck || ackA.Offset != ackB.Offset || ackA.Epoch != ackB.Epoch {
		t.Errorf("key-3 published by clients on A and B: %s and %s, want acks of one position", wstest.Describe(ackA), wstest.Describe(ackB))
	}

	// A direct message sent twice with one key, through A then B.
	dm := a.mustPublish(t, "@m-B", payload{P: "dm", N: 1}, "", "key-4")
	if got := b.mustPublish(t, "@m-B", payload{P: "dm", N: 1}, "", "key-4"); got != dm {
		t.Errorf("repeated send answered %+v, want %+v", got, dm)
	}

	// Markers without a key follow right after the single copies.
	end := b.mustPublish(t, room, payload{P: "end", N: 1}, "", "")
	if end.Offset != 4 {
		t.Errorf("the first publish after three keyed ones got offset %d, want 4: a repeat was stored", end.Offset)
	}
	dmEnd := a.mustPublish(t, "@m-B", payload{P: "dm-end", N: 1}, "", "")
	if dmEnd.Offset != dm.Offset+1 {
		t.Errorf("send after the keyed one got offset %d, want %d", dmEnd.Offset, dm.Offset+1)
	}

	for _, cl := range []*client{ma, mb} {
		if err := waitReached(cl.cur(), waitLong, cl.user, room, end.Epoch, end.Offset); err != nil {
			t.Fatal(err)
		}
		s := checkStream(cl.frames(), room, nil, streamRules{})
		want := map[string]int{"key-1": 1, "key-2": 1, "key-3": 1, "end": 1}
		if cl == ma {
			delete(want, "key-3") // its own publish: only the ack
		}
		s.checkPayloads(want)
		if err := s.err(cl.user); err != nil {
			t.Error(err)
		}
	}
	if err := waitReached(mb.cur(), waitLong, "m-B", "@m-B", dmEnd.Epoch, dmEnd.Offset); err != nil {
		t.Fatal(err)
	}
	s := checkStream(mb.frames(), "@m-B", nil, streamRules{})
	s.checkPayloads(map[string]int{"dm": 1, "dm-end": 1})
	if err := s.err("m-B"); err != nil {
		t.Error(err)
	}

	var hist struct {
		Messages []protocol.ServerFrame `json:"messages"`
	}
	a.getJSON(t, "/api/rooms/"+room+"/history", &hist)
	var got []string
	for _, m := range hist.Messages {
		p, err := decodePayload(m)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d:%s", m.Offset, p.P))
	}
	if want := "[1:key-1 2:key-2 3:key-3 4:end]"; fmt.Sprint(got) != want {
		t.Errorf("history of %s = %v, want %s", room, got, want)
	}
}

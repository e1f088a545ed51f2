package bench

import (
	"encoding/json"
	"testing"
)

// pendingConn is a connection without a socket that has publish 7 of step
// 0 in flight, to a room with 3 receivers.
func pendingConn() (*conn, *worker) {
	w := newWorker(workerSetup{Steps: 1})
	c := &conn{w: w, receivers: 3, pending: map[uint64]int{7: 0}}
	return c, w
}

func TestAdapters_SettlePublishes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		proto     adapter
		line      string
		wantAcked int64
		wantErrs  int64
		wantNote  string
	}{
		{name: "SwitchboardAck", proto: switchboardAdapter{}, line: `{"type":"ack","id":7,"room":"r","epoch":"e","offset":3}`, wantAcked: 1},
		{name: "SwitchboardError", proto: switchboardAdapter{}, line: `{"type":"error","id":7,"code":"rate_limited","message":"slow down"}`, wantErrs: 1, wantNote: "error rate_limited"},
		{name: "SwitchboardOtherID", proto: switchboardAdapter{}, line: `{"type":"ack","id":8}`},
		{name: "SwitchboardReset", proto: switchboardAdapter{}, line: `{"type":"reset","room":"r","epoch":"e2","offset":0}`, wantNote: "reset"},
		{name: "CentrifugoPublishReply", proto: centrifugoAdapter{}, line: `{"id":7,"publish":{}}`, wantAcked: 1},
		{name: "CentrifugoError", proto: centrifugoAdapter{}, line: `{"id":7,"error":{"code":103,"message":"permission denied"}}`, wantErrs: 1, wantNote: "error 103"},
		{name: "CentrifugoDisconnect", proto: centrifugoAdapter{}, line: `{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}`, wantNote: "disconnect 3001"},
		{name: "CentrifugoPingWithoutPong", proto: centrifugoAdapter{}, line: `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, w := pendingConn()
			tt.proto.control(c, []byte(tt.line))
			st := w.steps[0]
			if st.acked.Load() != tt.wantAcked || st.pubErrors.Load() != tt.wantErrs {
				t.Errorf("acked %d errors %d, want %d and %d", st.acked.Load(), st.pubErrors.Load(), tt.wantAcked, tt.wantErrs)
			}
			if want := tt.wantAcked * 3; st.expected.Load() != want {
				t.Errorf("expected deliveries %d, want %d", st.expected.Load(), want)
			}
			if tt.wantNote != "" && w.notes[tt.wantNote] != 1 {
				t.Errorf("notes %v, want %q once", w.notes, tt.wantNote)
			}
		})
	}
}

func TestAdapters_PublishFrames(t *testing.T) {
	t.Parallel()
	data := appendPayload(nil, 1, 2, 3, 4, 80)
	var sb struct {
		Type string `json:"type"`
		ID   uint64 `json:"id"`
		Room string `json:"room"`
		Data string `json:"data"`
	}
	if err := json.Unmarshal(switchboardAdapter{}.appendPublish(nil, 9, "fan-1", data), &sb); err != nil {
		t.Fatal(err)
	}
	if sb.Type != "publish" || sb.ID != 9 || sb.Room != "fan-1" || len(sb.Data) != 78 {
		t.Errorf("switchboard publish frame = %+v", sb)
	}
	var cf struct {
		ID      uint32 `json:"id"`
		Publish struct {
			Channel string `json:"channel"`
			Data    string `json:"data"`
		} `json:"publish"`
	}
	if err := json.Unmarshal(centrifugoAdapter{}.appendPublish(nil, 9, "fan-1", data), &cf); err != nil {
		t.Fatal(err)
	}
	if cf.ID != 9 || cf.Publish.Channel != "bench:fan-1" || len(cf.Publish.Data) != 78 {
		t.Errorf("centrifugo publish frame = %+v", cf)
	}
	if got := centrifugoChannel("@u1-2"); got != "inbox:#u1-2" {
		t.Errorf(`centrifugoChannel("@u1-2") = %q`, got)
	}
}

func TestConn_CountsDeliveries(t *testing.T) {
	t.Parallel()
	w := newWorker(workerSetup{Steps: 2})
	c := &conn{idx: 5, w: w, proto: switchboardAdapter{}}
	msg := func(step int, seq int64, source int) string {
		return `{"type":"message","room":"r","epoch":"e","offset":1,"data":` + string(appendPayload(nil, step, seq, 1, source, 70)) + `,"ts":1}`
	}
	// A batched frame: three messages (one a duplicate), one of our own
	// (Centrifugo echoes them) and one of an unknown step.
	frame := msg(0, 1, -1) + "\n" + msg(0, 2, -1) + "\n" + msg(0, 2, -1) + "\n" + msg(1, 1, 5) + "\n" + msg(9, 1, -1)
	c.handleFrame([]byte(frame), 2_000_000)
	s0, s1 := w.steps[0], w.steps[1]
	if s0.received.Load() != 2 || s0.dups.Load() != 1 || s1.self.Load() != 1 || w.stray.Load() != 1 || w.received.Load() != 2 {
		t.Errorf("received %d dups %d self %d stray %d total %d; want 2, 1, 1, 1, 2",
			s0.received.Load(), s0.dups.Load(), s1.self.Load(), w.stray.Load(), w.received.Load())
	}
	if n := s0.lat.merged().TotalCount(); n != 2 {
		t.Errorf("%d latencies recorded, want 2", n)
	}
}

package bench

import (
	"strings"
	"testing"
)

func TestPayload_RoundTrip(t *testing.T) {
	t.Parallel()
	for _, size := range []int{minPayload, 100, 1000} {
		p := appendPayload(nil, 3, 123456, 1764300000123456789, -7, size)
		if len(p) != size {
			t.Errorf("payload of size %d is %d bytes: %s", size, len(p), p)
		}
		frame := []byte(`{"type":"message","room":"r","epoch":"e","offset":9,"data":` + string(p) + `,"ts":1}`)
		s, _, ok := nextSample(frame)
		if !ok || s != (sample{step: 3, seq: 123456, sent: 1764300000123456789, source: -7}) {
			t.Errorf("nextSample = %+v, %v", s, ok)
		}
	}
}

func TestNextSample_SeveralAndMalformed(t *testing.T) {
	t.Parallel()
	a := string(appendPayload(nil, 0, 1, 10, 2, 70))
	b := string(appendPayload(nil, 1, 2, 20, 3, 70))
	frame := []byte(`"~Bjunk" ` + a + "\n" + `"~B1.2" ` + b)
	var got []sample
	rest := frame
	for {
		s, r, ok := nextSample(rest)
		if !ok {
			break
		}
		got = append(got, s)
		rest = r
	}
	if len(got) != 2 || got[0].seq != 1 || got[1].seq != 2 {
		t.Errorf("samples = %+v, want seq 1 and 2", got)
	}
	if _, _, ok := nextSample([]byte(strings.Repeat("x", 100))); ok {
		t.Error("found a sample in padding")
	}
}

func TestSeenWindow(t *testing.T) {
	t.Parallel()
	var w seenWindow
	steps := []struct {
		seq     int64
		wantDup bool
	}{
		{5, false}, {6, false}, {6, true}, {4, false}, {4, true}, {8, false}, {7, false}, {7, true},
		{5, true},
		{5 + windowSeqs + 10, false}, // jumps: the old window is forgotten
		{5, false},                   // too old to tell: taken as new
		{5 + windowSeqs + 10, true},
		{5 + windowSeqs + 9, false},
	}
	for i, s := range steps {
		if got := w.add(s.seq); got != s.wantDup {
			t.Errorf("step %d: add(%d) = %v, want %v", i, s.seq, got, s.wantDup)
		}
	}
}

func TestSeenWindow_InOrderStream(t *testing.T) {
	t.Parallel()
	var w seenWindow
	for seq := range int64(3 * windowSeqs) {
		if w.add(seq) {
			t.Fatalf("add(%d) reported a duplicate in an in-order stream", seq)
		}
		if seq > 0 && !w.add(seq-1) {
			t.Fatalf("add(%d) again was not a duplicate", seq-1)
		}
	}
}

func TestSampleOf_DecodedData(t *testing.T) {
	t.Parallel()
	p := string(appendPayload(nil, 2, 77, 1764300000123456789, -1, 100))
	data := p[1 : len(p)-1] // the JSON string's value
	s, ok := sampleOf(data)
	if !ok || s != (sample{step: 2, seq: 77, sent: 1764300000123456789, source: -1}) {
		t.Errorf("sampleOf(%q) = %+v, %v", data, s, ok)
	}
	for _, bad := range []string{"", "hello", "~B1.2", "~Bx.1.2.3."} {
		if s, ok := sampleOf(bad); ok {
			t.Errorf("sampleOf(%q) = %+v, want not a payload", bad, s)
		}
	}
}

func TestMessageData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		obj  map[string]any
		want any
	}{
		{name: "Switchboard", obj: map[string]any{"type": "message", "data": "x"}, want: "x"},
		{name: "SwitchboardAck", obj: map[string]any{"type": "ack", "data": "x"}, want: nil},
		{name: "Centrifugo", obj: map[string]any{"push": map[string]any{"channel": "c", "pub": map[string]any{"data": "y"}}}, want: "y"},
		{name: "CentrifugoReply", obj: map[string]any{"id": 3.0, "publish": map[string]any{}}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := messageData(tt.obj); got != tt.want {
				t.Errorf("messageData = %v, want %v", got, tt.want)
			}
		})
	}
}

package transport

import (
	"bytes"
	"testing"
	"unsafe"
)

// TestAppendHeader checks the three payload length encodings of RFC 6455,
// section 5.2, at their boundaries.
func TestAppendHeader(t *testing.T) {
	tests := []struct {
		op   byte
		n    int
		want []byte
	}{
		{opText, 0, []byte{0x81, 0}},
		{opText, 125, []byte{0x81, 125}},
		{opText, 126, []byte{0x81, 126, 0, 126}},
		{opText, 65535, []byte{0x81, 126, 0xff, 0xff}},
		{opText, 65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{opClose, 2, []byte{0x88, 2}},
		{opPing, 0, []byte{0x89, 0}},
		{opPong, 3, []byte{0x8a, 3}},
	}
	for _, tt := range tests {
		if got := appendHeader(nil, tt.op, tt.n); !bytes.Equal(got, tt.want) {
			t.Errorf("appendHeader(%d, %d) = % x, want % x", tt.op, tt.n, got, tt.want)
		}
	}
}

// TestAppendData checks batching: frames joined by newlines, markers
// skipped, and a new WebSocket frame before maxBatchBytes is passed.
func TestAppendData(t *testing.T) {
	big := bytes.Repeat([]byte("x"), maxBatchBytes-2)
	frames := []Frame{{Data: []byte("a")}, {}, {Data: []byte("bc")}, {Data: big}, {}, {Data: []byte("d")}}

	var w wire
	w.appendData(frames, true)
	want := appendFrame(nil, opText, []byte("a\nbc"))
	want = appendFrame(want, opText, append(append([]byte(nil), big...), "\nd"...))
	if !bytes.Equal(w.buf, want) {
		t.Errorf("batch: got %d bytes, want %d", len(w.buf), len(want))
	}
	if w.frames != 2 || w.bytes != len("a\nbc")+len(big)+2 {
		t.Errorf("batch counts: %d frames, %d bytes", w.frames, w.bytes)
	}

	w.reset()
	w.appendData(frames, false)
	want = appendFrame(nil, opText, []byte("a"))
	want = appendFrame(want, opText, []byte("bc"))
	want = appendFrame(want, opText, big)
	want = appendFrame(want, opText, []byte("d"))
	if !bytes.Equal(w.buf, want) || w.frames != 4 {
		t.Errorf("no batch: got %d bytes in %d frames, want %d in 4", len(w.buf), w.frames, len(want))
	}

	w.reset()
	w.appendData([]Frame{{}, {}}, true)
	if len(w.buf) != 0 || w.frames != 0 {
		t.Errorf("markers only: wrote %d bytes", len(w.buf))
	}
}

// TestFlusherQueueCompacts: connections taken from the front of the ready
// queue are dropped when more are queued, so that a queue that never runs
// empty does not grow for ever, and the order is kept.
func TestFlusherQueueCompacts(t *testing.T) {
	f := &flusher{} // max 0: no worker starts, the test takes by hand
	ss := make([]*Conn, 5)
	for i := range ss {
		ss[i] = &Conn{}
	}
	f.schedule(ss[:4]...)
	clear(f.ready[:2]) // what a worker does when it takes two
	f.head = 2
	f.schedule(ss[4])
	if f.head != 0 || len(f.ready) != 3 {
		t.Fatalf("after taking 2 of 4 and adding 1: head %d, %d queued, want 0 and 3", f.head, len(f.ready))
	}
	for i, s := range f.ready {
		if s != ss[i+2] {
			t.Fatalf("queue[%d] is not the connection queued %d-th", i, i+2)
		}
	}
}

// TestConnSize keeps a Conn, which every connection has, within the
// allocator's 384-byte size class: past it the next class is 416 bytes
// and, in practice, 448. Keep byte-sized fields together when adding one.
func TestConnSize(t *testing.T) {
	if size := unsafe.Sizeof(Conn{}); size > 384 {
		t.Errorf("a Conn is %d bytes, more than the 384 of its size class", size)
	}
}

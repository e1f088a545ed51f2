package transport

import (
	"io"
	"net"
	"sync"
	"testing"
	"unicode/utf8"
)

// FuzzFrames feeds arbitrary bytes, cut at an arbitrary point, to a
// connection's frame parser: it never panics, never hands over a message
// larger than the limit or a text message that is not UTF-8, and hands
// over nothing once it has failed the connection.
func FuzzFrames(f *testing.F) {
	f.Add(rawFrame(finText, []byte("hello"), false), uint16(3))
	f.Add(append(rawFrame(text, []byte("frag"), false), rawFrame(finCont, []byte("ment"), false)...), uint16(7))
	f.Add(rawFrame(finPing, []byte("p"), false), uint16(1))
	f.Add(closeFrame(1000, "bye"), uint16(2))
	f.Add(frameWithLength(finText, 127, 1<<63), uint16(4))
	f.Add(frameWithLength(finText, 126, 5), uint16(0))
	f.Add(rawFrame(finText, []byte("\xff\xfe"), false), uint16(6))
	f.Add(rawFrame(finText|0x40, []byte("x"), false), uint16(1))
	f.Add(rawFrame(finText, []byte("unmasked"), true), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		const limit = 1 << 10
		srv, err := NewServer(Config{MaxMessageBytes: limit, Rate: 1000, Burst: 1000})
		if err != nil {
			t.Fatal(err)
		}
		server, peer := net.Pipe()
		go func() { _, _ = io.Copy(io.Discard, peer) }()
		h := &fuzzHandler{t: t, limit: limit}
		c := srv.Open(server, nil, h)
		at := int(cut) % (len(data) + 1)
		c.feed(append([]byte(nil), data[:at]...))
		c.feed(append([]byte(nil), data[at:]...))
		c.Abort()
		_ = peer.Close()
	})
}

// fuzzHandler checks every message it gets against the parser's promises.
type fuzzHandler struct {
	t      *testing.T
	limit  int
	mu     sync.Mutex
	closed bool
}

func (h *fuzzHandler) Message(data []byte, text, _ bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		h.t.Fatalf("message %q handed over after the connection stopped being open", data)
	case len(data) > h.limit:
		h.t.Fatalf("a message of %d bytes got through a limit of %d", len(data), h.limit)
	case text && !utf8.Valid(data):
		h.t.Fatalf("text message %q is not UTF-8", data)
	}
}

func (h *fuzzHandler) Written([]Frame) {}

func (h *fuzzHandler) Closing() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
}

func (h *fuzzHandler) Closed() {}

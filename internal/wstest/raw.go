package wstest

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// Wire is a WebSocket client that works at the level of frames and bytes,
// with no library in between: for tests that must see exactly what the
// server put on the socket (nothing after a close frame, say) or must
// send what no well-behaved client would.
type Wire struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

// WireFrame is one frame the server sent.
type WireFrame struct {
	Op      byte // 1 text, 2 binary, 8 close, 9 ping, 10 pong
	Fin     bool
	Payload []byte
}

// CloseCode returns the code of a close frame, or 0.
func (f WireFrame) CloseCode() int {
	if f.Op != 8 || len(f.Payload) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(f.Payload))
}

// DialWire opens a WebSocket connection to wsURL (ws:// or wss://) and
// completes the handshake.
func DialWire(t testing.TB, wsURL string) *Wire {
	t.Helper()
	u, err := url.Parse(wsURL)
	if err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	if u.Scheme == "wss" {
		conn, err = tls.Dial("tcp", u.Host, clientTLSConfig())
	} else {
		conn, err = net.Dial("tcp", u.Host)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", wsURL, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(Timeout))
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake with %s: %v", wsURL, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake with %s: %s", wsURL, resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	return &Wire{t: t, conn: conn, br: br}
}

// SendText sends s as one masked text frame.
func (w *Wire) SendText(s string) {
	w.t.Helper()
	if err := w.TryWrite(MaskedFrame(0x81, []byte(s))); err != nil {
		w.t.Fatal(err)
	}
}

// TryWrite writes raw bytes.
func (w *Wire) TryWrite(b []byte) error {
	_ = w.conn.SetWriteDeadline(time.Now().Add(Timeout))
	_, err := w.conn.Write(b)
	return err
}

// Next reads the next frame, waiting at most timeout.
func (w *Wire) Next(timeout time.Duration) (WireFrame, error) {
	_ = w.conn.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(w.br, h[:]); err != nil {
		return WireFrame{}, err
	}
	if h[1]&0x80 != 0 {
		return WireFrame{}, errors.New("the server masked a frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return WireFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(w.br, b[:]); err != nil {
			return WireFrame{}, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 64<<20 {
		return WireFrame{}, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.br, p); err != nil {
		return WireFrame{}, err
	}
	return WireFrame{Op: h[0] & 0x0f, Fin: h[0]&0x80 != 0, Payload: p}, nil
}

// UntilClose reads frames up to the server's close frame and returns those
// before it and the close frame; then it checks that the server sends not
// one more byte and closes the connection.
func (w *Wire) UntilClose() (before []WireFrame, closing WireFrame) {
	w.t.Helper()
	for {
		f, err := w.Next(Timeout)
		if err != nil {
			w.t.Fatalf("after %d frames, before a close frame: %v", len(before), err)
		}
		if f.Op == 8 {
			closing = f
			break
		}
		before = append(before, f)
	}
	_ = w.TryWrite(MaskedFrame(0x88, closing.Payload[:min(2, len(closing.Payload))]))
	_ = w.conn.SetReadDeadline(time.Now().Add(Timeout))
	rest, err := io.ReadAll(w.br)
	if len(rest) > 0 {
		w.t.Fatalf("the server sent %d bytes after its close frame: %.100q", len(rest), rest)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		w.t.Fatal("the server kept the connection open after the close handshake")
	}
	return before, closing
}

// MaskedFrame returns a client frame: b0 is the first byte (FIN, RSV,
// opcode), the payload is masked as RFC 6455 requires of clients.
func MaskedFrame(b0 byte, payload []byte) []byte {
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	key := [4]byte{0x5a, 0x17, 0xc3, 0x08}
	b = append(b, key[:]...)
	for i, p := range payload {
		b = append(b, p^key[i%4])
	}
	return b
}

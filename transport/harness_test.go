package transport

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 5 * time.Second

// recorder is a Handler that echoes every message back as a text frame and
// records what happened.
type recorder struct {
	c *Conn

	mu       sync.Mutex
	messages [][]byte
	binary   int
	limited  int
	written  int
	closing  int
	closed   chan struct{}
	noEcho   bool

	// holdWritten, when set, makes Written signal inWritten and wait
	// until holdWritten is closed.
	holdWritten chan struct{}
	inWritten   chan struct{}
	// reporting counts the Written calls under way; closedReporting is
	// set when Closed came during one.
	reporting       atomic.Int32
	closedReporting atomic.Bool
}

func (r *recorder) Message(data []byte, text, limited bool) {
	r.mu.Lock()
	r.messages = append(r.messages, append([]byte(nil), data...))
	if !text {
		r.binary++
	}
	if limited {
		r.limited++
	}
	noEcho := r.noEcho
	r.mu.Unlock()
	if !noEcho {
		echo := append([]byte(nil), data...)
		if len(echo) == 0 {
			echo = []byte("<empty>") // an empty Frame would be a marker
		}
		r.c.Send(Frame{Data: echo})
	}
}

func (r *recorder) Written(frames []Frame) {
	r.reporting.Add(1)
	defer r.reporting.Add(-1)
	if r.holdWritten != nil {
		r.inWritten <- struct{}{}
		<-r.holdWritten
	}
	r.mu.Lock()
	r.written += len(frames)
	r.mu.Unlock()
}

func (r *recorder) Closing() {
	r.mu.Lock()
	r.closing++
	r.mu.Unlock()
}

func (r *recorder) Closed() {
	if r.reporting.Load() != 0 {
		r.closedReporting.Store(true)
	}
	close(r.closed)
}

// testServer serves WebSocket connections with a recorder each, over plain
// TCP or TLS.
type testServer struct {
	srv     *Server
	http    *httptest.Server
	tls     bool
	conns   chan *recorder
	metrics *Metrics
}

// mode is how a test server's connections run.
type mode int

const (
	// tcpMode: plain TCP, detached from package net where the platform
	// allows it (see detach).
	tcpMode mode = iota
	// netMode: plain TCP kept on its net.Conn, as on platforms without
	// detach.
	netMode
	// tlsMode: TLS.
	tlsMode
	// tcpWriteMode: plain TCP, detached, written with write(2) rather
	// than io_uring (where tcpMode uses io_uring; see IOUring).
	tcpWriteMode
)

func (m mode) String() string { return [...]string{"tcp", "tcp-net", "tls", "tcp-write"}[m] }

func startServer(t *testing.T, m mode, cfg Config) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Metrics = NewMetrics(reg)
	cfg.NoIOUring = cfg.NoIOUring || m == tcpWriteMode
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.keepNetConns = m == netMode
	useTLS := m == tlsMode
	ts := &testServer{srv: srv, tls: useTLS, conns: make(chan *recorder, 100), metrics: cfg.Metrics}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, early, err := Upgrade(w, r, time.Second)
		if err != nil {
			return
		}
		rec := &recorder{closed: make(chan struct{}), noEcho: r.URL.Query().Has("noecho")}
		if r.URL.Query().Has("holdwritten") {
			rec.holdWritten, rec.inWritten = make(chan struct{}), make(chan struct{}, 1)
		}
		rec.c = srv.Open(nc, early, rec)
		ts.conns <- rec
		rec.c.Start()
	})
	if useTLS {
		ts.http = httptest.NewTLSServer(h)
	} else {
		ts.http = httptest.NewServer(h)
	}
	t.Cleanup(ts.http.Close)
	return ts
}

// forEachTransport runs f over plain TCP (detached, written through
// io_uring and with write(2), and on its net.Conn) and over TLS.
func forEachTransport(t *testing.T, f func(t *testing.T, m mode)) {
	forModes(t, []mode{tcpMode, tcpWriteMode, netMode, tlsMode}, f)
}

// forModes runs f in each of modes.
func forModes(t *testing.T, modes []mode, f func(t *testing.T, m mode)) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel()
			f(t, m)
		})
	}
}

// client is a raw WebSocket client that writes frames byte for byte.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	rec  *recorder
}

// dial opens a connection and completes the handshake; query is added to
// the URL.
func (ts *testServer) dial(t testing.TB, query string) *client {
	t.Helper()
	conn, br, err := dialWS(ts.http.Listener.Addr().String(), ts.tls, query)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &client{t: t, conn: conn, br: br}
	select {
	case c.rec = <-ts.conns:
	case <-time.After(testTimeout):
		t.Fatal("no server connection")
	}
	return c
}

// dialWS opens a WebSocket connection to addr; query is added to the URL.
func dialWS(addr string, useTLS bool, query string) (net.Conn, *bufio.Reader, error) {
	var conn net.Conn
	var err error
	if useTLS {
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		return nil, nil, err
	}
	req := "GET /ws?" + query + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	if _, err := conn.Write([]byte(req)); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("handshake answered %s, accept %q", resp.Status, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, nil
}

// rawFrame builds a client frame: b0 is the first byte (FIN, RSV, opcode);
// the payload is masked unless unmasked is set.
func rawFrame(b0 byte, payload []byte, unmasked bool) []byte {
	mask := byte(0x80)
	if unmasked {
		mask = 0
	}
	b := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mask|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, mask|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, mask|127), uint64(n))
	}
	if unmasked {
		return append(b, payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, key[:]...)
	for i, p := range payload {
		b = append(b, p^key[i%4])
	}
	return b
}

// frameWithLength builds a masked frame header announcing n bytes in the
// 7-bit, 16-bit or 64-bit form given by form (125, 126 or 127), and no
// payload.
func frameWithLength(b0 byte, form byte, n uint64) []byte {
	b := []byte{b0, 0x80 | form}
	switch form {
	case 126:
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	case 127:
		b = binary.BigEndian.AppendUint64(b, n)
	default:
		b[1] = 0x80 | byte(n)
	}
	return append(b, 1, 2, 3, 4)
}

const (
	finText   = 0x81
	finBinary = 0x82
	finCont   = 0x80
	text      = 0x01 // not final
	cont      = 0x00 // not final
	finClose  = 0x88
	finPing   = 0x89
	finPong   = 0x8a
)

func closeFrame(code int, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return rawFrame(finClose, append(p, reason...), false)
}

func (c *client) send(frames ...[]byte) {
	c.t.Helper()
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// serverFrame is a frame the server wrote.
type serverFrame struct {
	fin     bool
	op      byte
	payload []byte
}

func (f serverFrame) String() string {
	if f.op == opClose && len(f.payload) >= 2 {
		return fmt.Sprintf("close %d %q", binary.BigEndian.Uint16(f.payload), f.payload[2:])
	}
	return fmt.Sprintf("op %d fin %v %q", f.op, f.fin, f.payload)
}

// next reads one frame from the server, which must not mask it.
func (c *client) next() (serverFrame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(testTimeout))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return serverFrame{}, err
	}
	if h[1]&0x80 != 0 {
		return serverFrame{}, errors.New("the server masked a frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return serverFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return serverFrame{}, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return serverFrame{}, err
	}
	return serverFrame{fin: h[0]&0x80 != 0, op: h[0] & 0x0f, payload: p}, nil
}

func (c *client) expect(op byte, payload string) {
	c.t.Helper()
	f, err := c.next()
	if err != nil {
		c.t.Fatalf("want op %d %q: %v", op, clip(payload), err)
	}
	if f.op != op || string(f.payload) != payload || !f.fin {
		c.t.Fatalf("got %s, want op %d %q", clip(f.String()), op, clip(payload))
	}
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// expectClose reads until the server's close frame, checks its code (-1:
// an empty close payload), then checks that the server closes TCP once it
// got the answer.
func (c *client) expectClose(code int) {
	c.t.Helper()
	for {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("want close %d: %v", code, err)
		}
		if f.op != opClose {
			continue
		}
		got := -1
		if len(f.payload) >= 2 {
			got = int(binary.BigEndian.Uint16(f.payload))
		}
		if got != code {
			c.t.Fatalf("got %v, want close code %d", f, code)
		}
		break
	}
	// Answer (a peer that started the close gets no answer of ours), then
	// the server closes TCP.
	_, _ = c.conn.Write(closeFrame(CloseNormal, ""))
	c.expectEOF()
}

// expectEOF checks that the server closes the connection with nothing more.
func (c *client) expectEOF() {
	c.t.Helper()
	f, err := c.next()
	if err == nil {
		c.t.Fatalf("got %v, want the connection closed", f)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("the server kept the connection open")
	}
	_ = c.conn.Close()
	select {
	case <-c.rec.closed:
	case <-time.After(testTimeout):
		c.t.Fatal("Handler.Closed was not called")
	}
}

// expectNothing checks that the server sends nothing more than the answer
// to a ping.
func (c *client) expectNothing() {
	c.t.Helper()
	c.send(rawFrame(finPing, []byte("quiet?"), false))
	c.expect(opPong, "quiet?")
}

func repeat(s string, n int) []byte { return []byte(strings.Repeat(s, n)) }

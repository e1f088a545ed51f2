// Package wstest starts Switchboard instances in-process and talks to them
// over real WebSocket connections, for tests.
package wstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Timeout bounds every wait of this package.
const Timeout = 5 * time.Second

// Server is an instance serving on a loopback port.
type Server struct {
	*switchboard.Instance
	// URL is the instance's base URL, http://127.0.0.1:port.
	URL string
	// WS is the URL of its WebSocket endpoint.
	WS     string
	cancel context.CancelFunc
	done   chan error
}

// Start runs an instance with cfg on 127.0.0.1:0 until the test ends. An
// empty cfg runs in dev mode. With SWITCHBOARD_TEST_TLS set (see TLSEnv)
// it serves https:// and wss:// with a test certificate that this
// package's clients trust.
func Start(t testing.TB, cfg switchboard.Config) *Server {
	t.Helper()
	if cfg.JWTSecret == nil && cfg.JWTPublicKeyPEM == nil {
		cfg.Dev = true
	}
	scheme := "http"
	if UseTLS() && cfg.TLSCertFile == "" {
		certFile, keyFile, pool := TLSFiles(t)
		cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
		trustTestCertificate(pool)
	}
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	inst, err := switchboard.New(cfg)
	if err != nil {
		t.Fatalf("switchboard.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wsScheme := map[string]string{"http": "ws", "https": "wss"}[scheme]
	s := &Server{Instance: inst, URL: scheme + "://" + ln.Addr().String(), WS: wsScheme + "://" + ln.Addr().String() + "/ws", cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- inst.Serve(ctx, ln) }()
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// Stop drains the instance and waits for Serve to return. It may be called
// more than once.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if !ok {
			return // stopped before
		}
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		close(s.done)
	case <-time.After(30 * time.Second):
		t.Errorf("instance did not stop")
	}
}

// Conn is a raw client connection.
type Conn struct {
	t       testing.TB
	ws      *websocket.Conn
	pending []protocol.ServerFrame
	// Welcome is the answer to hello, when Dial sent one.
	Welcome protocol.ServerFrame
}

// Hello is the hello frame Dial sends.
type Hello struct {
	Token   string                       `json:"token,omitempty"`
	User    string                       `json:"user,omitempty"`
	Resume  map[string]protocol.Position `json:"resume,omitempty"`
	Session string                       `json:"session,omitempty"`
	Batch   bool                         `json:"batch,omitempty"`
	Echo    bool                         `json:"echo,omitempty"`
}

// Dial connects to url, sends hello and waits for welcome.
func Dial(t testing.TB, url string, hello Hello) *Conn {
	t.Helper()
	c := DialRaw(t, url, nil)
	c.Send(struct {
		Type string `json:"type"`
		Hello
	}{"hello", hello})
	c.Welcome = c.Expect(protocol.TypeWelcome)
	return c
}

// DialRaw connects to url without sending anything.
func DialRaw(t testing.TB, url string, header http.Header) *Conn {
	t.Helper()
	ws, _, err := Dialer().Dial(url, header)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { ws.Close() })
	return &Conn{t: t, ws: ws}
}

// WS returns the underlying connection.
func (c *Conn) WS() *websocket.Conn { return c.ws }

// Send writes v as JSON (a string or []byte is written as is).
func (c *Conn) Send(v any) {
	c.t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			c.t.Fatal(err)
		}
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// Next returns the next server frame, failing the test after Timeout.
func (c *Conn) Next() protocol.ServerFrame {
	c.t.Helper()
	f, err := c.NextErr(Timeout)
	if err != nil {
		c.t.Fatalf("next frame: %v", err)
	}
	return f
}

// NextErr returns the next server frame or the read error.
func (c *Conn) NextErr(timeout time.Duration) (protocol.ServerFrame, error) {
	for len(c.pending) == 0 {
		_ = c.ws.SetReadDeadline(time.Now().Add(timeout))
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return protocol.ServerFrame{}, err
		}
		frames, err := protocol.DecodeServer(b)
		if err != nil {
			return protocol.ServerFrame{}, err
		}
		c.pending = frames
	}
	f := c.pending[0]
	c.pending = c.pending[1:]
	return f, nil
}

// ReadRaw returns the next WebSocket message as it came.
func (c *Conn) ReadRaw() []byte {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(Timeout))
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return b
}

// Expect returns the next frame and fails unless its type is typ.
func (c *Conn) Expect(typ string) protocol.ServerFrame {
	c.t.Helper()
	f := c.Next()
	if f.Type != typ {
		c.t.Fatalf("got frame %s, want type %q", Describe(f), typ)
	}
	return f
}

// ExpectError returns the next frame and fails unless it is an error frame
// with code.
func (c *Conn) ExpectError(code string) protocol.ServerFrame {
	c.t.Helper()
	f := c.Expect(protocol.TypeError)
	if f.Code != code {
		c.t.Fatalf("got error %q (%s), want %q", f.Code, f.Message, code)
	}
	return f
}

// ExpectClose reads until the server closes and fails unless it closed with
// code. Frames before the close are returned.
func (c *Conn) ExpectClose(code int) []protocol.ServerFrame {
	c.t.Helper()
	var before []protocol.ServerFrame
	for {
		f, err := c.NextErr(Timeout)
		if err == nil {
			before = append(before, f)
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			c.t.Fatalf("want close %d, got %v (after %d frames)", code, err, len(before))
		}
		if ce.Code != code {
			c.t.Fatalf("closed with %d %q, want %d", ce.Code, ce.Text, code)
		}
		return before
	}
}

// Describe formats a frame for test failures.
func Describe(f protocol.ServerFrame) string {
	b, _ := json.Marshal(f)
	return string(b)
}

// Eventually polls f until it returns true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// JSON marshals v for use as data in frames.
func JSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wstest.JSON: %v", err))
	}
	return b
}

// Frame builds a client frame from alternating keys and values.
func Frame(typ string, kv ...any) string {
	var sb strings.Builder
	sb.WriteString(`{"type":`)
	sb.Write(JSON(typ))
	for i := 0; i+1 < len(kv); i += 2 {
		sb.WriteString(",")
		sb.Write(JSON(kv[i]))
		sb.WriteString(":")
		sb.Write(JSON(kv[i+1]))
	}
	sb.WriteString("}")
	return sb.String()
}

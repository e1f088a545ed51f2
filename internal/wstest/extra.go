package wstest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// TryDial is Dial for goroutines other than the test's: it returns an error
// instead of failing the test. d may be nil for Dialer(). The
// connection is closed when the test ends; the returned Conn's methods that
// fail the test must still be called from the test's goroutine only.
func TryDial(t testing.TB, d *websocket.Dialer, url string, hello Hello) (*Conn, error) {
	if d == nil {
		d = Dialer()
	}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &Conn{t: t, ws: ws}
	if err := c.TrySend(struct {
		Type string `json:"type"`
		Hello
	}{"hello", hello}); err != nil {
		return nil, err
	}
	f, err := c.NextErr(Timeout)
	if err != nil {
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	if f.Type != "welcome" {
		return nil, fmt.Errorf("got %s, want welcome", Describe(f))
	}
	c.Welcome = f
	return c, nil
}

// DialWith is Dial with a custom dialer, for example SmallReceiveBuffer.
func DialWith(t testing.TB, d *websocket.Dialer, url string, hello Hello) *Conn {
	t.Helper()
	c, err := TryDial(t, d, url, hello)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// SmallReceiveBuffer returns a dialer whose TCP connections have a receive
// buffer of about n bytes (the kernel may round it), so that a client that
// stops reading holds back less in its own socket. The server's send buffer
// is not affected: on Linux it alone may absorb megabytes. A tiny window
// also makes reading slow (tens of KiB per second on loopback).
func SmallReceiveBuffer(n int) *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: Timeout,
		ReadBufferSize:   1024,
		TLSClientConfig:  clientTLSConfig(),
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if tc, ok := c.(*net.TCPConn); ok {
				if err := tc.SetReadBuffer(n); err != nil {
					c.Close()
					return nil, err
				}
			}
			return c, nil
		},
	}
}

// TrySend is Send for goroutines other than the test's: it returns the
// error instead of failing the test. Only one goroutine may send at a time.
func (c *Conn) TrySend(v any) error {
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// Metric returns the value of the unlabelled Prometheus sample called name
// on the instance's /metrics page, or 0 if the page does not show it.
func (s *Server) Metric(t testing.TB, name string) float64 {
	t.Helper()
	v, err := s.TryMetric(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TryMetric is Metric returning its error.
func (s *Server) TryMetric(name string) (float64, error) {
	resp, err := HTTPClient().Get(s.URL + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("get metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("get metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		return v, nil
	}
	return 0, sc.Err()
}

package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// Config.Header reaches the server with every upgrade request, and an
// allowed Origin passes the server's Origin check.
func TestConfig_Header(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	srv := wstest.Start(t, switchboard.Config{JWTSecret: secret, AllowedOrigins: []string{"https://app.example"}})
	f := newFront(t, srv, answer{})
	header := http.Header{}
	header.Set("Origin", "https://app.example")
	header["x-gateway-key"] = []string{"k1"} // not canonical: sent all the same
	c := dial(t, Config{
		URLs:   []string{f.WS()},
		Header: header,
		Token: func(context.Context) (string, error) {
			return auth.Sign(secret, auth.Claims{User: "u", Expires: time.Now().Add(time.Hour)})
		},
	})
	header.Set("Origin", "https://changed.example") // the client keeps its own copy
	if _, err := c.Join(ctxT(t), "r"); err != nil {
		t.Fatalf("Join with an allowed Origin: %v", err)
	}
	f.mu.Lock()
	got := f.headers[0]
	f.mu.Unlock()
	if got.Get("Origin") != "https://app.example" || got.Get("X-Gateway-Key") != "k1" {
		t.Errorf("upgrade request headers = %v, want the Origin and X-Gateway-Key of Config.Header", got)
	}
}

// Headers of the WebSocket handshake itself are refused at once, in any
// spelling, rather than failing every connection attempt.
func TestConfig_HeaderRefusesHandshakeHeaders(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"Upgrade", "connection", "Sec-WebSocket-Key", "sec-websocket-version", "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol"} {
		t.Run(key, func(t *testing.T) {
			t.Parallel()
			cfg := Config{URLs: []string{"ws://127.0.0.1:1/ws"}, User: "u", Header: http.Header{key: {"x"}}}
			_, err := Dial(t.Context(), cfg)
			if err == nil || !strings.Contains(err.Error(), "Config.Header") {
				t.Errorf("Dial(Header %s) = %v, want an error naming Config.Header", key, err)
			}
		})
	}
}

// Other mistakes in Config.URLs are refused at once too.
func TestConfig_URLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ws://user:pass@127.0.0.1:1/ws", "ws:///ws", "http://127.0.0.1:1/ws", "ws://[::1/ws"} {
		if _, err := Dial(t.Context(), Config{URLs: []string{u}, User: "u"}); err == nil || !strings.Contains(err.Error(), "Config.URLs[0]") {
			t.Errorf("Dial(%q) = %v, want an error naming Config.URLs[0]", u, err)
		}
	}
}

// startTLS serves srv over TLS with httptest's certificate, and counts
// the connections made to it.
func startTLS(t *testing.T, srv *wstest.Server) (wsURL string, roots *x509.CertPool, conns *atomic.Int64) {
	t.Helper()
	ts := httptest.NewUnstartedServer(srv.Handler())
	// The refused handshakes are the point of a test, not news.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	conns = new(atomic.Int64)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	roots = x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	return "wss" + strings.TrimPrefix(ts.URL, "https") + "/ws", roots, conns
}

// Config.TLSConfig is used for wss:// URLs; without it, a certificate the
// system does not trust fails Dial at once.
func TestConfig_TLSConfig(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	url, roots, conns := startTLS(t, srv)

	c := dial(t, Config{URLs: []string{url}, User: "u", TLSConfig: &tls.Config{RootCAs: roots}})
	if _, err := c.Join(ctxT(t), "r"); err != nil {
		t.Fatalf("Join over TLS: %v", err)
	}

	before := conns.Load()
	_, err := Dial(ctxT(t), Config{URLs: []string{url}, User: "u", Backoff: fastBackoff})
	var cv *tls.CertificateVerificationError
	if !errors.As(err, &cv) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial(untrusted certificate) = %v, want a *tls.CertificateVerificationError at once", err)
	}
	if n := conns.Load() - before; n != 1 {
		t.Errorf("Dial(untrusted certificate) made %d connections, want 1: no retry", n)
	}
}

// A wss:// URL of a server without TLS fails at once.
func TestConfig_WSSWithoutTLS(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	url := "wss" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	_, err := Dial(ctxT(t), Config{URLs: []string{url}, User: "u", Backoff: fastBackoff})
	var rh tls.RecordHeaderError
	if !errors.As(err, &rh) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial(wss:// of a plain server) = %v, want a tls.RecordHeaderError at once", err)
	}
}

// connectProxy is an HTTP proxy that serves CONNECT only, and records the
// targets it was asked for.
type connectProxy struct {
	*httptest.Server
	wg      sync.WaitGroup
	mu      sync.Mutex
	targets []string
}

func newConnectProxy(t *testing.T) *connectProxy {
	t.Helper()
	p := &connectProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.CloseClientConnections()
		p.Close()
		p.wg.Wait()
	})
	return p
}

func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, r.Host)
	p.mu.Unlock()
	upstream, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	down, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = upstream.Close()
		return
	}
	if _, err := down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		_ = upstream.Close()
		_ = down.Close()
		return
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(upstream, io.MultiReader(brw.Reader, down))
		_ = upstream.Close()
		_ = down.Close()
	}()
	go func() {
		defer p.wg.Done()
		_, _ = io.Copy(down, upstream)
		_ = upstream.Close()
		_ = down.Close()
	}()
}

// Config.Proxy sends the connection through an HTTP proxy (CONNECT).
func TestConfig_Proxy(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	p := newConnectProxy(t)
	proxyURL, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int64
	c := dial(t, Config{URLs: []string{srv.WS}, User: "u", Proxy: func(r *http.Request) (*url.URL, error) {
		asked.Add(1)
		return proxyURL, nil
	}})
	if _, err := c.Join(ctxT(t), "r"); err != nil {
		t.Fatalf("Join through the proxy: %v", err)
	}
	p.mu.Lock()
	targets := append([]string(nil), p.targets...)
	p.mu.Unlock()
	if want := strings.TrimPrefix(srv.URL, "http://"); asked.Load() != 1 || len(targets) != 1 || targets[0] != want {
		t.Errorf("Proxy called %d times, proxy asked for %v; want once, for %s", asked.Load(), targets, want)
	}
}

// Config.NetDial opens the connections; its errors are network errors,
// retried.
func TestConfig_NetDial(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	var calls atomic.Int64
	c := dial(t, Config{URLs: []string{srv.WS}, User: "u", Backoff: fastBackoff,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if calls.Add(1) <= 2 {
				return nil, errors.New("tunnel not up yet")
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}})
	if _, err := c.Join(ctxT(t), "r"); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("NetDial called %d times, want 2 failures and 1 connection", n)
	}
}

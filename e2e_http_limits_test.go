package switchboard_test

// The HTTP limits (docs/operations.md, "HTTP limits"): the size of a
// request's head, the time to send it, the idle time of a keep-alive
// connection and the size of an API body. Each test tries to get past its
// limit over a raw TCP connection to an in-process instance.

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// upgradeHead returns a WebSocket upgrade request for path on host whose
// head (request line, headers, blank line) is exactly size bytes, padded
// with an X-Pad header.
func upgradeHead(t *testing.T, host, path string, size int) []byte {
	t.Helper()
	head := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	const padName, end = "X-Pad: ", "\r\n\r\n"
	pad := size - len(head) - len(padName) - len(end)
	if pad < 1 {
		t.Fatalf("a head of %d bytes is too small to pad", size)
	}
	b := []byte(head + padName + strings.Repeat("p", pad) + end)
	if len(b) != size {
		t.Fatalf("head is %d bytes, want %d", len(b), size)
	}
	return b
}

// rawExchange connects to the server at base, writes req while reading the
// answer (a server that stops reading must still be heard), and returns the
// status line of the answer, or the error that ended the read.
func rawExchange(t *testing.T, base string, req []byte) (string, error) {
	t.Helper()
	conn := dialRaw(t, base)
	go func() { _, _ = conn.Write(req) }()
	_ = conn.SetReadDeadline(time.Now().Add(wstest.Timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

// dialRaw opens a TCP connection to the server at base (over TLS when the
// server serves https), closed when the test ends.
func dialRaw(t *testing.T, base string) net.Conn {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	if u.Scheme == "https" {
		_, _, pool, cerr := wstest.TestCertificate()
		if cerr != nil {
			t.Fatal(cerr)
		}
		conn, err = tls.Dial("tcp", u.Host, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	} else {
		conn, err = net.Dial("tcp", u.Host)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestHTTPLimits_HeaderBytes: a head of exactly MaxHeaderBytes is served;
// one byte more, and the 9 KiB and 512 KiB heads of the issue, are
// answered 431, never 101, upgrades included.
func TestHTTPLimits_HeaderBytes(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	host := srv.URL[strings.Index(srv.URL, "://")+3:]
	limit := switchboard.DefaultMaxHeaderBytes

	for _, tt := range []struct {
		name string
		size int
		want string
	}{
		{"AtTheBound", limit, "HTTP/1.1 101 Switching Protocols"},
		{"OneByteOver", limit + 1, "431"},
		{"9KiB", 9 << 10, "431"},
		{"512KiB", 512 << 10, "431"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			line, err := rawExchange(t, srv.URL, upgradeHead(t, host, "/ws", tt.size))
			if err != nil {
				t.Fatalf("upgrade with a %d-byte head: %v (read %q)", tt.size, err, line)
			}
			if !strings.Contains(line, tt.want) {
				t.Fatalf("upgrade with a %d-byte head answered %q, want %q", tt.size, line, tt.want)
			}
		})
	}

	// A smaller bound is the bound too, for plain requests as well.
	small := wstest.Start(t, switchboard.Config{MaxHeaderBytes: 5000})
	for size, want := range map[int]string{5000: "200 OK", 5001: "431"} {
		head := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
		req := head + strings.Repeat("p", size-len(head)-4) + "\r\n\r\n"
		line, err := rawExchange(t, small.URL, []byte(req))
		if err != nil || !strings.Contains(line, want) {
			t.Errorf("GET /healthz with a %d-byte head under a 5000-byte bound: %q, %v; want %q", size, line, err, want)
		}
	}
}

// TestHTTPLimits_HeaderTimeout: a client that trickles its head and never
// ends it is disconnected after HeaderTimeout, unanswered.
func TestHTTPLimits_HeaderTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	srv := wstest.Start(t, switchboard.Config{HeaderTimeout: timeout})
	conn := dialRaw(t, srv.URL)
	start := time.Now()
	if _, err := conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// One header byte every 50ms: activity, never an end.
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := conn.Write([]byte("X-Slow: x\r\n")); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	elapsed := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection was still open after %v; want it closed after the %v header timeout", elapsed, timeout)
	}
	if n != 0 {
		t.Errorf("the server answered %d bytes; want the connection closed unanswered", n)
	}
	// The server's clock starts at its accept, and timers are not exact:
	// the lower bound only rules out a close that had nothing to do with
	// the timeout.
	if elapsed < timeout/2 {
		t.Errorf("closed after %v, long before the %v header timeout", elapsed, timeout)
	}
	t.Logf("closed after %v (header timeout %v)", elapsed, timeout)
}

// TestHTTPLimits_IdleTimeout: a keep-alive connection is closed after
// IdleTimeout without a request; a WebSocket session outlives it.
func TestHTTPLimits_IdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	srv := wstest.Start(t, switchboard.Config{IdleTimeout: idle})
	ws := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})

	conn := dialRaw(t, srv.URL)
	if _, err := conn.Write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	rd := bufio.NewReader(conn)
	res, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Close {
		t.Fatalf("GET /healthz: %d, close %v; want 200 on a kept-alive connection", res.StatusCode, res.Close)
	}
	answered := time.Now()
	n, err := io.Copy(io.Discard, rd)
	elapsed := time.Since(answered)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the idle connection was still open after %v; want it closed after the %v idle timeout", elapsed, idle)
	}
	if n != 0 || elapsed < idle/2 {
		t.Errorf("read %d more bytes and the connection closed after %v; want nothing and a close after about %v", n, elapsed, idle)
	}
	t.Logf("idle connection closed after %v (idle timeout %v)", elapsed, idle)

	// The session was idle as long: it is alive.
	ws.Ping()
}

// TestHTTPLimits_BodyBytes: an API request that declares more than
// MaxBodyBytes is answered 413 too_large at once, before its body; a
// chunked one is stopped at the bound with the same answer; a body of
// exactly the bound is served.
func TestHTTPLimits_BodyBytes(t *testing.T) {
	t.Parallel()
	const limit = 1000
	srv := wstest.Start(t, switchboard.Config{MaxBodyBytes: limit})

	t.Run("HugeContentLength", func(t *testing.T) {
		conn := dialRaw(t, srv.URL)
		start := time.Now()
		// The head only: none of the 100 GB comes.
		if _, err := conn.Write([]byte("POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		elapsed := time.Since(start)
		wantTooLarge(t, res)
		if !res.Close {
			t.Errorf("the 413 keeps the connection open; want Connection: close (the body is never read)")
		}
		// The request timeout is 5s: an answer after it was waiting
		// for the body.
		if elapsed > 2*time.Second {
			t.Errorf("answered after %v; want at once, without waiting for the body", elapsed)
		}
		t.Logf("413 after %v", elapsed)
	})

	t.Run("Chunked", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			// Up to 64 KiB, far past the bound, in small chunks; the
			// server stops reading at the bound.
			chunk := []byte(`{"room":"a","data":"` + strings.Repeat("x", 500))
			for i := 0; i < 128; i++ {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			_ = pw.Close()
		}()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/publish", pr)
		if err != nil {
			t.Fatal(err)
		}
		res, err := wstest.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.TransferEncoding) == 0 && res.Request != nil && res.Request.ContentLength > 0 {
			t.Fatalf("the request was not chunked")
		}
		wantTooLarge(t, res)
		_ = pr.Close()
	})

	t.Run("AtTheBound", func(t *testing.T) {
		prefix, suffix := `{"room":"a","data":"`, `"}`
		body := prefix + strings.Repeat("x", limit-len(prefix)-len(suffix)) + suffix
		res, err := wstest.HTTPClient().Post(srv.URL+"/api/publish", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("a %d-byte body under a %d-byte bound: %d %s, want 200", len(body), limit, res.StatusCode, b)
		}
	})
}

// wantTooLarge fails the test unless res is 413 with the JSON error
// too_large.
func wantTooLarge(t *testing.T, res *http.Response) {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if res.StatusCode != http.StatusRequestEntityTooLarge || json.Unmarshal(b, &e) != nil || e.Error.Code != "too_large" {
		t.Fatalf("got %d %s, want 413 with error code too_large", res.StatusCode, b)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	t.Logf("413: %s", strings.TrimSpace(fmt.Sprint(e.Error.Message)))
}

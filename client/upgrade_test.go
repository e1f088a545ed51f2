package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// fastBackoff keeps retries quick in tests.
var fastBackoff = Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}

// answer is how a front server answers one upgrade request: an HTTP
// status, or 0 to hand the request to the Switchboard instance behind it.
type answer struct {
	status int
	header map[string]string
	body   string
}

// front is an HTTP server before a Switchboard instance that answers the
// upgrade requests from a script, and records when each one came.
type front struct {
	*httptest.Server
	srv *wstest.Server

	mu     sync.Mutex
	script []answer
	// then answers the requests after the script.
	then answer
	hits []time.Time
	// headers are the headers of every request.
	headers []http.Header
}

// newFront starts a front server; the requests past script get then.
func newFront(t *testing.T, srv *wstest.Server, then answer, script ...answer) *front {
	t.Helper()
	f := &front{srv: srv, script: script, then: then}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// WS is the WebSocket URL of the front server.
func (f *front) WS() string { return "ws" + strings.TrimPrefix(f.URL, "http") + "/ws" }

func (f *front) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits = append(f.hits, time.Now())
	f.headers = append(f.headers, r.Header.Clone())
	a := f.then
	if len(f.script) > 0 {
		a, f.script = f.script[0], f.script[1:]
	}
	f.mu.Unlock()
	if a.status == 0 {
		f.srv.Handler().ServeHTTP(w, r)
		return
	}
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(a.status)
	_, _ = w.Write([]byte(a.body))
}

// setThen changes the answer to the requests past the script.
func (f *front) setThen(a answer) {
	f.mu.Lock()
	f.then = a
	f.mu.Unlock()
}

func (f *front) hitTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.hits...)
}

// A server that answers the upgrade with an HTTP status that will not change
// by itself stops Dial at once, after one request, with an *UpgradeError
// that carries the status.
func TestDial_FailsFastOnFinalHTTPAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		answer   answer
		wantText string
	}{
		{"OK", answer{status: 200, header: map[string]string{"Content-Type": "text/html"}, body: "<html><body>Welcome to nginx!</body></html>"}, "HTTP 200 OK instead of 101"},
		{"Redirect", answer{status: 301, header: map[string]string{"Location": "https://elsewhere.example/ws"}}, "HTTP 301 Moved Permanently, a redirect, which the client does not follow: use the URL it points to (https://elsewhere.example/ws; "},
		{"BadRequest", answer{status: 400, body: "Client sent an HTTP request to an HTTPS server.\n"}, `"Client sent an HTTP request to an HTTPS server."`},
		{"Unauthorized", answer{status: 401, header: map[string]string{"Content-Type": "application/json"}, body: `{"error":{"code":"unauthorized","message":"no key"}}`}, "HTTP 401 Unauthorized"},
		{"Forbidden", answer{status: 403, body: "forbidden\n"}, "HTTP 403 Forbidden"},
		{"NotFound", answer{status: 404, body: "404 page not found\n"}, `HTTP 404 Not Found: "404 page not found"`},
		{"UpgradeRequired", answer{status: 426}, "HTTP 426"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFront(t, nil, tt.answer)
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			rec := newRecorder()
			_, err := Dial(ctx, rec.config(Config{URLs: []string{f.WS()}, User: "u", Backoff: fastBackoff}))
			var ue *UpgradeError
			if !errors.As(err, &ue) {
				t.Fatalf("Dial() = %v, want an *UpgradeError", err)
			}
			if ue.StatusCode != tt.answer.status || ue.URL != f.WS() || ue.Body != tt.answer.body {
				t.Errorf("UpgradeError = %+v, want status %d, URL %s and the body", ue, tt.answer.status, f.WS())
			}
			if !errors.Is(err, ErrClosed) || errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Dial() = %v, want it to match ErrClosed, not a deadline", err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Dial() = %q, want %q in it", err, tt.wantText)
			}
			if n := len(f.hitTimes()); n != 1 {
				t.Errorf("%d upgrade requests, want 1: no retry", n)
			}
			if states := rec.stateList(); len(states) == 0 || states[len(states)-1] != StateClosed {
				t.Errorf("states = %v, want closed last", states)
			}
			if errs := rec.errList(); len(errs) == 0 || !errors.As(errs[len(errs)-1], &ue) {
				t.Errorf("OnStateChange errors = %v, want the *UpgradeError with StateClosed", errs)
			}
		})
	}
}

// Answers that may change by themselves (5xx, 408, 429) are retried, and
// the client connects once the server upgrades.
func TestDial_RetriesHTTPAnswersThatMayChange(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	for _, status := range []int{500, 502, 503, 504, 408, 429} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			refused := answer{status: status, body: "try later"}
			f := newFront(t, srv, answer{}, refused, refused, refused)
			c := dial(t, Config{URLs: []string{f.WS()}, User: "u", Backoff: fastBackoff})
			if n := len(f.hitTimes()); n != 4 {
				t.Errorf("%d upgrade requests, want 3 refused and 1 upgraded", n)
			}
			if c.State() != StateConnected {
				t.Errorf("State() = %v, want connected", c.State())
			}
		})
	}
}

// A 503 with Retry-After is retried no earlier than the server asked.
func TestDial_HonoursRetryAfter(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	f := newFront(t, srv, answer{}, answer{status: 503, header: map[string]string{"Retry-After": "1"}, body: "draining"})
	dial(t, Config{URLs: []string{f.WS()}, User: "u", Backoff: fastBackoff})
	hits := f.hitTimes()
	if len(hits) != 2 {
		t.Fatalf("%d upgrade requests, want 2", len(hits))
	}
	if gap := hits[1].Sub(hits[0]); gap < time.Second {
		t.Errorf("retried %v after the 503, want at least its Retry-After of 1s", gap)
	}
}

// A Dial whose ctx ends while the server keeps answering 503 reports the
// deadline and the last answer; the 503 is not final, so the error does not
// match ErrClosed.
func TestDial_DeadlineWithRetriedAnswer(t *testing.T) {
	t.Parallel()
	f := newFront(t, nil, answer{status: 503, header: map[string]string{"Retry-After": "0"}})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := Dial(ctx, Config{URLs: []string{f.WS()}, User: "u", Backoff: fastBackoff})
	var ue *UpgradeError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ue) || ue.StatusCode != 503 {
		t.Fatalf("Dial() = %v, want the deadline and the last HTTP 503", err)
	}
	if errors.Is(err, ErrClosed) {
		t.Errorf("Dial() = %v matches ErrClosed, but a 503 does not stop the client", err)
	}
	if n := len(f.hitTimes()); n < 2 {
		t.Errorf("%d upgrade requests, want retries", n)
	}
}

// Nothing listens on the port: connection refused is a network error,
// retried with back-off until ctx ends.
func TestDial_ClosedPortIsRetried(t *testing.T) {
	t.Parallel()
	addr := refusingAddr(t)
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := Dial(ctx, rec.config(Config{URLs: []string{"ws://" + addr + "/ws"}, User: "u", Backoff: fastBackoff}))
	var ue *UpgradeError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &ue) {
		t.Fatalf("Dial(closed port) = %v, want the deadline after connection refused", err)
	}
	attempts := 0
	for _, s := range rec.stateList() {
		if s == StateConnecting {
			attempts++
		}
	}
	if attempts < 2 {
		t.Errorf("%d connection attempts, want retries", attempts)
	}
}

// A connected client whose reconnection is answered with 503 and
// Retry-After waits that long, then resumes its room without a gap; when
// a later reconnection gets a 404 it stops with the *UpgradeError, which
// every request then returns.
func TestClient_ReconnectHTTPAnswers(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	f := newFront(t, srv, answer{})
	p := newProxy(t, f.WS())
	rec := newRecorder()
	c := dial(t, rec.config(Config{URLs: []string{p.URL()}, User: "u", Backoff: fastBackoff}))
	ctx := ctxT(t)
	if _, err := c.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	pub := dial(t, Config{URLs: []string{srv.WS}, User: "pub"})
	if _, err := pub.Join(ctx, "r"); err != nil {
		t.Fatal(err)
	}

	f.setThen(answer{status: 503, header: map[string]string{"Retry-After": "1"}})
	cut := time.Now()
	p.Cut()
	if _, err := pub.Publish(ctx, "r", "while away"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the 503", func() bool { return len(f.hitTimes()) >= 2 })
	f.setThen(answer{})
	rec.wait(t, "the message sent while away, after the reconnect", func(msgs []Message, states []State) bool {
		return connects(states) == 2 && count(msgs, "r", KindMessage) == 1
	})
	hits := f.hitTimes()
	if len(hits) != 3 {
		t.Fatalf("%d upgrade requests, want dial, 503, upgrade", len(hits))
	}
	if gap := hits[2].Sub(hits[1]); gap < time.Second {
		t.Errorf("reconnected %v after the 503 (cut %v before it), want at least its Retry-After of 1s", gap, hits[1].Sub(cut))
	}

	f.setThen(answer{status: 404, body: "404 page not found\n"})
	p.Cut()
	select {
	case <-c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the client did not stop after the 404")
	}
	var ue *UpgradeError
	if err := c.Err(); !errors.As(err, &ue) || ue.StatusCode != 404 || !errors.Is(err, ErrClosed) {
		t.Errorf("Err() = %v, want the HTTP 404, matching ErrClosed", err)
	}
	if _, err := c.Publish(ctx, "r", "after"); !errors.As(err, &ue) || !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after the 404 = %v, want the *UpgradeError", err)
	}
	rec.wait(t, "the closed state", func(_ []Message, states []State) bool { return states[len(states)-1] == StateClosed })
	if errs := rec.errList(); !errors.As(errs[len(errs)-1], &ue) {
		t.Errorf("closed with %v, want the *UpgradeError", errs[len(errs)-1])
	}
	if n := len(f.hitTimes()); n != 4 {
		t.Errorf("%d upgrade requests, want no retry after the 404", n)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		in   string
		want time.Duration
	}{
		{"Absent", "", 0},
		{"Seconds", "3", 3 * time.Second},
		{"Spaces", " 3 ", 3 * time.Second},
		{"Zero", "0", 0},
		{"Negative", "-5", 0},
		{"Fraction", "1.5", 0},
		{"Garbage", "soon", 0},
		{"HugeIsCapped", "99999999999999999", maxRetryAfter},
		{"Overflow", "999999999999999999999999", 0},
		{"Date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"DatePast", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"DateFarIsCapped", now.Add(48 * time.Hour).Format(http.TimeFormat), maxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

package switchboard_test

// The admin listener (docs/operations.md, "The admin listener"): with
// Config.AdminListener the API, /metrics and the profiles leave the public
// listener.

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// get sends method path to base with the API key key (when not empty) and
// returns the status and body.
func get(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := wstest.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, url, err)
	}
	return res.StatusCode, string(b)
}

// TestAdminListener: the API, /metrics and pprof (trace included) answer on
// the admin address and not on the public one, which keeps /ws and the
// health checks; a drain closes both.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	secret, key := []byte("admin-test-secret"), "admin-key"
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := wstest.Start(t, switchboard.Config{JWTSecret: secret, APIKey: key, AdminListener: adminLn})
	admin := strings.Replace(srv.URL, srv.URL[strings.LastIndex(srv.URL, "/")+1:], adminLn.Addr().String(), 1)

	// The public listener: sessions and health, nothing else.
	alice := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})})
	alice.Join("news")
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, http.MethodGet, srv.URL+path, "", ""); code != http.StatusOK {
			t.Errorf("GET %s on the public listener: %d %s, want 200", path, code, body)
		}
	}
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/trace?seconds=0.1"} {
		if code, body := get(t, http.MethodGet, srv.URL+path, "", ""); code != http.StatusNotFound {
			t.Errorf("GET %s on the public listener: %d %.80q, want 404", path, code, body)
		}
	}
	code, body := get(t, http.MethodPost, srv.URL+"/api/publish", key, `{"room":"news","data":1}`)
	if code != http.StatusNotFound || !strings.Contains(body, `"code":"not_found"`) {
		t.Errorf("POST /api/publish with the key on the public listener: %d %s, want 404 not_found", code, body)
	}
	if code, _ := get(t, http.MethodGet, srv.URL+"/api/instances", key, ""); code != http.StatusNotFound {
		t.Errorf("GET /api/instances on the public listener: %d, want 404", code)
	}

	// The admin listener: the API (with its key), metrics, profiles.
	if code, body := get(t, http.MethodPost, admin+"/api/publish", key, `{"room":"news","data":1}`); code != http.StatusOK {
		t.Fatalf("POST /api/publish on the admin listener: %d %s, want 200", code, body)
	}
	alice.ExpectMessage("news", 1)
	if code, _ := get(t, http.MethodGet, admin+"/api/instances", "wrong", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /api/instances with a wrong key on the admin listener: %d, want 401", code)
	}
	for path, want := range map[string]string{
		"/metrics":                       "switchboard_sessions 1",
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/goroutine?debug=1": "goroutine profile",
		"/debug/pprof/trace?seconds=0.1": "go 1.",
		"/healthz":                       "ok",
		"/readyz":                        "ok",
	} {
		code, body := get(t, http.MethodGet, admin+path, "", "")
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s on the admin listener: %d %.80q, want 200 holding %q", path, code, body, want)
		}
	}
	if code, body := get(t, http.MethodGet, admin+"/debug/pprof/cmdline", "", ""); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/cmdline on the admin listener: %d %.80q, want 404 (the command line may hold secrets)", code, body)
	}
	if code, _ := get(t, http.MethodGet, admin+"/ws", "", ""); code != http.StatusNotFound {
		t.Errorf("GET /ws on the admin listener: %d, want 404", code)
	}

	// A drain closes the admin listener too.
	srv.Stop(t)
	if c, err := net.DialTimeout("tcp", adminLn.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("the admin listener still accepts connections after the instance stopped")
	}
}

// TestAdminListener_Unset: without an admin listener everything stays on
// the one listener, and the profiles are there only in dev mode. (The trace
// endpoint is tried in TestAdminListener: a process runs one execution
// trace at a time, and the two tests run in parallel.)
func TestAdminListener_Unset(t *testing.T) {
	t.Parallel()
	secret, key := []byte("admin-test-secret"), "admin-key"
	prod := wstest.Start(t, switchboard.Config{JWTSecret: secret, APIKey: key})
	dev := wstest.Start(t, switchboard.Config{})
	for _, tt := range []struct {
		base, path string
		want       int
	}{
		{prod.URL, "/metrics", http.StatusOK},
		{prod.URL, "/api/instances", http.StatusOK},
		{prod.URL, "/debug/pprof/", http.StatusNotFound},
		{prod.URL, "/debug/pprof/trace?seconds=0.1", http.StatusNotFound},
		{dev.URL, "/debug/pprof/", http.StatusOK},
		{dev.URL, "/debug/pprof/cmdline", http.StatusNotFound},
	} {
		if code, body := get(t, http.MethodGet, tt.base+tt.path, key, ""); code != tt.want {
			t.Errorf("GET %s (dev %v): %d %.80q, want %d", tt.path, tt.base == dev.URL, code, body, tt.want)
		}
	}
}

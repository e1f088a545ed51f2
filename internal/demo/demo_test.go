package demo

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
)

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, []byte) {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

func newServer(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	for _, p := range Paths {
		mux.Handle("GET "+p, Handler())
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestHandler_ServesThePageAndWhatItLinks: the page, every file it links
// (script, style, icon) and /favicon.ico answer 200 with their types; the
// page forbids inline script.
func TestHandler_ServesThePageAndWhatItLinks(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	res, page := get(t, srv, "/")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET / = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if csp := res.Header.Get("Content-Security-Policy"); !bytes.Contains([]byte(csp), []byte("script-src 'self';")) {
		t.Errorf("Content-Security-Policy = %q, want script-src 'self' only", csp)
	}
	links := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`).FindAllSubmatch(page, -1)
	if len(links) < 3 {
		t.Fatalf("the page links %d files, want its script, style and icon", len(links))
	}
	want := map[string]string{
		"/demo/app.js":  "text/javascript; charset=utf-8",
		"/demo/app.css": "text/css; charset=utf-8",
		"/favicon.ico":  "image/x-icon",
	}
	for _, l := range links {
		path := string(l[1])
		res, body := get(t, srv, path)
		if res.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s (linked from the page) = %d, %d bytes", path, res.StatusCode, len(body))
		}
		if ct := want[path]; ct != "" && res.Header.Get("Content-Type") != ct {
			t.Errorf("GET %s: Content-Type %q, want %q", path, res.Header.Get("Content-Type"), ct)
		}
	}
	res, ico := get(t, srv, "/favicon.ico")
	if res.StatusCode != http.StatusOK || !bytes.HasPrefix(ico, []byte{0, 0, 1, 0}) {
		t.Errorf("GET /favicon.ico = %d, %x..., want an ICO file", res.StatusCode, ico[:min(len(ico), 4)])
	}
}

func TestHandler_OtherPathsAre404(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	for _, path := range []string{"/index.html", "/demo/", "/demo/missing.js", "/static/app.js", "/src/app.ts"} {
		if res, _ := get(t, srv, path); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, res.StatusCode)
		}
	}
}

// Package demo serves the demo chat page that `switchboard serve --dev`
// shows at /: a page built on the TypeScript client (clients/js), bundled
// into static/app.js by `npm run build:demo` in clients/js from src/app.ts,
// and embedded in the binary, so that `go build` needs no npm.
package demo

import (
	"embed"
	"net/http"
)

//go:embed static
var static embed.FS

// Paths are the URL paths the demo serves; register each with Handler.
var Paths = []string{"/{$}", "/favicon.ico", "/demo/app.js", "/demo/app.css"}

// files maps each URL path to its embedded file and content type.
var files = map[string]struct{ name, contentType string }{
	"/":             {"static/index.html", "text/html; charset=utf-8"},
	"/favicon.ico":  {"static/favicon.ico", "image/x-icon"},
	"/demo/app.js":  {"static/app.js", "text/javascript; charset=utf-8"},
	"/demo/app.css": {"static/app.css", "text/css; charset=utf-8"},
}

// csp allows the page its own script, style and icon, and WebSocket
// connections to its own host; nothing inline.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the demo's files at their paths (see Paths) and answers
// 404 for anything else.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		body, err := static.ReadFile(f.name)
		if err != nil {
			http.Error(w, "demo: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/" {
			h.Set("Content-Security-Policy", csp)
		}
		_, _ = w.Write(body)
	})
}

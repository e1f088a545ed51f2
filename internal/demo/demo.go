// Package demo serves the demo chat page that `switchboard serve --dev`
// shows at /: a single HTML file that speaks the wire protocol with the
// browser's own WebSocket.
package demo

import (
	_ "embed"
	"net/http"
)

//go:embed chat.html
var page []byte

// Handler serves the demo page at / and nothing else.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:")
		_, _ = w.Write(page)
	})
}

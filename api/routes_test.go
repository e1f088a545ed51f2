package api_test

import (
	"net/http"
	"testing"

	switchboard "github.com/switchboard-rt/switchboard"
)

func TestRoutes_UnknownAndWrongMethod(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	tests := []struct {
		name, method, path string
		status             int
		code, allow        string
	}{
		{"UnknownRoute", http.MethodGet, "/api/nope", 404, "not_found", ""},
		{"UnknownRoot", http.MethodGet, "/api/", 404, "not_found", ""},
		{"TrailingSlash", http.MethodPost, "/api/publish/", 404, "not_found", ""},
		{"UnknownRoomAction", http.MethodGet, "/api/rooms/general/members", 404, "not_found", ""},
		{"PublishWithGet", http.MethodGet, "/api/publish", 405, "method_not_allowed", "POST"},
		{"SendWithPut", http.MethodPut, "/api/send", 405, "method_not_allowed", "POST"},
		{"BroadcastWithGet", http.MethodGet, "/api/broadcast", 405, "method_not_allowed", "POST"},
		{"PresenceWithPost", http.MethodPost, "/api/rooms/general/presence", 405, "method_not_allowed", "GET, HEAD"},
		{"HistoryWithDelete", http.MethodDelete, "/api/rooms/general/history", 405, "method_not_allowed", "GET, HEAD"},
		{"UserWithPost", http.MethodPost, "/api/users/bob", 405, "method_not_allowed", "GET, HEAD"},
		{"DisconnectWithGet", http.MethodGet, "/api/users/bob/disconnect", 405, "method_not_allowed", "POST"},
		{"InstancesWithPost", http.MethodPost, "/api/instances", 405, "method_not_allowed", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := call(t, srv.URL, "", tt.method, tt.path, "")
			r.wantError(t, tt.status, tt.code)
			if got := r.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
	t.Run("HeadOnGetRoute", func(t *testing.T) {
		t.Parallel()
		r := call(t, srv.URL, "", http.MethodHead, "/api/instances", "")
		if r.Status != 200 || r.Header.Get("Content-Type") != "application/json" || len(r.Body) != 0 {
			t.Errorf("HEAD /api/instances = %d %q with %d body bytes, want 200 application/json and no body", r.Status, r.Header.Get("Content-Type"), len(r.Body))
		}
	})
	t.Run("OutsideAPIStaysText", func(t *testing.T) {
		t.Parallel()
		if r := call(t, srv.URL, "", http.MethodGet, "/nope", ""); r.Status != 404 {
			t.Errorf("GET /nope = %d, want 404", r.Status)
		}
	})
}

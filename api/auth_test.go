package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	switchboard "github.com/switchboard-rt/switchboard"
)

const testKey = "s3cret-api-key"

func TestAuth(t *testing.T) {
	t.Parallel()
	keyed := start(t, switchboard.Config{APIKey: testKey}) // dev mode with a key
	open := start(t, switchboard.Config{})                 // dev mode without a key
	disabled := start(t, switchboard.Config{JWTSecret: []byte("jwt-secret-of-at-least-32-bytes!")})
	keyedProd := start(t, switchboard.Config{JWTSecret: []byte("jwt-secret-of-at-least-32-bytes!"), APIKey: testKey})

	const body = `{"room":"general","data":1}`
	tests := []struct {
		name   string
		srv    string
		auth   string // the Authorization header; empty sends none
		status int
		code   string
	}{
		{"KeyRight", "keyed", "Bearer " + testKey, 200, ""},
		{"KeySchemeAnyCase", "keyed", "bearer " + testKey, 200, ""},
		{"KeyMissing", "keyed", "", 401, "unauthorized"},
		{"KeyWrong", "keyed", "Bearer not-the-key", 401, "unauthorized"},
		{"KeyPrefix", "keyed", "Bearer " + testKey[:4], 401, "unauthorized"},
		{"KeyLonger", "keyed", "Bearer " + testKey + "x", 401, "unauthorized"},
		{"SchemeBasic", "keyed", "Basic " + testKey, 401, "unauthorized"},
		{"SchemeAlone", "keyed", "Bearer", 401, "unauthorized"},
		{"SchemeEmptyKey", "keyed", "Bearer  ", 401, "unauthorized"},
		{"KeyWithoutScheme", "keyed", testKey, 401, "unauthorized"},
		{"ProdKeyRight", "keyedProd", "Bearer " + testKey, 200, ""},
		{"ProdKeyWrong", "keyedProd", "Bearer nope", 401, "unauthorized"},
		{"DevWithoutKey", "open", "", 200, ""},
		{"DevIgnoresHeader", "open", "Bearer whatever", 200, ""},
		{"Disabled", "disabled", "", 403, "forbidden"},
		{"DisabledWithAHeader", "disabled", "Bearer " + testKey, 403, "forbidden"},
	}
	servers := map[string]string{"keyed": keyed.URL, "open": open.URL, "disabled": disabled.URL, "keyedProd": keyedProd.URL}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, servers[tt.srv]+"/api/publish", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r := readResponse(t, res)
			if tt.status == 200 {
				var pos position
				r.ok(t, &pos)
				return
			}
			r.wantError(t, tt.status, tt.code)
			if tt.status == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer WWW-Authenticate header: %q", r.Header.Get("WWW-Authenticate"))
			}
			if strings.Contains(string(r.Body), testKey) {
				t.Errorf("error body echoes the key: %s", r.Body)
			}
		})
	}

	t.Run("DisabledMessage", func(t *testing.T) {
		t.Parallel()
		r := call(t, disabled.URL, "", http.MethodGet, "/api/instances", "")
		r.wantError(t, 403, "forbidden")
		if !strings.Contains(string(r.Body), "--api-key") {
			t.Errorf("body %s does not say how to enable the API", r.Body)
		}
	})
	t.Run("AuthBeforeRouting", func(t *testing.T) {
		t.Parallel()
		call(t, keyed.URL, "", http.MethodGet, "/api/no-such-route", "").wantError(t, 401, "unauthorized")
		call(t, disabled.URL, "", http.MethodGet, "/api/no-such-route", "").wantError(t, 403, "forbidden")
		call(t, keyed.URL, testKey, http.MethodGet, "/api/no-such-route", "").wantError(t, 404, "not_found")
	})
	t.Run("HealthNeedsNoKey", func(t *testing.T) {
		t.Parallel()
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if r := call(t, disabled.URL, "", http.MethodGet, path, ""); r.Status != 200 {
				t.Errorf("GET %s = %d, want 200", path, r.Status)
			}
		}
	})
}

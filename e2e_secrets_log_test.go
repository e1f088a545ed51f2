package switchboard_test

// Tokens and API keys never reach the log: an instance logging everything
// (debug) into a buffer meets bad, expired and forged tokens at hello and
// refresh, and wrong API keys, and its log holds none of them.

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// syncBuffer is a bytes.Buffer safe for the instance's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestLog_NoTokensOrKeys(t *testing.T) {
	t.Parallel()
	secret := []byte("log-test-secret-0123456789")
	apiKey := "the-real-api-key-8d1f3b"
	var logs syncBuffer
	srv := wstest.Start(t, switchboard.Config{
		JWTSecret: secret, APIKey: apiKey,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})

	forgedSecret := []byte("not-the-secret-0123456789")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":4102444800}`)) + "."
	secrets := map[string]string{
		"expired":      sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(-time.Hour)}),
		"forged":       sign(t, forgedSecret, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)}),
		"alg none":     none,
		"malformed":    "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2lnbmF0dXJlLXNlY3JldC1wYXJ0",
		"not a JWT":    "opaque-session-secret-5c2e9a",
		"valid":        sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)}),
		"refresh bad":  sign(t, forgedSecret, auth.Claims{User: "alice", Expires: time.Now().Add(2 * time.Hour)}),
		"refresh old":  sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(-time.Hour)}),
		"api key":      apiKey,
		"wrong key":    "wrong-api-key-77ab21",
		"near key":     apiKey + "x",
		"token as key": sign(t, secret, auth.Claims{User: "svc", Expires: time.Now().Add(time.Hour)}),
	}

	// Refused at hello.
	for _, name := range []string{"expired", "forged", "alg none", "malformed", "not a JWT"} {
		expectRefused(t, srv, secrets[name])
	}
	// A valid session refreshing with bad tokens.
	c := wstest.Dial(t, srv.WS, wstest.Hello{Token: secrets["valid"]})
	for i, name := range []string{"refresh bad", "refresh old"} {
		c.Send(wstest.Frame("refresh", "id", i+1, "token", secrets[name]))
		c.ExpectError(protocol.CodeForbidden)
	}
	// The API with wrong keys, a token for a key, and the right key.
	for _, name := range []string{"wrong key", "near key", "token as key"} {
		if code, _ := get(t, http.MethodGet, srv.URL+"/api/instances", secrets[name], ""); code != http.StatusUnauthorized {
			t.Errorf("API with the %s: %d, want 401", name, code)
		}
	}
	if code, _ := get(t, http.MethodGet, srv.URL+"/api/no-such-route", apiKey, ""); code != http.StatusNotFound {
		t.Errorf("API with the key on an unknown route: %d, want 404", code)
	}
	srv.Stop(t)

	out := logs.String()
	// The log did record these failures: the test looks where they are.
	for _, want := range []string{"hello refused", "api request failed", `"code":"unauthorized"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("the log holds no %q; the failures were not logged where this test looks:\n%s", want, out)
		}
	}
	for name, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("the log holds the %s", name)
		}
		// Nor any signature or payload of a token on its own.
		for _, part := range strings.Split(s, ".") {
			if len(part) >= 16 && strings.Contains(out, part) {
				t.Errorf("the log holds a part of the %s: %q", name, part)
			}
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}

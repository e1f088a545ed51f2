package switchboard_test

// The leeway rule (docs/protocol.md, "Auth"): the server accepts a token
// until exp plus a leeway for clock skew (auth.DefaultLeeway), at hello and
// at refresh alike, and a session lives exactly as long: until exp plus the
// leeway. A token inside the leeway thus opens a session that lasts the
// rest of it, never a welcome followed by 4003 a moment later; a token past
// it is refused at hello.

import (
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// expiredBy signs a token for user whose exp is ago in the past (a whole
// second, as JWT times are), and returns it with its exp.
func expiredBy(t *testing.T, secret []byte, user string, ago time.Duration) (string, time.Time) {
	t.Helper()
	exp := time.Now().Add(-ago).Truncate(time.Second)
	return sign(t, secret, auth.Claims{User: user, Expires: exp}), exp
}

// closedAt reads c until the server closes it (frames before are skipped)
// and returns the close code and when the close arrived.
func closedAt(t *testing.T, c *wstest.Conn, timeout time.Duration) (int, time.Time) {
	t.Helper()
	for {
		_, err := c.NextErr(timeout)
		if err == nil {
			continue // pongs, presence: the session is alive
		}
		at := time.Now()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("want a close, got %v", err)
		}
		return ce.Code, at
	}
}

// TestAuth_LeewayAtHello: the two sides of the boundary at hello, over real
// connections with real signed tokens.
func TestAuth_LeewayAtHello(t *testing.T) {
	t.Parallel()
	secret := []byte("leeway-test-secret")
	srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})

	t.Run("InsideTheLeeway", func(t *testing.T) {
		t.Parallel()
		// exp 2-3 s ago: inside the 5 s leeway, 2-3 s of it left.
		token, exp := expiredBy(t, secret, "alice", 2*time.Second)
		until := exp.Add(auth.DefaultLeeway)
		c := wstest.Dial(t, srv.WS, wstest.Hello{Token: token})
		// The session works: before this rule, 4003 came right after
		// welcome.
		c.Join("room")
		c.Ping()
		code, at := closedAt(t, c, time.Until(until)+10*time.Second)
		if code != protocol.CloseUnauthorized {
			t.Fatalf("closed with %d, want 4003", code)
		}
		// Never before exp + leeway: the moment a new hello with this
		// token would be refused.
		if early := until.Sub(at); early > 50*time.Millisecond {
			t.Errorf("closed %v before exp+leeway; want the session to last until exp+leeway", early)
		}
		t.Logf("exp %s, closed with 4003 %v after exp (leeway %v)", exp.Format(time.TimeOnly), at.Sub(exp).Round(time.Millisecond), auth.DefaultLeeway)
	})

	t.Run("PastTheLeeway", func(t *testing.T) {
		t.Parallel()
		// exp 7-8 s ago: the leeway ended 2-3 s ago.
		token, _ := expiredBy(t, secret, "bob", auth.DefaultLeeway+2*time.Second)
		expectRefused(t, srv, token)
	})
}

// TestAuth_LeewayAtRefresh: a refresh inside the leeway is acknowledged and
// the session lives until that token's exp plus the leeway; one past it is
// refused with forbidden and the session keeps its previous token.
func TestAuth_LeewayAtRefresh(t *testing.T) {
	t.Parallel()
	secret := []byte("leeway-test-secret")
	srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})

	past, _ := expiredBy(t, secret, "alice", auth.DefaultLeeway+2*time.Second)
	c := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})})
	c.Send(wstest.Frame("refresh", "id", 1, "token", past))
	if e := c.ExpectError(protocol.CodeForbidden); e.Message != "token expired" {
		t.Errorf("refresh past the leeway: %s, want forbidden \"token expired\"", wstest.Describe(e))
	}
	c.Ping() // still open, on its hour-long token

	inside, exp := expiredBy(t, secret, "alice", 2*time.Second)
	until := exp.Add(auth.DefaultLeeway)
	c.Send(wstest.Frame("refresh", "id", 2, "token", inside))
	if ack := c.Expect(protocol.TypeAck); string(ack.ID) != "2" {
		t.Errorf("refresh inside the leeway: %s, want the ack of id 2", wstest.Describe(ack))
	}
	c.Ping()
	code, at := closedAt(t, c, time.Until(until)+10*time.Second)
	if code != protocol.CloseUnauthorized {
		t.Fatalf("closed with %d, want 4003 at the refreshed token's exp+leeway", code)
	}
	if early := until.Sub(at); early > 50*time.Millisecond {
		t.Errorf("closed %v before the refreshed token's exp+leeway", early)
	}
}

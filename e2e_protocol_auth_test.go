package switchboard_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProtocol_Auth covers the "Auth" section.
func TestProtocol_Auth(t *testing.T) {
	t.Parallel()

	t.Run("HS256", func(t *testing.T) {
		t.Parallel()
		secret := []byte("hs256-secret")
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		c := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})})
		if got, want := c.Welcome.User, "alice"; got != want {
			t.Errorf("welcome.user = %q, want %q", got, want)
		}
		c.Join("general")
		expectRefused(t, srv, sign(t, []byte("not the secret"), auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)}))
		// Without --dev, hello.user alone is no identity.
		expectRefused(t, srv, "")
	})

	t.Run("RS256", func(t *testing.T) {
		t.Parallel()
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		srv := wstest.Start(t, switchboard.Config{JWTPublicKeyPEM: publicPEM(t, key.Public())})
		c := wstest.Dial(t, srv.WS, wstest.Hello{Token: signWith(t, jwt.SigningMethodRS256, key, "alice", time.Hour)})
		if got, want := c.Welcome.User, "alice"; got != want {
			t.Errorf("welcome.user = %q, want %q", got, want)
		}
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		expectRefused(t, srv, signWith(t, jwt.SigningMethodRS256, other, "alice", time.Hour))
		// No HMAC secret is configured: an HS256 token must not pass,
		// whatever it was signed with (algorithm confusion).
		expectRefused(t, srv, sign(t, publicPEM(t, key.Public()), auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)}))
	})

	t.Run("ES256", func(t *testing.T) {
		t.Parallel()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		srv := wstest.Start(t, switchboard.Config{JWTPublicKeyPEM: publicPEM(t, key.Public())})
		c := wstest.Dial(t, srv.WS, wstest.Hello{Token: signWith(t, jwt.SigningMethodES256, key, "alice", time.Hour)})
		if got, want := c.Welcome.User, "alice"; got != want {
			t.Errorf("welcome.user = %q, want %q", got, want)
		}
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		expectRefused(t, srv, signWith(t, jwt.SigningMethodES256, other, "alice", time.Hour))
	})

	t.Run("expired closes 4003", func(t *testing.T) {
		t.Parallel()
		secret := []byte("expiry")
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		// Expired before hello (beyond any clock-skew leeway).
		expectRefused(t, srv, sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(-time.Minute)}))

		// Expiring during the session, with no refresh: closed at exp
		// plus the leeway (see e2e_auth_leeway_test.go).
		tok := sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(2 * time.Second)})
		c := wstest.Dial(t, srv.WS, wstest.Hello{Token: tok})
		start := time.Now()
		if code, _ := closedAt(t, c, 2*time.Second+auth.DefaultLeeway+wstest.Timeout); code != protocol.CloseUnauthorized {
			t.Fatalf("closed with %d, want 4003", code)
		}
		if waited := time.Since(start); waited > 3*time.Second+auth.DefaultLeeway {
			t.Errorf("closed %v after hello, want within the token's 2s and the %v leeway", waited, auth.DefaultLeeway)
		}
	})

	t.Run("refresh extends", func(t *testing.T) {
		t.Parallel()
		secret := []byte("refresh")
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		tok := sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(2 * time.Second)})
		refreshed := wstest.Dial(t, srv.WS, wstest.Hello{Token: tok})
		control := wstest.Dial(t, srv.WS, wstest.Hello{Token: tok})
		refreshed.Send(wstest.Frame("refresh", "id", 1, "token", sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})))
		if ack := refreshed.Expect(protocol.TypeAck); string(ack.ID) != "1" {
			t.Errorf("refresh ack id = %s, want 1", ack.ID)
		}
		// Once the session with the same old token is closed, the old
		// expiry has passed: the refreshed session must still be open.
		if code, _ := closedAt(t, control, 2*time.Second+auth.DefaultLeeway+wstest.Timeout); code != protocol.CloseUnauthorized {
			t.Fatalf("the control session closed with %d, want 4003", code)
		}
		refreshed.Ping()
		wstest.Eventually(t, wstest.Timeout, "only the refreshed session to remain", func() bool {
			return srv.Hub().SessionCount() == 1
		})
	})

	t.Run("refresh with narrower rooms leaves them", func(t *testing.T) {
		t.Parallel()
		secret := []byte("refresh-narrower")
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		hour := time.Now().Add(time.Hour)
		c := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{User: "alice", Expires: hour, Rooms: []string{"a.*", "b.*"}})})
		c.Join("a.one")
		c.Join("b.one")
		pub := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{User: "bob", Expires: hour})})
		pub.Join("a.one")
		pub.Join("b.one")

		c.Send(wstest.Frame("refresh", "id", 1, "token", sign(t, secret, auth.Claims{User: "alice", Expires: hour, Rooms: []string{"a.*"}})))
		left := c.Expect(protocol.TypeLeft)
		if left.Room != "b.one" || len(left.ID) != 0 {
			t.Errorf("got left %s (id %s), want b.one without id", left.Room, left.ID)
		}
		if ack := c.Expect(protocol.TypeAck); string(ack.ID) != "1" {
			t.Errorf("refresh ack id = %s, want 1", ack.ID)
		}
		// Still in a.one and its inbox, no longer in b.one.
		pub.Send(wstest.Frame("publish", "id", 1, "room", "b.one", "data", "gone"))
		pub.Expect(protocol.TypeAck)
		pub.Send(wstest.Frame("publish", "id", 2, "room", "a.one", "data", "here"))
		pub.Expect(protocol.TypeAck)
		if m := c.Expect(protocol.TypeMessage); m.Room != "a.one" {
			t.Errorf("got a message of %s, want only a.one's", m.Room)
		}
		c.Send(wstest.Frame("leave", "id", 2, "room", "b.one"))
		checkError(t, c.Next(), "2", protocol.CodeNotJoined)
		c.Send(wstest.Frame("publish", "id", 3, "room", "@alice", "data", 1))
		checkAck(t, c.Expect(protocol.TypeAck), "3", "@alice", 1)
	})

	t.Run("rooms patterns", func(t *testing.T) {
		t.Parallel()
		secret := []byte("rooms")
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		c := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{
			User: "alice", Expires: time.Now().Add(time.Hour), Rooms: []string{"chat.*", "room-?"},
		})})
		for _, room := range []string{"chat.general", "chat.", "room-1"} {
			c.Join(room)
		}
		for i, room := range []string{"chat", "room-10", "news", "xchat.general"} {
			c.Send(wstest.Frame("join", "id", i, "room", room))
			checkError(t, c.Next(), fmt.Sprint(i), protocol.CodeForbidden)
		}
		for i, typ := range []string{"presence", "history"} {
			c.Send(wstest.Frame(typ, "id", 10+i, "room", "news"))
			checkError(t, c.Next(), fmt.Sprint(10+i), protocol.CodeForbidden)
		}
		// The own inbox is always there.
		c.Send(wstest.Frame("publish", "id", 20, "room", "@alice", "data", 1))
		checkAck(t, c.Expect(protocol.TypeAck), "20", "@alice", 1)

		// An empty rooms claim allows no room at all.
		none := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{
			User: "bob", Expires: time.Now().Add(time.Hour), HasRooms: true,
		})})
		none.Send(wstest.Frame("join", "id", 1, "room", "general"))
		checkError(t, none.Next(), "1", protocol.CodeForbidden)
	})

	t.Run("publish patterns", func(t *testing.T) {
		t.Parallel()
		secret := []byte("publish")
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		c := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{
			User: "alice", Expires: time.Now().Add(time.Hour), Rooms: []string{"chat.*"}, Publish: []string{"chat.announce"},
		})})
		c.Join("chat.general")
		c.Join("chat.announce")
		c.Send(wstest.Frame("publish", "id", 1, "room", "chat.general", "data", 1))
		checkError(t, c.Next(), "1", protocol.CodeForbidden)
		c.Send(wstest.Frame("publish", "id", 2, "room", "chat.announce", "data", 1))
		checkAck(t, c.Expect(protocol.TypeAck), "2", "chat.announce", 1)

		// Without a publish claim, publishing follows rooms.
		d := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{
			User: "bob", Expires: time.Now().Add(time.Hour), Rooms: []string{"chat.*"},
		})})
		d.Join("chat.general")
		d.Send(wstest.Frame("publish", "id", 3, "room", "chat.general", "data", 1))
		checkAck(t, d.Expect(protocol.TypeAck), "3", "chat.general", 1)

		// An empty publish claim: read-only.
		ro := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{
			User: "carol", Expires: time.Now().Add(time.Hour), HasPublish: true,
		})})
		ro.Join("anything")
		ro.Send(wstest.Frame("publish", "id", 4, "room", "anything", "data", 1))
		checkError(t, ro.Next(), "4", protocol.CodeForbidden)
	})

	t.Run("inbox of another user forbidden", func(t *testing.T) {
		t.Parallel()
		secret := []byte("inbox")
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{User: "bob", Expires: time.Now().Add(time.Hour)})})
		// Even a token whose patterns would match everything.
		alice := wstest.Dial(t, srv.WS, wstest.Hello{Token: sign(t, secret, auth.Claims{
			User: "alice", Expires: time.Now().Add(time.Hour), Rooms: []string{"*"}, Publish: []string{"*"},
		})})
		for i, typ := range []string{"join", "presence", "history"} {
			alice.Send(wstest.Frame(typ, "id", i, "room", "@bob"))
			checkError(t, alice.Next(), fmt.Sprint(i), protocol.CodeForbidden)
		}
		alice.Send(wstest.Frame("publish", "id", 5, "room", "@bob", "data", 1))
		f := alice.Next()
		if f.Type != protocol.TypeError || (f.Code != protocol.CodeForbidden && f.Code != protocol.CodeNotJoined) {
			t.Errorf("publish to @bob got %s, want forbidden or not_joined", wstest.Describe(f))
		}
		// send is the way to reach bob.
		alice.Send(wstest.Frame("send", "id", 6, "to", "bob", "data", "hi"))
		checkAck(t, alice.Expect(protocol.TypeAck), "6", "@bob", 1)
		bob.ExpectMessage("@bob", 1)
	})

	t.Run("no-direct", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{NoDirect: true})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		tab := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		alice.Send(wstest.Frame("send", "id", 1, "to", "bob", "data", "hi"))
		checkError(t, alice.Next(), "1", protocol.CodeForbidden)
		if got := bob.Ping(); len(got) != 0 {
			t.Errorf("bob got %s, want nothing", wstest.Describe(got[0]))
		}
		// A user may still reach its own other devices.
		alice.Send(wstest.Frame("send", "id", 2, "to", "alice", "data", "note"))
		checkAck(t, alice.Expect(protocol.TypeAck), "2", "@alice", 1)
		tab.ExpectMessage("@alice", 1)
	})

	t.Run("origin check 1008", func(t *testing.T) {
		t.Parallel()
		secret := []byte("origin")
		hello := func() string {
			return wstest.Frame("hello", "token", sign(t, secret, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)}))
		}
		srv := wstest.Start(t, switchboard.Config{JWTSecret: secret})
		// The page's own origin: its scheme and host:port.
		own := func(s *wstest.Server) string {
			u, err := url.Parse(s.URL)
			if err != nil {
				t.Fatal(err)
			}
			return u.Scheme + "://" + u.Host
		}

		bad := wstest.DialRaw(t, srv.WS, http.Header{"Origin": {"https://evil.example"}})
		if before := bad.ExpectClose(protocol.ClosePolicy); len(before) != 0 {
			t.Errorf("got %s before 1008", wstest.Describe(before[0]))
		}
		// The default is the request's own host; no Origin (not a browser)
		// passes too.
		for _, h := range []http.Header{{"Origin": {own(srv)}}, nil} {
			c := wstest.DialRaw(t, srv.WS, h)
			c.Send(hello())
			c.Expect(protocol.TypeWelcome)
		}

		listed := wstest.Start(t, switchboard.Config{JWTSecret: secret, AllowedOrigins: []string{"https://app.example"}})
		ok := wstest.DialRaw(t, listed.WS, http.Header{"Origin": {"https://app.example"}})
		ok.Send(hello())
		ok.Expect(protocol.TypeWelcome)
		for _, origin := range []string{"https://evil.example", own(listed)} {
			c := wstest.DialRaw(t, listed.WS, http.Header{"Origin": {origin}})
			c.ExpectClose(protocol.ClosePolicy)
		}

		star := wstest.Start(t, switchboard.Config{JWTSecret: secret, AllowedOrigins: []string{"*"}})
		c := wstest.DialRaw(t, star.WS, http.Header{"Origin": {"https://whoever.example"}})
		c.Send(hello())
		c.Expect(protocol.TypeWelcome)
	})
}

// expectRefused sends hello with token (or with only a user when token is
// empty) and expects close 4003 and nothing before it.
func expectRefused(t *testing.T, srv *wstest.Server, token string) {
	t.Helper()
	c := wstest.DialRaw(t, srv.WS, nil)
	if token == "" {
		c.Send(wstest.Frame("hello", "user", "alice"))
	} else {
		c.Send(wstest.Frame("hello", "token", token))
	}
	if before := c.ExpectClose(protocol.CloseUnauthorized); len(before) != 0 {
		t.Errorf("got %s before 4003, want nothing", wstest.Describe(before[0]))
	}
}

// publicPEM encodes pub as a PKIX "PUBLIC KEY" PEM block.
func publicPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// signWith signs a token for user, valid for ttl, with an asymmetric key.
func signWith(t *testing.T, method jwt.SigningMethod, key crypto.Signer, user string, ttl time.Duration) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, jwt.MapClaims{
		"sub": user, "iat": time.Now().Unix(), "exp": time.Now().Add(ttl).Unix(),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

package switchboard_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// hostile is one row of TestHostile_Inputs: something a broken client or an
// attacker sends, and the answer PROTOCOL.md and docs/ promise for it.
//
// What is sent is one of:
//   - frames: text frames from mallory's session, which has said hello and
//     joined "lobby" and "flood-1";
//   - raw: bytes written on that session's socket (frame-level abuse);
//   - hello: the first frame of a fresh connection;
//   - api: an HTTP request.
//
// What must come back: for a WebSocket row either the close code (close;
// code, if set, must appear in an error frame before it) or the first
// answer (an error frame with code, or a frame of type reply) with id;
// after such an answer the session must still answer a ping. For an API
// row the status and, for errors, the JSON error code.
type hostile struct {
	name   string
	frames []string
	raw    []byte
	hello  string
	api    *apiCall

	reply  string
	code   string
	id     string
	close  int
	status int
	// relayed is the data the bystander in "lobby" must receive because of
	// this row (an accepted publish); empty means nothing.
	relayed string
	// check, if set, looks at the answer's raw bytes (frame or HTTP body).
	check func(t *testing.T, answer []byte)
}

// apiCall is an HTTP request of a hostile row. key "" sends no
// Authorization header; hostileKey is the right key.
type apiCall struct {
	method, path, key, body string
	header                  map[string]string
}

const hostileKey = "hostile-api-key"

// nest returns JSON nesting n arrays around 1.
func nest(n int) string { return strings.Repeat("[", n) + "1" + strings.Repeat("]", n) }

// hostileEnv is the instance of TestHostile_Inputs and its bystander.
type hostileEnv struct {
	srv       *wstest.Server
	secret    []byte
	rsaKey    *rsa.PrivateKey
	bystander *wstest.Conn
	probes    int
}

func (e *hostileEnv) token(t *testing.T, user string, rooms ...string) string {
	return sign(t, e.secret, auth.Claims{User: user, Expires: time.Now().Add(time.Hour), Rooms: rooms})
}

// hmacToken signs claims with HS256 and key, whatever key is.
func hmacToken(t *testing.T, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsignedToken is a token with alg "none" and no signature.
func unsignedToken(claims string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(claims)) + "."
}

func hostileRows(t *testing.T, e *hostileEnv) []hostile {
	pubPEM := publicPEM(t, &e.rsaKey.PublicKey)
	future := time.Now().Add(time.Hour).Unix()
	mallory := jwt.MapClaims{"sub": "mallory", "exp": future}
	helloWith := func(tok string) string { return wstest.Frame("hello", "token", tok) }
	long := strings.Repeat("r", protocol.MaxRoomLen+1)
	tooLargeFrame := wstest.MaskedFrame(0x81, []byte(`{"type":"publish","id":1,"room":"lobby","data":"`+strings.Repeat("x", 70000)+`"}`))
	huge := []byte{0x81, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4} // 2^63 bytes announced
	flood := func(n int, frame func(i int) string) []string {
		fs := make([]string, n)
		for i := range fs {
			fs[i] = frame(i)
		}
		return fs
	}
	api := func(method, path, key, body string) *apiCall {
		return &apiCall{method: method, path: path, key: key, body: body}
	}
	k := hostileKey

	return []hostile{
		// Malformed JSON and frames.
		{name: "not JSON", frames: []string{`hello there`}, code: "bad_request"},
		{name: "truncated JSON", frames: []string{`{"type":"ping","id":1`}, code: "bad_request"},
		{name: "JSON array", frames: []string{`[{"type":"ping"}]`}, code: "bad_request"},
		{name: "JSON string", frames: []string{`"ping"`}, code: "bad_request"},
		{name: "JSON null", frames: []string{`null`}, code: "bad_request"},
		{name: "empty object (no type)", frames: []string{`{}`}, code: "bad_request"},
		{name: "TYPE in capitals", frames: []string{`{"TYPE":"ping","id":1}`}, code: "bad_request", id: "1"},
		{name: "type given twice", frames: []string{`{"type":"ping","type":"join","id":2}`}, code: "bad_request", id: "2"},
		{name: "unknown type", frames: []string{`{"type":"explode","id":3}`}, code: "unknown_type", id: "3"},
		{name: "type is a number", frames: []string{`{"type":42,"id":4}`}, code: "bad_request", id: "4"},
		{name: "room is a number", frames: []string{`{"type":"join","id":5,"room":42}`}, code: "bad_request", id: "5"},
		{name: "since.offset negative", frames: []string{`{"type":"join","id":6,"room":"lobby","since":{"epoch":"e","offset":-1}}`}, code: "bad_request", id: "6"},
		{name: "since without epoch", frames: []string{`{"type":"join","id":7,"room":"lobby","since":{"offset":3}}`}, code: "bad_request", id: "7"},
		{name: "publish without data", frames: []string{`{"type":"publish","id":8,"room":"lobby"}`}, code: "bad_request", id: "8"},
		{name: "publish key of 65 bytes", frames: []string{`{"type":"publish","id":9,"room":"lobby","data":1,"key":"` + strings.Repeat("k", 65) + `"}`}, code: "bad_request", id: "9"},
		{name: "lone surrogate escape in data", frames: []string{`{"type":"publish","id":10,"room":"lobby","data":"\ud800"}`}, code: "bad_request", id: "10"},
		{name: "history limit negative", frames: []string{`{"type":"history","id":11,"room":"lobby","limit":-1}`}, code: "bad_request", id: "11"},
		{name: "refresh without token", frames: []string{`{"type":"refresh","id":12}`}, code: "bad_request", id: "12"},
		{name: "binary frame", raw: wstest.MaskedFrame(0x82, []byte(`{"type":"ping","id":1}`)), code: "bad_request"},
		{name: "malformed UTF-8 text frame", raw: wstest.MaskedFrame(0x81, []byte("{\"type\":\"ping\",\"id\":\"\xff\xfe\"}")), close: 1007},
		// Huge and odd ids.
		{name: "id of 200 bytes", frames: []string{`{"type":"ping","id":"` + strings.Repeat("i", 200) + `"}`}, code: "bad_request"},
		{name: "id number of 300 digits", frames: []string{`{"type":"ping","id":` + strings.Repeat("9", 300) + `}`}, code: "bad_request"},
		{name: "id is an object", frames: []string{`{"type":"ping","id":{"a":1}}`}, code: "bad_request"},
		{name: "id 2^64 (a number, echoed)", frames: []string{`{"type":"ping","id":18446744073709551616}`}, reply: "pong", id: "18446744073709551616"},
		// Deep nesting (issue 12: 9,000 levels were relayed).
		{name: "data nested 9,000 deep", frames: []string{`{"type":"publish","id":"deep","room":"lobby","data":` + nest(9000) + `}`}, code: "bad_request", id: `"deep"`},
		{name: "data nested 65 deep", frames: []string{`{"type":"publish","id":"d65","room":"lobby","data":` + nest(protocol.MaxDataDepth+1) + `}`}, code: "bad_request", id: `"d65"`},
		{name: "unknown field nested 9,000 deep", frames: []string{`{"type":"ping","id":13,"x":` + nest(9000) + `}`}, code: "bad_request", id: "13"},
		{name: "data nested 64 deep (the limit)", frames: []string{`{"type":"publish","id":"d64","room":"lobby","data":` + nest(protocol.MaxDataDepth) + `}`}, reply: "ack", id: `"d64"`, relayed: nest(protocol.MaxDataDepth)},
		// Room names (1-128 of [A-Za-z0-9_.:-]; auth.Match is byte-exact).
		{name: "join empty room", frames: []string{wstest.Frame("join", "id", 20, "room", "")}, code: "bad_room", id: "20"},
		{name: "join room of 129 chars", frames: []string{wstest.Frame("join", "id", 21, "room", long)}, code: "bad_room", id: "21"},
		{name: "join room with a space", frames: []string{wstest.Frame("join", "id", 22, "room", "lob by")}, code: "bad_room", id: "22"},
		{name: "join room with a slash", frames: []string{wstest.Frame("join", "id", 23, "room", "lobby/../admin")}, code: "bad_room", id: "23"},
		{name: "join room with NUL", frames: []string{wstest.Frame("join", "id", 24, "room", "lobby\x00")}, code: "bad_room", id: "24"},
		{name: "join Cyrillic lookalike of lobby", frames: []string{wstest.Frame("join", "id", 25, "room", "lobbу")}, code: "bad_room", id: "25"},
		{name: "join fullwidth lookalike of lobby", frames: []string{wstest.Frame("join", "id", 26, "room", "ｌobby")}, code: "bad_room", id: "26"},
		{name: "join LOBBY (case) when granted lobby", frames: []string{wstest.Frame("join", "id", 27, "room", "LOBBY")}, code: "forbidden", id: "27"},
		{name: "join room outside the token's rooms", frames: []string{wstest.Frame("join", "id", 28, "room", "admin")}, code: "forbidden", id: "28"},
		{name: "join a bare @", frames: []string{wstest.Frame("join", "id", 29, "room", "@")}, code: "bad_room", id: "29"},
		// Other users' inboxes.
		{name: "join another user's inbox", frames: []string{wstest.Frame("join", "id", 30, "room", "@bystander")}, code: "forbidden", id: "30"},
		{name: "presence of another user's inbox", frames: []string{wstest.Frame("presence", "id", 31, "room", "@bystander")}, code: "forbidden", id: "31"},
		{name: "history of another user's inbox", frames: []string{wstest.Frame("history", "id", 32, "room", "@bystander")}, code: "forbidden", id: "32"},
		{name: "publish to another user's inbox", frames: []string{wstest.Frame("publish", "id", 33, "room", "@bystander", "data", 1)}, code: "not_joined", id: "33"},
		{name: "resume another user's inbox", hello: `{"type":"hello","token":"` + e.token(t, "mallory", "lobby") + `","resume":{"@bystander":{"epoch":"e","offset":0}}}`, code: "forbidden"},
		{name: "send to an invalid user id", frames: []string{wstest.Frame("send", "id", 34, "to", "bob smith", "data", 1)}, code: "bad_request", id: "34"},
		{name: "publish to a room not joined", frames: []string{wstest.Frame("publish", "id", 35, "room", "flood-9", "data", 1)}, code: "not_joined", id: "35"},
		// History limit 10^9: capped at --history-size (docs/protocol.md, "Rooms").
		{name: "history limit 10^9", frames: []string{wstest.Frame("history", "id", 36, "room", "lobby", "limit", 1000000000)}, reply: "history", id: "36",
			check: func(t *testing.T, b []byte) {
				var h struct{ Messages []json.RawMessage }
				if err := json.Unmarshal(b, &h); err != nil || len(h.Messages) > switchboard.DefaultHistorySize {
					t.Errorf("history answer of %d messages (%v), want at most %d", len(h.Messages), err, switchboard.DefaultHistorySize)
				}
			}},
		// Tokens: every bad one is 4003 at hello.
		{name: "frame before hello", hello: wstest.Frame("join", "id", 1, "room", "lobby"), close: 4003},
		{name: "hello without token", hello: `{"type":"hello"}`, close: 4003},
		{name: "hello with dev-mode user, no token", hello: `{"type":"hello","user":"bystander"}`, close: 4003},
		{name: "garbage token", hello: helloWith("not.a.token"), close: 4003},
		{name: "forged signature", hello: helloWith(hmacToken(t, []byte("someone else's secret, 32 bytes"), mallory)), close: 4003},
		{name: "expired token", hello: helloWith(hmacToken(t, e.secret, jwt.MapClaims{"sub": "mallory", "exp": time.Now().Add(-time.Hour).Unix()})), close: 4003},
		{name: "token without exp", hello: helloWith(hmacToken(t, e.secret, jwt.MapClaims{"sub": "mallory"})), close: 4003},
		{name: "token not valid yet (nbf)", hello: helloWith(hmacToken(t, e.secret, jwt.MapClaims{"sub": "mallory", "exp": future, "nbf": time.Now().Add(time.Hour).Unix()})), close: 4003},
		{name: "alg none token", hello: helloWith(unsignedToken(`{"sub":"mallory","exp":` + fmt.Sprint(future) + `}`)), close: 4003},
		{name: "HS256 signed with the RSA public key (HS/RS swap)", hello: helloWith(hmacToken(t, pubPEM, mallory)), close: 4003},
		{name: "token with sub missing", hello: helloWith(hmacToken(t, e.secret, jwt.MapClaims{"exp": future})), close: 4003},
		{name: "token granting @bystander by pattern", hello: helloWith(hmacToken(t, e.secret, jwt.MapClaims{"sub": "mallory", "exp": future, "rooms": []string{"@bystander"}})), close: 4003},
		{name: "hello resuming another user's session", hello: `{"type":"hello","token":"` + e.token(t, "mallory", "lobby") + `","session":"` + e.bystander.Welcome.Session + `"}`, reply: "welcome",
			check: func(t *testing.T, b []byte) {
				var w struct{ Session, User string }
				if err := json.Unmarshal(b, &w); err != nil || w.User != "mallory" || w.Session == "" || w.Session == e.bystander.Welcome.Session {
					t.Errorf("welcome %s: want a new session of mallory, not the bystander's %s", b, e.bystander.Welcome.Session)
				}
			}},
		// Frame size (--max-frame 65536) and lengths.
		{name: "text frame of 70,000 bytes", raw: tooLargeFrame, close: 1009},
		{name: "frame length 2^63", raw: huge, close: 1002},
		// Floods (--rate 50/s, --burst 100): refusals, then 4029.
		{name: "flood of 400 publishes", frames: flood(400, func(i int) string { return wstest.Frame("publish", "id", i, "room", "flood-1", "data", i) }), code: "rate_limited", close: 4029},
		{name: "flood of 400 joins", frames: flood(400, func(i int) string { return wstest.Frame("join", "id", i, "room", fmt.Sprintf("flood-j%d", i)) }), code: "rate_limited", close: 4029},
		{name: "flood of 50 invalid frames", frames: flood(50, func(int) string { return "{" }), code: "bad_request", close: 1008},

		// The HTTP API.
		{name: "API: no Authorization", api: api("POST", "/api/publish", "", `{"room":"lobby","data":1}`), status: 401, code: "unauthorized"},
		{name: "API: wrong key", api: api("POST", "/api/publish", "wrong", `{"room":"lobby","data":1}`), status: 401, code: "unauthorized"},
		{name: "API: Basic scheme", api: &apiCall{method: "POST", path: "/api/publish", body: `{"room":"lobby","data":1}`, header: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+k))}}, status: 401, code: "unauthorized"},
		{name: "API: body not JSON", api: api("POST", "/api/publish", k, `room=lobby`), status: 400, code: "bad_request"},
		{name: "API: empty body", api: api("POST", "/api/publish", k, ``), status: 400, code: "bad_request"},
		{name: "API: body is an array", api: api("POST", "/api/publish", k, `[{"room":"lobby","data":1}]`), status: 400, code: "bad_request"},
		{name: "API: room is a number", api: api("POST", "/api/publish", k, `{"room":7,"data":1}`), status: 400, code: "bad_request"},
		{name: "API: room missing", api: api("POST", "/api/publish", k, `{"data":1}`), status: 400, code: "bad_room"},
		{name: "API: room invalid", api: api("POST", "/api/publish", k, `{"room":"lob by","data":1}`), status: 400, code: "bad_room"},
		{name: "API: data missing", api: api("POST", "/api/publish", k, `{"room":"lobby"}`), status: 400, code: "bad_request"},
		{name: "API: data nested 9,000 deep", api: api("POST", "/api/publish", k, `{"room":"lobby","data":`+nest(9000)+`}`), status: 400, code: "bad_request"},
		{name: "API: data nested 64 deep (the limit)", api: api("POST", "/api/publish", k, `{"room":"lobby","data":`+nest(protocol.MaxDataDepth)+`}`), status: 200, relayed: nest(protocol.MaxDataDepth)},
		{name: "API: field given twice", api: api("POST", "/api/publish", k, `{"room":"lobby","room":"x","data":1}`), status: 400, code: "bad_request"},
		{name: "API: send without to", api: api("POST", "/api/send", k, `{"data":1}`), status: 400, code: "bad_request"},
		{name: "API: broadcast rooms not an array", api: api("POST", "/api/broadcast", k, `{"rooms":"lobby","data":1}`), status: 400, code: "bad_request"},
		{name: "API: broadcast to 1,001 rooms", api: api("POST", "/api/broadcast", k, `{"rooms":[`+strings.TrimSuffix(strings.Repeat(`"r",`, 1001), ",")+`],"data":1}`), status: 400, code: "bad_request"},
		{name: "API: history limit 10^12", api: api("GET", "/api/rooms/lobby/history?limit=1000000000000", k, ""), status: 200,
			check: func(t *testing.T, b []byte) {
				var h struct{ Messages []json.RawMessage }
				if err := json.Unmarshal(b, &h); err != nil || len(h.Messages) > switchboard.DefaultHistorySize {
					t.Errorf("history answer of %d messages (%v), want at most %d", len(h.Messages), err, switchboard.DefaultHistorySize)
				}
			}},
		{name: "API: history limit 10^30 (overflows)", api: api("GET", "/api/rooms/lobby/history?limit=1"+strings.Repeat("0", 30), k, ""), status: 400, code: "bad_request"},
		{name: "API: history limit -1", api: api("GET", "/api/rooms/lobby/history?limit=-1", k, ""), status: 400, code: "bad_request"},
		{name: "API: history since not a number", api: api("GET", "/api/rooms/lobby/history?since=abc", k, ""), status: 400, code: "bad_request"},
		{name: "API: presence limit 10^12", api: api("GET", "/api/rooms/lobby/presence?limit=1000000000000", k, ""), status: 200},
		{name: "API: history of an invalid room", api: api("GET", "/api/rooms/lob%20by/history", k, ""), status: 400, code: "bad_room"},
		{name: "API: unknown path", api: api("GET", "/api/nothing-here", k, ""), status: 404, code: "not_found"},
		{name: "API: unknown path without key", api: api("GET", "/api/nothing-here", "", ""), status: 401, code: "unauthorized"},
		{name: "API: wrong method", api: api("GET", "/api/publish", k, ""), status: 405, code: "method_not_allowed"},
		{name: "API: DELETE a user", api: api("DELETE", "/api/users/bystander", k, ""), status: 405, code: "method_not_allowed"},
		// The HTTP limits (e2e_http_limits_test.go tries each at its bound).
		{name: "API: body over --max-body", api: api("POST", "/api/publish", k, `{"room":"lobby","data":"`+strings.Repeat("x", 2<<20)+`"}`), status: 413, code: "too_large"},
		{name: "API: 9 KiB of headers", api: &apiCall{method: "POST", path: "/api/publish", key: k, body: `{"room":"lobby","data":1}`,
			header: map[string]string{"X-Pad": strings.Repeat("p", 9<<10)}}, status: 431},
		{name: "upgrade with 512 KiB of headers", api: &apiCall{method: "GET", path: "/ws", header: map[string]string{
			"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
			"X-Pad": strings.Repeat("p", 512<<10)}}, status: 431},
	}
}

// TestHostile_Inputs sends each hostile row to a real instance (tokens
// required, an API key set, the default limits) and checks its documented
// answer; after every row, the bystander joined to "lobby" has received
// nothing it should not have and a fresh session can still hello, join
// and publish.
func TestHostile_Inputs(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := &hostileEnv{secret: []byte("hostile-test-secret-0123456789ab"), rsaKey: rsaKey}
	e.srv = wstest.Start(t, switchboard.Config{JWTSecret: e.secret, JWTPublicKeyPEM: publicPEM(t, &rsaKey.PublicKey), APIKey: hostileKey})
	e.bystander = wstest.Dial(t, e.srv.WS, wstest.Hello{Token: e.token(t, "bystander")})
	e.bystander.Send(wstest.Frame("join", "id", 1, "room", "lobby"))
	e.bystander.Expect(protocol.TypeJoined)

	rows := hostileRows(t, e)
	if len(rows) < 40 {
		t.Fatalf("%d rows, the issue asks for at least 40", len(rows))
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			switch {
			case row.api != nil:
				runAPIRow(t, e, row)
			default:
				runWSRow(t, e, row)
			}
			e.checkBystander(t, row.relayed)
		})
	}
}

// runWSRow plays a WebSocket row over a raw connection.
func runWSRow(t *testing.T, e *hostileEnv, row hostile) {
	w := wstest.DialWire(t, e.srv.WS)
	if row.hello != "" {
		w.SendText(row.hello)
	} else {
		w.SendText(wstest.Frame("hello", "token", e.token(t, "mallory", "lobby", "flood-*")))
		expectWire(t, w, "welcome", "")
		for i, room := range []string{"lobby", "flood-1"} {
			w.SendText(wstest.Frame("join", "id", i, "room", room))
			expectWire(t, w, "joined", fmt.Sprint(i))
		}
		for _, f := range row.frames {
			if err := w.TryWrite(wstest.MaskedFrame(0x81, []byte(f))); err != nil {
				break // closed by the server mid-flood; the close frame tells why
			}
		}
		if row.raw != nil {
			_ = w.TryWrite(row.raw)
		}
	}

	if row.close != 0 {
		frames, code := readUntilClose(t, w)
		if code != row.close {
			t.Fatalf("closed with %d, want %d (after %d frames)", code, row.close, len(frames))
		}
		if row.code != "" && !slicesContainsCode(frames, row.code) {
			t.Fatalf("no %s error frame before the close (got %d frames)", row.code, len(frames))
		}
		if row.code == "" && len(frames) > 0 && row.hello != "" {
			t.Fatalf("got %s before the close, want nothing", wstest.Describe(frames[0]))
		}
		return
	}
	want := row.reply
	if row.hello != "" && row.code != "" {
		expectWire(t, w, "welcome", "")
	}
	if row.code != "" {
		want = protocol.TypeError
	}
	f, raw := expectWire(t, w, want, row.id)
	if row.code != "" && f.Code != row.code {
		t.Fatalf("got error %q (%s), want %q", f.Code, f.Message, row.code)
	}
	if f.Type == protocol.TypeError && f.Message == "" {
		t.Errorf("error %q has no message", f.Code)
	}
	if row.check != nil {
		row.check(t, raw)
	}
	// The session is still open and owes nothing else.
	w.SendText(wstest.Frame("ping", "id", "alive"))
	expectWire(t, w, "pong", `"alive"`)
}

// expectWire reads the next text frame of w (skipping pings) and checks its
// type and id.
func expectWire(t *testing.T, w *wstest.Wire, typ, id string) (protocol.ServerFrame, []byte) {
	t.Helper()
	for {
		wf, err := w.Next(wstest.Timeout)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		switch wf.Op {
		case 9, 10:
			continue
		case 8:
			t.Fatalf("closed with %d %q, want a %s frame", wf.CloseCode(), wf.Payload[min(2, len(wf.Payload)):], typ)
		}
		fs, err := protocol.DecodeServer(wf.Payload)
		if err != nil || len(fs) != 1 {
			t.Fatalf("undecodable server frame %q: %v", wf.Payload, err)
		}
		f := fs[0]
		if f.Type != typ || string(f.ID) != id {
			t.Fatalf("got %.200s, want %s with id %q", wstest.Describe(f), typ, id)
		}
		return f, wf.Payload
	}
}

// readUntilClose reads w's frames up to the server's close frame.
func readUntilClose(t *testing.T, w *wstest.Wire) ([]protocol.ServerFrame, int) {
	t.Helper()
	var frames []protocol.ServerFrame
	for {
		wf, err := w.Next(wstest.Timeout)
		if err != nil {
			t.Fatalf("after %d frames, no close frame: %v", len(frames), err)
		}
		switch wf.Op {
		case 8:
			return frames, wf.CloseCode()
		case 1:
			fs, err := protocol.DecodeServer(wf.Payload)
			if err != nil {
				t.Fatalf("undecodable server frame %q: %v", wf.Payload, err)
			}
			frames = append(frames, fs...)
		}
	}
}

func slicesContainsCode(frames []protocol.ServerFrame, code string) bool {
	for _, f := range frames {
		if f.Type == protocol.TypeError && f.Code == code {
			return true
		}
	}
	return false
}

// runAPIRow plays an HTTP row.
func runAPIRow(t *testing.T, e *hostileEnv, row hostile) {
	var body io.Reader
	if row.api.body != "" {
		body = strings.NewReader(row.api.body)
	}
	req, err := http.NewRequestWithContext(t.Context(), row.api.method, e.srv.URL+row.api.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if row.api.key != "" {
		req.Header.Set("Authorization", "Bearer "+row.api.key)
	}
	for k, v := range row.api.header {
		req.Header.Set(k, v)
	}
	res, err := wstest.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != row.status {
		t.Fatalf("status %d (%s), want %d", res.StatusCode, b, row.status)
	}
	// 431 is net/http's own answer, given before any handler runs.
	if ct := res.Header.Get("Content-Type"); ct != "application/json" && res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if row.code != "" {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code != row.code || eb.Error.Message == "" {
			t.Fatalf("body %s (%v), want error code %q with a message", b, err, row.code)
		}
	}
	if row.check != nil {
		row.check(t, b)
	}
}

// checkBystander proves the bystander unaffected and the server serving:
// a fresh session says hello, joins lobby and publishes a probe; the
// bystander's next frames must be what the row relayed (if anything) and
// then the probe, nothing else.
func (e *hostileEnv) checkBystander(t *testing.T, relayed string) {
	t.Helper()
	e.probes++
	probe := fmt.Sprintf(`{"probe":%d}`, e.probes)
	c := wstest.Dial(t, e.srv.WS, wstest.Hello{Token: e.token(t, "prober")})
	defer c.WS().Close()
	c.Send(wstest.Frame("join", "id", 1, "room", "lobby"))
	c.Expect(protocol.TypeJoined)
	c.Send(`{"type":"publish","id":2,"room":"lobby","data":` + probe + `}`)
	c.Expect(protocol.TypeAck)
	for _, want := range []string{relayed, probe} {
		if want == "" {
			continue
		}
		f, err := e.bystander.NextErr(wstest.Timeout)
		if err != nil {
			t.Fatalf("bystander: %v", err)
		}
		if f.Type != protocol.TypeMessage || f.Room != "lobby" || !bytes.Equal(f.Data, []byte(want)) {
			t.Fatalf("bystander got %.200s, want the message %.60s", wstest.Describe(f), want)
		}
	}
}

// TestHostile_HistoryBudget replays the finding over a real
// instance: 64 KB messages published to rotating rooms. The embedded
// broker's history stays within --history-max-bytes, and a client that
// recovers from a position whose messages were evicted is told
// recovered: false, not given a hole.
func TestHostile_HistoryBudget(t *testing.T) {
	const budget = 2 << 20
	srv := wstest.Start(t, switchboard.Config{APIKey: hostileKey, HistoryMaxBytes: budget})
	early := wstest.Dial(t, srv.WS, wstest.Hello{User: "early"})
	early.Send(wstest.Frame("join", "id", 1, "room", "rot-0"))
	start := early.Expect(protocol.TypeJoined)
	early.WS().Close()

	data := `"` + strings.Repeat("x", 64000) + `"`
	for i := range 200 { // 12.8 MB in all
		body := fmt.Sprintf(`{"room":"rot-%d","data":%s}`, i%10, data)
		req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/api/publish", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+hostileKey)
		res, err := wstest.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("publish %d: status %d", i, res.StatusCode)
		}
		if i%20 == 19 {
			if held := srv.Metric(t, "switchboard_history_bytes"); held > budget || held == 0 {
				t.Fatalf("after %d publishes switchboard_history_bytes = %v, budget %d", i+1, held, budget)
			}
		}
	}

	// rot-0 got 20 messages; at most a budget's worth of the newest 200
	// survive, so its first ones are gone. Recovering from offset 0 cannot
	// be continuous.
	c := wstest.Dial(t, srv.WS, wstest.Hello{User: "late"})
	c.Send(`{"type":"join","id":2,"room":"rot-0","since":{"epoch":"` + start.Epoch + `","offset":0}}`)
	f := c.Next()
	if f.Type != protocol.TypeJoined || f.Recovered || f.Epoch != start.Epoch || f.Offset != 20 {
		t.Fatalf("recovery from before the eviction answered %s, want joined recovered:false at %s/20", wstest.Describe(f), start.Epoch)
	}
	// A recovery from a position still held replays and says recovered.
	c.Send(`{"type":"join","id":3,"room":"rot-9","since":{"epoch":"` + latestEpoch(t, srv, "rot-9") + `","offset":19}}`)
	m := c.Expect(protocol.TypeMessage)
	if m.Offset != 20 || len(m.Data) != len(data) {
		t.Fatalf("replay from 19 sent offset %d (%d bytes)", m.Offset, len(m.Data))
	}
	if j := c.Expect(protocol.TypeJoined); !j.Recovered || j.Offset != 20 {
		t.Fatalf("recovery within history answered %s, want recovered:true at 20", wstest.Describe(j))
	}
}

// latestEpoch reads room's epoch through the API's history route.
func latestEpoch(t *testing.T, srv *wstest.Server, room string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/api/rooms/"+room+"/history?limit=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+hostileKey)
	res, err := wstest.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var h struct{ Epoch string }
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil || h.Epoch == "" {
		t.Fatalf("history of %s: %v %+v", room, err, h)
	}
	return h.Epoch
}

// TestHostile_QueuedBytesCeiling: a client that joins a busy room and never
// reads cannot make the instance queue more than --max-queued-bytes for
// it. Past the ceiling it is closed with 4008 (the ceiling's counter says
// so), while a reading member of the same room gets every message.
func TestHostile_QueuedBytesCeiling(t *testing.T) {
	const ceiling, total = 512 << 10, 150
	srv := wstest.Start(t, switchboard.Config{APIKey: hostileKey, SendQueueBytes: 1 << 20, MaxQueuedBytes: ceiling})
	hog := wstest.DialWith(t, wstest.SmallReceiveBuffer(4096), srv.WS, wstest.Hello{User: "hog"})
	hog.Send(wstest.Frame("join", "id", 1, "room", "busy"))
	hog.Expect(protocol.TypeJoined)
	reader := wstest.Dial(t, srv.WS, wstest.Hello{User: "reader"})
	reader.Send(wstest.Frame("join", "id", 1, "room", "busy"))
	reader.Expect(protocol.TypeJoined)
	got := make(chan uint64, 1)
	var stopped string    // why the reader stopped short, read after got
	var read atomic.Int64 // the reader's last offset
	go func() {
		var last uint64
		for {
			f, err := reader.NextErr(wstest.Timeout)
			switch {
			case err != nil:
				stopped = err.Error()
			case f.Type != protocol.TypeMessage || f.Offset != last+1:
				stopped = "then " + wstest.Describe(f)
			}
			if stopped != "" {
				got <- last
				return
			}
			last = f.Offset
			read.Store(int64(last))
			if last == total {
				got <- last
				return
			}
		}
	}()

	data := `"` + strings.Repeat("q", 60000) + `"`
	for i := range total { // 9 MB for the hog, which reads nothing
		// The reader reads promptly: at most one message behind, however
		// busy the machine, so that only the hog's share of the ceiling
		// grows.
		for deadline := time.Now().Add(wstest.Timeout); read.Load() < int64(i)-1; {
			select {
			case last := <-got:
				t.Fatalf("the reading member got messages up to %d of %d, %s", last, total, stopped)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the reading member is stuck at %d of %d published", read.Load(), i)
			}
			time.Sleep(time.Millisecond)
		}
		req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/api/publish", strings.NewReader(`{"room":"busy","data":`+data+`}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+hostileKey)
		res, err := wstest.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("publish %d: status %d", i, res.StatusCode)
		}
		if i%10 != 9 {
			continue
		}
		if q := srv.Metric(t, "switchboard_send_queue_bytes"); q > ceiling+(1<<20) {
			t.Fatalf("after %d publishes %v bytes are queued, ceiling %d (+ one session's queue of slack)", i+1, q, ceiling)
		}
	}
	if last := <-got; last != total {
		t.Fatalf("the reading member got messages up to %d of %d, %s", last, total, stopped)
	}
	if n := srv.Metric(t, "switchboard_send_queue_ceiling_overflows_total"); n < 1 {
		t.Errorf("switchboard_send_queue_ceiling_overflows_total = %v, want the hog closed (4008) for the ceiling", n)
	}
	// The hog's 4008 close frame comes after megabytes the kernel buffered
	// for it, which a 4 KiB window reads slowly: the counter above is the
	// close, so do not wait for the frame here.
	hog.WS().Close()
}

// TestHostile_NoCompression: a client that offers permessage-deflate is
// upgraded without it (no Sec-WebSocket-Extensions in the answer), so there
// is nothing to inflate and no compression bomb; a frame that claims to be
// compressed anyway (RSV1) fails the connection with 1002.
func TestHostile_NoCompression(t *testing.T) {
	srv := wstest.Start(t, switchboard.Config{})
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"} {
		req.Header.Set(k, v)
	}
	res, err := wstest.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s, want 101", res.Status)
	}
	if ext := res.Header.Values("Sec-WebSocket-Extensions"); len(ext) > 0 {
		t.Fatalf("the server agreed to %q", ext)
	}

	w := wstest.DialWire(t, srv.WS)
	w.SendText(wstest.Frame("hello", "user", "zip"))
	if f, err := w.Next(wstest.Timeout); err != nil || !bytes.Contains(f.Payload, []byte(`"welcome"`)) {
		t.Fatalf("no welcome: %v %q", err, f.Payload)
	}
	_ = w.TryWrite(wstest.MaskedFrame(0x80|0x40|0x1, []byte{0x4b, 0x4c, 0x04, 0x00})) // FIN, RSV1, text
	if _, closing := w.UntilClose(); closing.CloseCode() != 1002 {
		t.Fatalf("a compressed frame closed with %d, want 1002", closing.CloseCode())
	}
}

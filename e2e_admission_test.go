package switchboard_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/admission"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// dialFrom returns a dialer whose sockets leave from the loopback address
// src, so that one test can be several clients.
func dialFrom(src string) *websocket.Dialer {
	d := *wstest.Dialer()
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	d.NetDialContext = nd.DialContext
	return &d
}

// upgrade dials url with header and returns the connection, or the HTTP
// answer that refused it (status, Retry-After, body's error code).
func upgrade(t *testing.T, d *websocket.Dialer, url string, header http.Header) (*websocket.Conn, *refusal) {
	t.Helper()
	if d == nil {
		d = wstest.Dialer()
	}
	ws, resp, err := d.Dial(url, header)
	if err == nil {
		t.Cleanup(func() { ws.Close() })
		return ws, nil
	}
	if resp == nil {
		t.Fatalf("dial %s: %v (no HTTP answer)", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return nil, &refusal{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), code: e.Error.Code, body: string(body)}
}

type refusal struct {
	status     int
	retryAfter string
	code       string
	body       string
}

// wantRefused fails unless r is a 503 with Retry-After naming code.
func wantRefused(t *testing.T, what string, r *refusal, code string) {
	t.Helper()
	if r == nil {
		t.Fatalf("%s: upgraded, want 503 %s", what, code)
	}
	if r.status != http.StatusServiceUnavailable || r.retryAfter == "" || r.code != code {
		t.Fatalf("%s: got %d Retry-After %q body %q, want 503 with Retry-After and code %s", what, r.status, r.retryAfter, r.body, code)
	}
}

// sendHello sends hello on ws and returns the first answer: the welcome's
// type, or the close code.
func sendHello(ws *websocket.Conn, hello wstest.Hello) (string, int, error) {
	b, _ := json.Marshal(struct {
		Type string `json:"type"`
		wstest.Hello
	}{"hello", hello})
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return "", 0, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, msg, err := ws.ReadMessage()
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return "", ce.Code, nil
	}
	if err != nil {
		return "", 0, err
	}
	frames, err := protocol.DecodeServer(msg)
	if err != nil || len(frames) == 0 {
		return "", 0, fmt.Errorf("bad answer %q: %v", msg, err)
	}
	return frames[0].Type, 0, nil
}

// waitConns waits until the instance counts n open connections.
func waitConns(t *testing.T, s *wstest.Server, n int) {
	t.Helper()
	wstest.Eventually(t, 10*time.Second, fmt.Sprintf("%d open connections", n), func() bool { return s.Hub().ConnCount() == n })
}

// --max-conns: the connection past the ceiling gets 503 with Retry-After;
// every way a connection ends gives its place back, once.
func TestAdmission_MaxConns(t *testing.T) {
	t.Parallel()
	const limit = 5
	s := wstest.Start(t, switchboard.Config{MaxConns: limit, MaxConnsPerUser: 1, HelloTimeout: time.Second})
	// welcomed opens a session that stays (the hello timeout is short).
	users := 0
	welcomed := func() *websocket.Conn {
		t.Helper()
		ws, r := upgrade(t, nil, s.WS, nil)
		if r != nil {
			t.Fatalf("connection under the ceiling refused: %+v", r)
		}
		users++
		if typ, code, err := sendHello(ws, wstest.Hello{User: fmt.Sprintf("keeper%d", users)}); err != nil || typ != protocol.TypeWelcome {
			t.Fatalf("hello: %s %d %v", typ, code, err)
		}
		return ws
	}
	var open []*websocket.Conn
	for range limit {
		open = append(open, welcomed())
	}
	_, r := upgrade(t, nil, s.WS, nil)
	wantRefused(t, "connection past --max-conns", r, "max_conns")
	if got := s.Metric(t, `switchboard_admission_refused_total{reason="max_conns"}`); got != 1 {
		t.Fatalf("refused metric = %v, want 1", got)
	}
	if got := s.Metric(t, "switchboard_connections"); got != limit {
		t.Fatalf("switchboard_connections = %v, want %d", got, limit)
	}
	open[0].Close()
	open[1].Close()
	waitConns(t, s, limit-2)
	for range 2 {
		welcomed()
	}
	_, r = upgrade(t, nil, s.WS, nil)
	wantRefused(t, "connection past --max-conns after refilling", r, "max_conns")

	// Close them all, then cycle: each round ends its connections in a
	// different way, and the count must come back to zero every time.
	for _, ws := range open[2:] {
		ws.Close()
	}
	waitConns(t, s, 2) // the two from the refill
	ends := []struct {
		name string
		end  func(ws *websocket.Conn, i int) error
	}{
		{"client close after welcome", func(ws *websocket.Conn, i int) error {
			typ, code, err := sendHello(ws, wstest.Hello{User: fmt.Sprintf("cycler%d", i)})
			if err != nil || typ != protocol.TypeWelcome {
				return fmt.Errorf("hello: %s %d %v", typ, code, err)
			}
			return ws.Close()
		}},
		{"bad hello (4003)", func(ws *websocket.Conn, _ int) error {
			if _, code, err := sendHello(ws, wstest.Hello{User: "not a valid user!"}); err != nil || code != protocol.CloseUnauthorized {
				return fmt.Errorf("want 4003, got %d %v", code, err)
			}
			return nil
		}},
		{"no hello (hello timeout)", func(ws *websocket.Conn, _ int) error {
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _, err := ws.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != protocol.CloseUnauthorized {
				return fmt.Errorf("want 4003 at the hello timeout, got %v", err)
			}
			return nil
		}},
		{"client close before hello", func(ws *websocket.Conn, _ int) error { return ws.Close() }},
	}
	for n := range 8 {
		end := ends[n%len(ends)]
		var wg sync.WaitGroup
		errs := make(chan error, limit)
		var round []*websocket.Conn
		for range limit - 2 {
			ws, r := upgrade(t, nil, s.WS, nil)
			if r != nil {
				t.Fatalf("round %d (%s): refused under the ceiling: %+v", n, end.name, r)
			}
			round = append(round, ws)
		}
		_, r := upgrade(t, nil, s.WS, nil)
		wantRefused(t, fmt.Sprintf("round %d: connection past the ceiling", n), r, "max_conns")
		for i, ws := range round {
			wg.Go(func() {
				if err := end.end(ws, i); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d (%s): %v", n, end.name, err)
		}
		waitConns(t, s, 2)
	}
}

// --max-conns-per-ip: the TCP peer is the client unless it is a trusted
// proxy; then X-Forwarded-For's right-most untrusted address is, and a
// spoofed X-Forwarded-For from anyone else changes nothing.
func TestAdmission_MaxConnsPerIP(t *testing.T) {
	t.Parallel()
	const limit = 2
	t.Run("Direct", func(t *testing.T) {
		t.Parallel()
		// The only trusted proxy is elsewhere: 127.0.0.1 is a client.
		proxies, _ := admission.ParseProxies("10.0.0.0/8")
		s := wstest.Start(t, switchboard.Config{MaxConnsPerIP: limit, TrustedProxies: proxies})
		var first []*websocket.Conn
		for i := range limit {
			// A spoofed X-Forwarded-For from an untrusted peer is ignored.
			ws, r := upgrade(t, nil, s.WS, http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.100.%d", i)}})
			if r != nil {
				t.Fatalf("connection %d refused: %+v", i, r)
			}
			first = append(first, ws)
		}
		_, r := upgrade(t, nil, s.WS, http.Header{"X-Forwarded-For": {"198.51.100.99"}})
		wantRefused(t, "third connection from 127.0.0.1 with a spoofed X-Forwarded-For", r, "max_conns_per_ip")
		// Another address is another client.
		for i := range limit {
			if _, r := upgrade(t, dialFrom("127.0.0.2"), s.WS, nil); r != nil {
				t.Fatalf("connection %d from 127.0.0.2 refused: %+v", i, r)
			}
		}
		_, r = upgrade(t, dialFrom("127.0.0.2"), s.WS, nil)
		wantRefused(t, "third connection from 127.0.0.2", r, "max_conns_per_ip")
		// A closed connection gives its address's place back.
		first[0].Close()
		waitConns(t, s, 2*limit-1)
		if _, r := upgrade(t, nil, s.WS, nil); r != nil {
			t.Fatalf("connection from 127.0.0.1 after one closed refused: %+v", r)
		}
		if got := s.Metric(t, `switchboard_admission_refused_total{reason="max_conns_per_ip"}`); got != 2 {
			t.Fatalf("refused metric = %v, want 2", got)
		}
	})
	t.Run("BehindTrustedProxy", func(t *testing.T) {
		t.Parallel()
		proxies, _ := admission.ParseProxies("127.0.0.0/8")
		s := wstest.Start(t, switchboard.Config{MaxConnsPerIP: limit, TrustedProxies: proxies})
		xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
		// Each forwarded client is counted on its own: many more than limit
		// connections come through the one proxy address.
		for c := range 5 {
			for i := range limit {
				// The client's own spoofed entries on the left are skipped.
				h := xff(fmt.Sprintf("6.6.6.%d, 203.0.113.%d", i, c))
				if _, r := upgrade(t, nil, s.WS, h); r != nil {
					t.Fatalf("client %d connection %d refused: %+v", c, i, r)
				}
			}
		}
		_, r := upgrade(t, nil, s.WS, xff("203.0.113.3"))
		wantRefused(t, "third connection of forwarded client 203.0.113.3", r, "max_conns_per_ip")
		// Spoofing a different left-most address does not help either.
		_, r = upgrade(t, nil, s.WS, xff("9.9.9.9, 203.0.113.3"))
		wantRefused(t, "third connection of 203.0.113.3 with a spoofed entry", r, "max_conns_per_ip")
		// A chain of trusted proxies: the right-most untrusted entry.
		_, r = upgrade(t, nil, s.WS, xff("203.0.113.4, 127.0.0.9"))
		wantRefused(t, "third connection of 203.0.113.4 through two proxies", r, "max_conns_per_ip")
		if s.Hub().ConnCount() != 5*limit {
			t.Fatalf("open connections = %d, want %d", s.Hub().ConnCount(), 5*limit)
		}
	})
}

// --max-conns-per-user: the hello past the ceiling is closed with 4029;
// another user is not affected; a session that ends gives its place back.
func TestAdmission_MaxConnsPerUser(t *testing.T) {
	t.Parallel()
	const limit = 2
	s := wstest.Start(t, switchboard.Config{MaxConnsPerUser: limit})
	var alice []*wstest.Conn
	for range limit {
		alice = append(alice, wstest.Dial(t, s.WS, wstest.Hello{User: "alice"}))
	}
	c := wstest.DialRaw(t, s.WS, nil)
	c.Send(wstest.Frame("hello", "user", "alice"))
	_, err := c.NextErr(wstest.Timeout)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != protocol.CloseRateLimited || !strings.Contains(ce.Text, "--max-conns-per-user") {
		t.Fatalf("third session of alice: %v, want close 4029 naming --max-conns-per-user", err)
	}
	wstest.Dial(t, s.WS, wstest.Hello{User: "bob"})
	// Resuming counts the same: it is a session of alice too.
	c = wstest.DialRaw(t, s.WS, nil)
	c.Send(wstest.Frame("hello", "user", "alice", "session", alice[0].Welcome.Session))
	c.ExpectClose(protocol.CloseRateLimited)
	alice[0].WS().Close()
	wstest.Eventually(t, 10*time.Second, "alice's session to end", func() bool { return s.Hub().SessionCount() == limit })
	wstest.Dial(t, s.WS, wstest.Hello{User: "alice"})
	if got := s.Metric(t, `switchboard_admission_refused_total{reason="max_conns_per_user"}`); got != 2 {
		t.Fatalf("refused metric = %v, want 2", got)
	}
	// Concurrent hellos of one user never get past the ceiling together.
	s2 := wstest.Start(t, switchboard.Config{MaxConnsPerUser: limit})
	const tries = 20
	var wg sync.WaitGroup
	welcomed := make(chan bool, tries)
	for range tries {
		ws, r := upgrade(t, nil, s2.WS, nil)
		if r != nil {
			t.Fatalf("upgrade refused: %+v", r)
		}
		wg.Go(func() {
			typ, code, err := sendHello(ws, wstest.Hello{User: "carol"})
			switch {
			case err == nil && typ == protocol.TypeWelcome:
				welcomed <- true
			case err == nil && code == protocol.CloseRateLimited:
				welcomed <- false
			default:
				t.Errorf("hello: %s %d %v", typ, code, err)
			}
		})
	}
	wg.Wait()
	close(welcomed)
	n := 0
	for w := range welcomed {
		if w {
			n++
		}
	}
	if n != limit {
		t.Fatalf("%d of %d concurrent hellos of one user were welcomed, want %d", n, tries, limit)
	}
}

// The Origin check compares the Origin's host with the host the client
// asked for: the Host header, or a trusted proxy's X-Forwarded-Host. A
// cross-site page (Origin https://evil.example) is refused with 1008
// either way.
func TestAdmission_OriginBehindProxy(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	token, err := auth.Sign(secret, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	try := func(t *testing.T, s *wstest.Server, h http.Header) (string, int) {
		t.Helper()
		ws, r := upgrade(t, nil, s.WS, h)
		if r != nil {
			t.Fatalf("upgrade refused: %+v", r)
		}
		typ, code, err := sendHello(ws, wstest.Hello{Token: token})
		if err != nil {
			t.Fatalf("hello: %v", err)
		}
		return typ, code
	}
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name    string
		trusted string
		header  http.Header
		welcome bool
	}{
		{"same host", "", hdr("Origin", "http://chat.example", "Host", "chat.example"), true},
		{"cross-site", "", hdr("Origin", "https://evil.example", "Host", "chat.example"), false},
		{"forwarded host from an untrusted peer is ignored", "10.0.0.0/8",
			hdr("Origin", "https://chat.example", "Host", "sb-internal:8080", "X-Forwarded-Host", "chat.example"), false},
		{"cross-site with a forged forwarded host from an untrusted peer", "10.0.0.0/8",
			hdr("Origin", "https://evil.example", "Host", "chat.example", "X-Forwarded-Host", "evil.example"), false},
		{"behind a trusted proxy", "127.0.0.1",
			hdr("Origin", "https://chat.example", "Host", "sb-internal:8080", "X-Forwarded-Host", "chat.example"), true},
		{"behind a trusted proxy, the first of several forwarded hosts", "127.0.0.1",
			hdr("Origin", "https://chat.example", "Host", "sb-internal:8080", "X-Forwarded-Host", "chat.example, lb.internal"), true},
		{"cross-site behind a trusted proxy", "127.0.0.1",
			hdr("Origin", "https://evil.example", "Host", "sb-internal:8080", "X-Forwarded-Host", "chat.example"), false},
		{"behind a trusted proxy that sets no forwarded host", "127.0.0.1",
			hdr("Origin", "https://chat.example", "Host", "chat.example"), true},
		{"no Origin (not a browser)", "", hdr("Host", "chat.example"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			proxies, err := admission.ParseProxies(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			s := wstest.Start(t, switchboard.Config{JWTSecret: secret, TrustedProxies: proxies})
			typ, code := try(t, s, tc.header)
			if tc.welcome && typ != protocol.TypeWelcome {
				t.Fatalf("got %q close %d, want welcome", typ, code)
			}
			if !tc.welcome && code != protocol.ClosePolicy {
				t.Fatalf("got %q close %d, want close 1008", typ, code)
			}
		})
	}
	// An explicit --allowed-origins list is what counts, proxy or not.
	proxies, _ := admission.ParseProxies("127.0.0.1")
	s := wstest.Start(t, switchboard.Config{JWTSecret: secret, TrustedProxies: proxies, AllowedOrigins: []string{"https://app.example"}})
	if typ, _ := try(t, s, hdr("Origin", "https://app.example", "X-Forwarded-Host", "chat.example")); typ != protocol.TypeWelcome {
		t.Fatalf("listed Origin: got %q, want welcome", typ)
	}
	if _, code := try(t, s, hdr("Origin", "https://chat.example", "X-Forwarded-Host", "chat.example")); code != protocol.ClosePolicy {
		t.Fatalf("unlisted Origin matching the forwarded host: close %d, want 1008", code)
	}
}

// Resume-first: with the accept budget spent, resuming hellos are welcomed
// before cold ones that came earlier.
func TestAdmission_ResumeFirst(t *testing.T) {
	t.Parallel()
	const n = 6
	// A token every 250 ms; every hello below is sent within a few ms.
	s := wstest.Start(t, switchboard.Config{AcceptRate: 4, AcceptBurst: 1, HelloTimeout: 20 * time.Second})
	wstest.Dial(t, s.WS, wstest.Hello{User: "first"}) // spends the burst
	type conn struct {
		ws     *websocket.Conn
		resume bool
		at     time.Time
		err    error
	}
	conns := make([]*conn, 2*n)
	for i := range conns {
		ws, r := upgrade(t, nil, s.WS, nil)
		if r != nil {
			t.Fatalf("upgrade refused: %+v", r)
		}
		conns[i] = &conn{ws: ws, resume: i >= n}
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		h := wstest.Hello{User: fmt.Sprintf("u%d", i)}
		if c.resume {
			h.Resume = map[string]protocol.Position{"lobby": {Epoch: "e-gone", Offset: 3}}
		}
		b, _ := json.Marshal(struct {
			Type string `json:"type"`
			wstest.Hello
		}{"hello", h})
		// Cold hellos first, so that they are ahead in time.
		if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			_ = c.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, msg, err := c.ws.ReadMessage()
			c.at = time.Now()
			if err == nil {
				var fs []protocol.ServerFrame
				if fs, err = protocol.DecodeServer(msg); err == nil && fs[0].Type != protocol.TypeWelcome {
					err = fmt.Errorf("got %s, want welcome", wstest.Describe(fs[0]))
				}
			}
			c.err = err
		})
	}
	// How many cold hellos got a token before every resuming hello was at
	// the gate: those may be welcomed first.
	metric := func(name string) float64 { return s.Metric(t, name) }
	var early float64
	wstest.Eventually(t, 20*time.Second, "every hello at the gate", func() bool {
		resumeIn := metric(`switchboard_admission_waiting{kind="resume"}`) + metric(`switchboard_admission_hellos_total{kind="resume",result="admitted"}`)
		early = metric(`switchboard_admission_hellos_total{kind="cold",result="admitted"}`) - 1
		return resumeIn == n
	})
	wg.Wait()
	sort.Slice(conns, func(i, j int) bool { return conns[i].at.Before(conns[j].at) })
	var order []string
	lastResume := -1
	for i, c := range conns {
		if c.err != nil {
			t.Fatalf("hello: %v", c.err)
		}
		if c.resume {
			order = append(order, "R")
			lastResume = i
		} else {
			order = append(order, "c")
		}
	}
	coldBefore := 0
	for _, c := range conns[:lastResume] {
		if !c.resume {
			coldBefore++
		}
	}
	t.Logf("welcome order %s; %v cold hellos had a token before the resuming ones arrived", strings.Join(order, ""), early)
	if float64(coldBefore) > early {
		t.Fatalf("welcome order %s: %d cold sessions were welcomed before the last resuming one, but only %v got a token before the resuming hellos arrived", strings.Join(order, ""), coldBefore, early)
	}
	if early > n/2 {
		t.Fatalf("%v of %d cold hellos got a token before the resuming ones arrived: the test did not make them compete", early, n)
	}
	if got := metric(`switchboard_admission_waiting{kind="cold"}`); got != 0 {
		t.Fatalf("cold hellos still waiting: %v", got)
	}
}

// A full accept queue refuses a cold hello at once with 4029; a resuming
// hello takes the place of the newest cold one, which is refused instead;
// a hello that waits past the bound is refused with 4029 too.
func TestAdmission_AcceptQueue(t *testing.T) {
	t.Parallel()
	// One token per 100 s: nothing waiting is admitted during the test.
	s := wstest.Start(t, switchboard.Config{AcceptRate: 0.01, AcceptBurst: 1, AcceptQueue: 2, HelloTimeout: 20 * time.Second})
	wstest.Dial(t, s.WS, wstest.Hello{User: "first"})
	send := func(user string, resume bool) *websocket.Conn {
		ws, r := upgrade(t, nil, s.WS, nil)
		if r != nil {
			t.Fatalf("upgrade refused: %+v", r)
		}
		h := wstest.Hello{User: user}
		if resume {
			h.Session = "s_GONEGONEGONEGONEGONE"
		}
		b, _ := json.Marshal(struct {
			Type string `json:"type"`
			wstest.Hello
		}{"hello", h})
		if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
			t.Fatal(err)
		}
		return ws
	}
	closedWith := func(what string, ws *websocket.Conn, code int) {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := ws.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code {
			t.Fatalf("%s: %v, want close %d", what, err, code)
		}
	}
	waiting := func(kind string, n float64) {
		t.Helper()
		wstest.Eventually(t, 10*time.Second, fmt.Sprintf("%v %s hellos waiting", n, kind), func() bool {
			return s.Metric(t, fmt.Sprintf(`switchboard_admission_waiting{kind=%q}`, kind)) == n
		})
	}
	// One at a time, so that c1 is queued before c2: the server reads
	// hellos sent together in either order.
	c1 := send("c1", false)
	waiting("cold", 1)
	c2 := send("c2", false)
	waiting("cold", 2)
	closedWith("cold hello into a full queue", send("c3", false), protocol.CloseRateLimited)
	r1 := send("r1", true)
	closedWith("newest cold hello displaced by a resuming one", c2, protocol.CloseRateLimited)
	waiting("resume", 1)
	r2 := send("r2", true)
	closedWith("older cold hello displaced by a resuming one", c1, protocol.CloseRateLimited)
	waiting("resume", 2)
	closedWith("resuming hello into a queue of resuming ones", send("r3", true), protocol.CloseRateLimited)
	if got := s.Metric(t, `switchboard_admission_refused_total{reason="accept_queue_full"}`); got != 4 {
		t.Fatalf("accept_queue_full refusals = %v, want 4", got)
	}

	// A drain closes the waiting hellos with 4001 at once, rather than
	// wait for their bound.
	start := time.Now()
	stopped := make(chan struct{})
	go func() { s.Stop(t); close(stopped) }()
	closedWith("waiting hello when the instance drains", r1, protocol.CloseRestarting)
	closedWith("waiting hello when the instance drains", r2, protocol.CloseRestarting)
	<-stopped
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("drain took %v with hellos waiting", d)
	}

	// The wait is bounded by --hello-timeout.
	s2 := wstest.Start(t, switchboard.Config{AcceptRate: 0.01, AcceptBurst: 1, HelloTimeout: 300 * time.Millisecond})
	wstest.Dial(t, s2.WS, wstest.Hello{User: "first"})
	ws, _ := upgrade(t, nil, s2.WS, nil)
	start = time.Now()
	if _, code, err := sendHello(ws, wstest.Hello{User: "late", Session: "s_GONEGONEGONEGONEGONE"}); err != nil || code != protocol.CloseRateLimited {
		t.Fatalf("hello that waited past the bound: close %d %v, want 4029", code, err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("refused after %v, before the bound", d)
	}
	if got := s2.Metric(t, `switchboard_admission_hellos_total{kind="resume",result="timeout"}`); got != 1 {
		t.Fatalf("resume timeouts = %v, want 1", got)
	}
	waitConns(t, s2, 1)
}

// The default --max-conns leaves a tenth of the open-file limit, at least
// 128 files, to everything else.
func TestAdmission_DefaultMaxConns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		limit uint64
		want  int
	}{
		{0, 0}, {1 << 62, 0}, {1, 1}, {100, 50}, {256, 128}, {257, 129}, {1024, 896},
		{20000, 18000}, {65536, 58983}, {1 << 20, 943719},
	} {
		if got := switchboard.DefaultMaxConns(tc.limit); got != tc.want {
			t.Errorf("DefaultMaxConns(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
	// An instance with the default shows the ceiling it derived.
	s := wstest.Start(t, switchboard.Config{})
	if got := s.Metric(t, "switchboard_admission_max_conns"); got <= 0 {
		t.Fatalf("switchboard_admission_max_conns = %v with the default, want the derived ceiling", got)
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// response is an HTTP answer, read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// call sends one request to the server at base: key, when not empty, goes in the
// Authorization header as a bearer key; body, when not empty, is the JSON
// body.
func call(t testing.TB, base, key, method, path, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return readResponse(t, res)
}

// readResponse reads and closes res.
func readResponse(t testing.TB, res *http.Response) response {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}
}

// ok decodes a 200 answer into v, failing the test on any other status.
func (r response) ok(t testing.TB, v any) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// wantError fails the test unless r is a JSON error with status and code.
func (r response) wantError(t testing.TB, status int, code string) {
	t.Helper()
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("status %d, body %q is not a JSON error: %v", r.Status, r.Body, err)
	}
	if r.Status != status || body.Error.Code != code {
		t.Fatalf("got %d %q (%s), want %d %q", r.Status, body.Error.Code, body.Error.Message, status, code)
	}
	if body.Error.Message == "" {
		t.Errorf("error %q has no message", code)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

// position is the answer to publish and send.
type position struct {
	Room   string `json:"room"`
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// publish publishes body through POST /api/publish on a dev instance and
// returns the position.
func publish(t testing.TB, srv *wstest.Server, body string) position {
	t.Helper()
	var pos position
	call(t, srv.URL, "", http.MethodPost, "/api/publish", body).ok(t, &pos)
	return pos
}

// start runs a dev-mode instance with cfg.
func start(t testing.TB, cfg switchboard.Config) *wstest.Server {
	t.Helper()
	return wstest.Start(t, cfg)
}

// joinAs connects a session of user and joins it to rooms.
func joinAs(t testing.TB, srv *wstest.Server, user string, rooms ...string) *wstest.Conn {
	t.Helper()
	c := wstest.Dial(t, srv.WS, wstest.Hello{User: user})
	for i, room := range rooms {
		c.Send(wstest.Frame(protocol.TypeJoin, "id", i+1, "room", room))
		c.Expect(protocol.TypeJoined)
	}
	return c
}

// expectMessage reads the next frame of c and checks that it is the message
// at pos, from from, with data.
func expectMessage(t testing.TB, c *wstest.Conn, pos position, from, data string) {
	t.Helper()
	f := c.Expect(protocol.TypeMessage)
	if f.Room != pos.Room || f.Epoch != pos.Epoch || f.Offset != pos.Offset {
		t.Errorf("message at (%q, %q, %d), want (%q, %q, %d)", f.Room, f.Epoch, f.Offset, pos.Room, pos.Epoch, pos.Offset)
	}
	if f.From != from {
		t.Errorf("message from %q, want %q", f.From, from)
	}
	if string(f.Data) != data {
		t.Errorf("message data %s, want %s", f.Data, data)
	}
}

// faultyBroker is a memory broker whose publishes to rooms named "down…"
// fail as unavailable and to rooms named "boom…" fail for another reason.
type faultyBroker struct{ *memory.Broker }

func (b faultyBroker) Publish(ctx context.Context, room string, p broker.Publication) (broker.Position, error) {
	switch {
	case strings.HasPrefix(room, "down"):
		return broker.Position{}, fmt.Errorf("publish to %q: %w", room, broker.ErrUnavailable)
	case strings.HasPrefix(room, "boom"):
		return broker.Position{}, errors.New("disk on fire")
	}
	return b.Broker.Publish(ctx, room, p)
}

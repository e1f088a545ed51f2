package client

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

func TestClient_Basic(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	aliceRec, bobRec := newRecorder(), newRecorder()
	alice := dial(t, aliceRec.config(Config{URLs: []string{srv.WS}, User: "alice"}))
	bob := dial(t, bobRec.config(Config{URLs: []string{srv.WS}, User: "bob", NoBatch: true}))
	if got := alice.User(); got != "alice" {
		t.Errorf("User() = %q, want alice", got)
	}
	if got := bob.Inbox(); got != "@bob" {
		t.Errorf("Inbox() = %q, want @bob", got)
	}
	if alice.Session() == "" || alice.Instance() != srv.Hub().InstanceID() {
		t.Errorf("Session() = %q, Instance() = %q, want a session on %s", alice.Session(), alice.Instance(), srv.Hub().InstanceID())
	}

	ctx := ctxT(t)
	start, err := alice.Join(ctx, "general")
	if err != nil {
		t.Fatalf("alice Join: %v", err)
	}
	if start.Epoch == "" || start.Offset != 0 {
		t.Errorf("Join() = %+v, want offset 0 of an epoch", start)
	}
	if _, err := bob.Join(ctx, "general"); err != nil {
		t.Fatalf("bob Join: %v", err)
	}
	again, err := bob.Join(ctx, "general")
	if err != nil || again != start {
		t.Errorf("second Join() = %+v, %v; want %+v", again, err, start)
	}

	pos, err := alice.Publish(ctx, "general", map[string]string{"text": "hi"})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if want := (Position{Epoch: start.Epoch, Offset: 1}); pos != want {
		t.Errorf("Publish() = %+v, want %+v", pos, want)
	}
	raw, err := bob.Publish(ctx, "general", json.RawMessage(`{"text":"hello"}`))
	if err != nil || raw.Offset != 2 {
		t.Fatalf("Publish(raw) = %+v, %v; want offset 2", raw, err)
	}
	bobRec.wait(t, "alice's message", func(msgs []Message, _ []State) bool { return len(msgs) >= 1 })
	m := bobRec.messages()[0]
	if m.Kind != KindMessage || m.Room != "general" || m.From != "alice" || string(m.Data) != `{"text":"hi"}` || m.Position != pos || m.Time.IsZero() {
		t.Errorf("bob got %+v, want alice's message at %+v", m, pos)
	}
	// Alice's own publish (offset 1) is acked, not delivered: bob's comes
	// first.
	aliceRec.wait(t, "bob's message", func(msgs []Message, _ []State) bool { return len(msgs) >= 1 })
	if m := aliceRec.messages()[0]; m.From != "bob" || m.Offset != 2 {
		t.Errorf("alice's first message = %+v, want bob's at offset 2", m)
	}
	if got, ok := alice.Position("general"); !ok || got.Offset != 2 {
		t.Errorf("alice Position(general) = %+v, %v; want offset 2", got, ok)
	}

	dm, err := alice.Send(ctx, "bob", "psst")
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if dm.Offset != 1 {
		t.Errorf("Send() = %+v, want offset 1 of @bob", dm)
	}
	bobRec.wait(t, "the direct message", func(msgs []Message, _ []State) bool { return count(msgs, "@bob", KindMessage) == 1 })

	pr, err := alice.Presence(ctx, "general")
	if err != nil {
		t.Fatalf("Presence: %v", err)
	}
	want := []UserSessions{{User: "alice", Sessions: 1}, {User: "bob", Sessions: 1}}
	if pr.Total != 2 || !slices.Equal(pr.Users, want) {
		t.Errorf("Presence() = %+v, want %v", pr, want)
	}

	h, err := bob.History(ctx, "general", HistoryQuery{})
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(h.Messages) != 2 || h.Messages[0].Position != pos || h.Messages[1].From != "bob" || h.Position.Offset != 2 {
		t.Errorf("History() = %+v, want the two messages", h)
	}
	h, err = bob.History(ctx, "general", HistoryQuery{Since: &pos})
	if err != nil || len(h.Messages) != 1 || h.Messages[0].Offset != 2 {
		t.Errorf("History(since 1) = %+v, %v; want offset 2 only", h, err)
	}

	if err := bob.Leave(ctx, "general"); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if _, ok := bob.Position("general"); ok {
		t.Errorf("Position(general) after Leave says joined")
	}
	if err := bob.Leave(ctx, "general"); err != nil {
		t.Errorf("Leave of a room not joined = %v, want nil", err)
	}
}

func TestClient_Errors(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	c := dial(t, Config{URLs: []string{srv.WS}, User: "carol"})
	ctx := ctxT(t)
	tests := []struct {
		name string
		do   func() error
		code string
	}{
		{"PublishNotJoined", func() error { _, err := c.Publish(ctx, "nowhere", 1); return err }, protocol.CodeNotJoined},
		{"JoinOtherInbox", func() error { _, err := c.Join(ctx, "@dave"); return err }, protocol.CodeForbidden},
		{"LeaveInbox", func() error { return c.Leave(ctx, "@carol") }, protocol.CodeBadRequest},
		{"BadRoom", func() error { _, err := c.Join(ctx, "no spaces"); return err }, protocol.CodeBadRoom},
		{"BadUser", func() error { _, err := c.Send(ctx, "{x}", 1); return err }, protocol.CodeBadRequest},
		{"HistoryOfOtherInbox", func() error { _, err := c.History(ctx, "@dave", HistoryQuery{}); return err }, protocol.CodeForbidden},
		{"SinceWithoutEpoch", func() error { _, _, err := c.JoinSince(ctx, "r", Position{Offset: 3}); return err }, protocol.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Code != tt.code {
				t.Errorf("error = %v, want a *protocol.Error with code %s", err, tt.code)
			}
		})
	}
	if _, err := c.Publish(ctx, "r", func() {}); err == nil {
		t.Errorf("Publish(func) = nil error, want an encoding error")
	}
	if _, err := c.Publish(ctx, "r", json.RawMessage(`{`)); err == nil {
		t.Errorf("Publish(invalid raw JSON) = nil error")
	}
	// The connection survived all of that.
	if _, err := c.Join(ctx, "r"); err != nil {
		t.Errorf("Join after errors: %v", err)
	}
}

func TestClient_JoinSince(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	pub := dial(t, Config{URLs: []string{srv.WS}, User: "pub"})
	ctx := ctxT(t)
	if _, err := pub.Join(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	var first Position
	for i := range 3 {
		p, err := pub.Publish(ctx, "news", i)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = p
		}
	}
	rec := newRecorder()
	sub := dial(t, rec.config(Config{URLs: []string{srv.WS}, User: "sub"}))
	pos, recovered, err := sub.JoinSince(ctx, "news", first)
	if err != nil || !recovered || pos.Offset != 3 {
		t.Fatalf("JoinSince(%+v) = %+v, %v, %v; want offset 3, recovered", first, pos, recovered, err)
	}
	rec.wait(t, "the two missed messages", func(msgs []Message, _ []State) bool { return len(msgs) == 2 })
	if _, err := pub.Publish(ctx, "news", 3); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, "the live message", func(msgs []Message, _ []State) bool { return len(msgs) == 3 })
	for i, m := range rec.messages() {
		if m.Offset != uint64(i+2) || string(m.Data) != string(rune('0'+i+1)) {
			t.Errorf("message %d = %+v, want offset %d", i, m, i+2)
		}
	}
	// A position ahead of the room is not continuous either; the stream
	// starts where the room is.
	rec2 := newRecorder()
	sub2 := dial(t, rec2.config(Config{URLs: []string{srv.WS}, User: "sub2"}))
	ahead := Position{Epoch: first.Epoch, Offset: 1000}
	if pos, recovered, err := sub2.JoinSince(ctx, "news", ahead); err != nil || recovered || pos.Offset != 4 {
		t.Fatalf("JoinSince(%+v) = %+v, %v, %v; want offset 4, not recovered", ahead, pos, recovered, err)
	}
	if _, err := pub.Publish(ctx, "news", 4); err != nil {
		t.Fatal(err)
	}
	rec2.wait(t, "the next message", func(msgs []Message, _ []State) bool { return len(msgs) == 1 })
	if m := rec2.messages()[0]; m.Offset != 5 {
		t.Errorf("after JoinSince(ahead) got offset %d, want 5", m.Offset)
	}

	other := Position{Epoch: "not-this-one", Offset: 1}
	if _, recovered, err := sub.JoinSince(ctx, "fresh", other); err != nil || recovered {
		t.Errorf("JoinSince(another epoch) recovered = %v, %v; want false", recovered, err)
	}
}

func TestClient_MessagesChannel(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	a := dial(t, Config{URLs: []string{srv.WS}, User: "a"})
	b := dial(t, Config{URLs: []string{srv.WS}, User: "b", QueueLength: 2})
	ctx := ctxT(t)
	for _, c := range []*Client{a, b} {
		if _, err := c.Join(ctx, "r"); err != nil {
			t.Fatal(err)
		}
	}
	// More than the queue holds: the reader waits for the channel.
	const n = 20
	for i := range n {
		if _, err := a.Publish(ctx, "r", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		select {
		case m := <-b.Messages():
			if m.Offset != uint64(i+1) {
				t.Fatalf("message %d at offset %d, want %d", i, m.Offset, i+1)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("message %d did not come", i)
		}
	}
	b.Close()
	if _, ok := <-b.Messages(); ok {
		t.Errorf("Messages() still open after Close")
	}
	if _, err := b.Publish(ctx, "r", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := b.Err(); !errors.Is(err, ErrClosed) {
		t.Errorf("Err() = %v, want ErrClosed", err)
	}
}

func TestClient_StatesOfDialAndClose(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	rec := newRecorder()
	c := dial(t, rec.config(Config{URLs: []string{srv.WS}, User: "s"}))
	if got := c.State(); got != StateConnected {
		t.Errorf("State() after Dial = %v, want connected", got)
	}
	c.Close()
	c.Close()
	want := []State{StateConnecting, StateConnected, StateClosed}
	if got := rec.stateList(); !slices.Equal(got, want) {
		t.Errorf("states = %v, want %v", got, want)
	}
	select {
	case <-c.Done():
	default:
		t.Errorf("Done() not closed after Close")
	}
	eventually(t, "the session to end", func() bool { return srv.Hub().SessionCount() == 0 })
}

func TestDial_Fails(t *testing.T) {
	t.Parallel()
	t.Run("ContextEnds", func(t *testing.T) {
		t.Parallel()
		// Nothing listens there: the client retries until ctx ends.
		p := newProxy(t, "ws://127.0.0.1:1/ws")
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err := Dial(ctx, Config{URLs: []string{p.URL()}, User: "u", Backoff: Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Dial() = %v, want DeadlineExceeded", err)
		}
		if p.accepted.Load() < 2 {
			t.Errorf("%d connection attempts, want retries", p.accepted.Load())
		}
	})
	t.Run("BadConfig", func(t *testing.T) {
		t.Parallel()
		for _, cfg := range []Config{
			{User: "u"},
			{URLs: []string{"http://example.com/ws"}, User: "u"},
			{URLs: []string{"ws://example.com/ws"}},
			{URLs: []string{"ws://example.com/ws"}, User: "u", Backoff: Backoff{Factor: 0.5}},
			{URLs: []string{"ws://example.com/ws"}, User: "u", HeartbeatTimeout: -time.Second},
		} {
			if _, err := Dial(t.Context(), cfg); err == nil {
				t.Errorf("Dial(%+v) = nil error", cfg)
			}
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		_, err := Dial(ctxT(t), Config{URLs: []string{"ws" + srv.URL[len("http"):] + "/nope"}, User: "u"})
		var ue *UpgradeError
		if !errors.As(err, &ue) || ue.StatusCode != 404 {
			t.Errorf("Dial(wrong path) = %v, want an HTTP 404 at once", err)
		}
	})
}

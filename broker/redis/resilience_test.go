package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// logs is a slog.Handler that keeps the messages it is given.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) contains(substr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.msgs, func(m string) bool { return strings.Contains(m, substr) })
}

// TestBroker_RedisRestart stops Redis (no persistence) and starts it again:
// publishes fail as unavailable during the outage and Ready fails; after it
// the same Broker publishes again, and its handler gets a Reset to the new
// epoch before the new epoch's messages.
func TestBroker_RedisRestart(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	b := open(t, s.URL(), Config{ProbeInterval: 50 * time.Millisecond, Timeout: time.Second})
	h := newRecorder(t)
	if err := b.Subscribe(t.Context(), h, "r"); err != nil {
		t.Fatal(err)
	}
	var before broker.Position
	for i := range 3 {
		before = publish(t, b, "r", fmt.Sprint(i))
	}
	waitFor(t, h, before)
	if err := b.Ready(t.Context()); err != nil {
		t.Fatalf("Ready before the outage: %v", err)
	}

	s.Stop()
	_, err := b.Publish(t.Context(), "r", broker.Publication{Data: json.RawMessage(`"lost"`)})
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("Publish during the outage error = %v, want one wrapping broker.ErrUnavailable", err)
	}
	if err := b.Ready(t.Context()); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("Ready during the outage = %v, want an error wrapping broker.ErrUnavailable", err)
	}
	if err := b.Subscribe(t.Context(), newRecorder(t), "other"); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("Subscribe during the outage error = %v, want one wrapping broker.ErrUnavailable", err)
	}

	s.Restart()
	if !eventually(t, waitTimeout, func() bool { return b.Ready(t.Context()) == nil }) {
		t.Fatalf("Ready after the restart: %v", b.Ready(t.Context()))
	}
	var after broker.Position
	for i := range 3 {
		after = publish(t, b, "r", fmt.Sprint(i))
	}
	if after.Epoch == before.Epoch {
		t.Fatalf("epoch after the restart = %q, the same as before", after.Epoch)
	}
	waitFor(t, h, after)
	es := h.snapshot()
	i := slices.IndexFunc(es, func(e event) bool { return e.msg == nil })
	if i != 3 || es[i].reset.Epoch != after.Epoch {
		t.Fatalf("handler received %v, want 3 messages, then a reset to epoch %q", es, after.Epoch)
	}
	if got, want := h.offsets(after.Epoch), span(es[i].reset.Offset+1, after.Offset); !slices.Equal(got, want) {
		t.Errorf("after the reset to %v the handler received %v, want %v", es[i].reset, got, want)
	}
}

// TestBroker_PubSubKilled cuts the pub/sub connections from the Redis side
// while another instance keeps publishing: the handler misses nothing.
func TestBroker_PubSubKilled(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	prefix := newPrefix()
	// History large enough for what is published during the cut: the
	// point is that the hole is filled, not that it outgrows history.
	sub := open(t, s.URL(), Config{Prefix: prefix, ProbeInterval: 50 * time.Millisecond, HistorySize: 100_000})
	pub := open(t, s.URL(), Config{Prefix: prefix, HistorySize: 100_000})
	h := newRecorder(t)
	if err := sub.Subscribe(t.Context(), h, "r"); err != nil {
		t.Fatal(err)
	}
	last := keepPublishing(t, pub, "r", func() {
		for range 3 {
			if _, err := s.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
				t.Errorf("CLIENT KILL: %v", err)
			}
			time.Sleep(30 * time.Millisecond)
		}
	})
	waitFor(t, h, last)
	if got := h.offsets(last.Epoch); !slices.Equal(got, span(1, last.Offset)) {
		t.Errorf("handler received %d messages, want 1..%d once each, in order", len(got), last.Offset)
	}
	if r := h.resets(); len(r) != 0 {
		t.Errorf("handler got resets %v, want none", r)
	}
}

// TestBroker_WedgedPubSubIsReplaced freezes the pub/sub connection (open,
// but silent, as behind a broken middlebox): the probe notices, the
// connection is replaced and the missed messages are read from history.
func TestBroker_WedgedPubSubIsReplaced(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	p := newProxy(t, s.Addr)
	var l logs
	prefix := newPrefix()
	sub := open(t, p.URL(), Config{Prefix: prefix, ProbeInterval: 50 * time.Millisecond, HistorySize: 100_000, Logger: slog.New(&l)})
	pub := open(t, s.URL(), Config{Prefix: prefix, HistorySize: 100_000})
	h := newRecorder(t)
	if err := sub.Subscribe(t.Context(), h, "r"); err != nil {
		t.Fatal(err)
	}
	last := keepPublishing(t, pub, "r", func() {
		if n := p.freezePubSub(); n != 1 {
			t.Errorf("froze %d pub/sub connections, want 1", n)
		}
		// Ready fails for less than a probe interval before the
		// connection is replaced: wait for the replacement instead.
		if !eventually(t, 5*time.Second, func() bool { return l.contains("probe overdue") }) {
			t.Error("the probe did not notice the silent connection")
		}
		if !eventually(t, 5*time.Second, func() bool { return sub.Ready(t.Context()) == nil }) {
			t.Errorf("Ready after the connection was replaced: %v", sub.Ready(t.Context()))
		}
	})
	waitFor(t, h, last)
	if got := h.offsets(last.Epoch); !slices.Equal(got, span(1, last.Offset)) {
		t.Errorf("handler received %d messages, want 1..%d once each, in order", len(got), last.Offset)
	}
	if r := h.resets(); len(r) != 0 {
		t.Errorf("handler got resets %v, want none", r)
	}
}

// keepPublishing publishes to room from a goroutine while fault runs, and
// a little before and after; it returns the last position.
func keepPublishing(t *testing.T, b *Broker, room string, fault func()) broker.Position {
	t.Helper()
	stop := make(chan struct{})
	var last broker.Position
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pos, err := b.Publish(t.Context(), room, broker.Publication{Data: json.RawMessage(fmt.Sprint(i))})
			if err != nil {
				t.Errorf("Publish #%d error: %v", i, err)
				return
			}
			last = pos
			time.Sleep(time.Millisecond)
		}
	})
	time.Sleep(50 * time.Millisecond) // let time pass: publishing before the fault
	fault()
	time.Sleep(100 * time.Millisecond) // and after it
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return last
}

// TestBroker_FailoverStartsNewEpochs promotes a replica that missed the
// last writes and points the broker's address at it: the scripts find a
// new server generation there, so the rooms start new epochs (their
// handlers get a Reset) instead of continuing an epoch whose tail was lost.
func TestBroker_FailoverStartsNewEpochs(t *testing.T) {
	t.Parallel()
	primary := redistest.Start(t)
	host, port, _ := net.SplitHostPort(primary.Addr)
	replica := redistest.Start(t, "--replicaof", host, port)
	p := newProxy(t, primary.Addr)
	var l logs
	b := open(t, p.URL(), Config{ProbeInterval: 50 * time.Millisecond, Timeout: time.Second, Logger: slog.New(&l)})
	h := newRecorder(t)
	if err := b.Subscribe(t.Context(), h, "r"); err != nil {
		t.Fatal(err)
	}
	var pos broker.Position
	for i := range 5 {
		pos = publish(t, b, "r", fmt.Sprint(i))
	}
	meta := b.metaKey("r")
	if !eventually(t, waitTimeout, func() bool { got, _ := replica.Do("HGET", meta, "offset"); return got == "5" }) {
		t.Fatal("the replica did not catch up")
	}
	// The replica is promoted; the old primary takes three more writes
	// that the new one never sees.
	if _, err := replica.Do("REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		pos = publish(t, b, "r", fmt.Sprint(i))
	}
	waitFor(t, h, pos) // E1/8

	p.switchTo(replica.Addr)
	var next broker.Position
	if !eventually(t, waitTimeout, func() bool {
		var err error
		next, err = b.Publish(t.Context(), "r", broker.Publication{Data: json.RawMessage(`"after"`)})
		return err == nil
	}) {
		t.Fatal("no Publish succeeded after the failover")
	}
	if next.Epoch == pos.Epoch {
		t.Fatalf("Publish after the failover = %+v: the old epoch continued on a server that lost its tail", next)
	}
	if next.Offset != 1 {
		t.Errorf("Publish after the failover = %+v, want offset 1 of a new epoch", next)
	}
	waitFor(t, h, next)
	resets := h.resets()
	if len(resets) == 0 || resets[len(resets)-1].Epoch != next.Epoch {
		t.Errorf("handler resets %v, want one to the new epoch %q", resets, next.Epoch)
	}
	hist, err := b.History(t.Context(), "r", broker.HistoryQuery{})
	if err != nil || hist.Epoch != next.Epoch || len(hist.Messages) != 1 {
		t.Errorf("History after the failover = %+v with %d messages, %v; want the new epoch with 1 message", hist.Position, len(hist.Messages), err)
	}
}

// TestBroker_HoleOlderThanHistoryResets freezes the pub/sub connection
// while more messages than history holds are published: once the
// connection is replaced, the handler gets a Reset to just before what
// history still holds, then those messages. (The connection is cut rather
// than left to the probe, which on a loaded machine could replace it
// before all the messages were published.)
func TestBroker_HoleOlderThanHistoryResets(t *testing.T) {
	t.Parallel()
	const size = 10
	s := redistest.Start(t)
	p := newProxy(t, s.Addr)
	prefix := newPrefix()
	sub := open(t, p.URL(), Config{Prefix: prefix, ProbeInterval: time.Minute, HistorySize: size})
	pub := open(t, s.URL(), Config{Prefix: prefix, HistorySize: size})
	h := newRecorder(t)
	if err := sub.Subscribe(t.Context(), h, "r"); err != nil {
		t.Fatal(err)
	}
	first := publish(t, pub, "r", `0`)
	waitFor(t, h, first)
	if n := p.freezePubSub(); n != 1 {
		t.Fatalf("froze %d pub/sub connections, want 1", n)
	}
	var last broker.Position
	for i := range 5 * size {
		last = publish(t, pub, "r", fmt.Sprint(i+1))
	}
	p.dropAll()
	waitFor(t, h, last)
	es := h.snapshot()
	want := []string{first.Epoch + "/1", fmt.Sprintf("reset %s/%d", last.Epoch, last.Offset-size)}
	for o := last.Offset - size + 1; o <= last.Offset; o++ {
		want = append(want, fmt.Sprintf("%s/%d", last.Epoch, o))
	}
	if got := fmt.Sprint(es); got != fmt.Sprint(want) {
		t.Errorf("handler received %v, want %v", got, want)
	}
}

// TestBroker_Auth connects as an ACL user, also one that may not run INFO:
// without INFO the scripts work with an unknown generation.
func TestBroker_Auth(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	for _, u := range []struct{ name, extra string }{{"alice", "+@all"}, {"bob", "-info"}} {
		args := []string{"ACL", "SETUSER", u.name, "on", ">secret", "~*", "&*", "+@all"}
		if u.extra != "+@all" {
			args = append(args, u.extra)
		}
		if _, err := s.Do(args...); err != nil {
			t.Fatal(err)
		}
		t.Run(u.name, func(t *testing.T) {
			b := open(t, "redis://"+u.name+":secret@"+s.Addr, Config{})
			h := newRecorder(t)
			if err := b.Subscribe(t.Context(), h, "r"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, h, publish(t, b, "r", `1`))
			if err := b.Ready(t.Context()); err != nil {
				t.Errorf("Ready: %v", err)
			}
			if gen, err := s.Do("HGET", b.metaKey("r"), "gen"); u.name == "bob" && (err != nil || gen != "unknown") {
				t.Errorf("generation of a room published without INFO = %q, %v; want unknown", gen, err)
			}
		})
	}
	if _, err := New(t.Context(), Config{URL: "redis://alice:wrong@" + s.Addr, Timeout: time.Second}); err == nil {
		t.Error("New with a wrong password succeeded")
	}
}

// TestBroker_CatchUpOutlastsFailingReads loses one message on its way to a
// subscriber (it is stored, and announced on a channel nobody listens on),
// while the subscriber may not run scripts for 1.5 s (an ACL, as reads
// routed to a failed master for a moment after a failover): the next
// live message reveals the hole, and the catch-up keeps trying until the
// reads work again, then hands over the lost message and the live one in
// order, without a Reset.
func TestBroker_CatchUpOutlastsFailingReads(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	if _, err := s.Do("ACL", "SETUSER", "sub", "on", ">secret", "~*", "&*", "+@all"); err != nil {
		t.Fatal(err)
	}
	prefix := newPrefix()
	sub := open(t, "redis://sub:secret@"+s.Addr, Config{Prefix: prefix})
	pub := open(t, s.URL(), Config{Prefix: prefix})
	h := newRecorder(t)
	if err := sub.Subscribe(t.Context(), h, "r"); err != nil {
		t.Fatal(err)
	}
	first := publish(t, pub, "r", `1`)
	waitFor(t, h, first)

	if _, err := s.Do("ACL", "SETUSER", "sub", "-@scripting"); err != nil {
		t.Fatal(err)
	}
	allowed := make(chan struct{})
	time.AfterFunc(1500*time.Millisecond, func() {
		defer close(allowed)
		if _, err := s.Do("ACL", "SETUSER", "sub", "+@scripting"); err != nil {
			t.Error(err)
		}
	})
	args := []string{newEpoch(), pub.historyTTLms, pub.historySizeArg, pub.channel("nobody-listens"), pub.idempotencyMs, "", "", `2`}
	if err := publishScript.Exec(t.Context(), pub.client, []string{pub.metaKey("r"), pub.logKey("r")}, args).Error(); err != nil {
		t.Fatal(err)
	}
	last := publish(t, pub, "r", `3`)
	waitFor(t, h, last)
	select {
	case <-allowed:
	default:
		t.Fatal("the subscriber received the message after the hole while it could not read history")
	}
	want := fmt.Sprint([]string{first.Epoch + "/1", first.Epoch + "/2", first.Epoch + "/3"})
	if got := fmt.Sprint(h.snapshot()); got != want {
		t.Errorf("handler received %v, want %v", got, want)
	}
}

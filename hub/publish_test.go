package hub_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// lateBroker is a memory broker that confirms publishes late, like a
// Redis that is alive but behind.
type lateBroker struct {
	*memory.Broker
	delay time.Duration
}

func (b *lateBroker) Publish(ctx context.Context, room string, p broker.Publication) (broker.Position, error) {
	if _, ok := ctx.Deadline(); ok {
		return broker.Position{}, errors.New("the publish got a deadline: a late answer would be lost")
	}
	time.Sleep(b.delay)
	return b.Broker.Publish(ctx, room, p)
}

// TestPublish_LateConfirmationIsAnAck: a publish the broker confirms after
// BrokerTimeout is acked, not answered "unavailable" (which promises that
// nothing was stored), and delivered once.
func TestPublish_LateConfirmationIsAnAck(t *testing.T) {
	b := &lateBroker{Broker: memory.New(memory.Config{}), delay: 300 * time.Millisecond}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	_, url := startHub(t, hub.Config{Broker: b, BrokerTimeout: 50 * time.Millisecond})
	sub := wstest.Dial(t, url, wstest.Hello{User: "bob"})
	sub.Join("late")
	pub := wstest.Dial(t, url, wstest.Hello{User: "alice"})
	pub.Join("late")
	pub.Send(wstest.Frame("publish", "id", 1, "room", "late", "data", "hi"))
	if f := pub.Expect("ack"); f.Offset != 1 {
		t.Fatalf("ack for offset %d, want 1", f.Offset)
	}
	sub.ExpectMessage("late", 1)
	if f := sub.Ping(); len(f) != 0 {
		t.Errorf("unexpected frame %s", wstest.Describe(f[0]))
	}
}

// stuckBroker is a memory broker whose publishes to room "stuck" never
// answer until their context ends; it reports how each ended.
type stuckBroker struct {
	*memory.Broker
	ended chan error
}

func (b *stuckBroker) Publish(ctx context.Context, room string, p broker.Publication) (broker.Position, error) {
	if room != "stuck" {
		return b.Broker.Publish(ctx, room, p)
	}
	<-ctx.Done()
	b.ended <- ctx.Err()
	return broker.Position{}, ctx.Err()
}

// TestSession_BrokerCallsEndWithTheSession: a broker call made for a
// session (here a publish that Redis never answers) is cancelled the moment
// the session ends, rather than holding its reader until a timeout.
func TestSession_BrokerCallsEndWithTheSession(t *testing.T) {
	b := &stuckBroker{Broker: memory.New(memory.Config{}), ended: make(chan error, 1)}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	h, url := startHub(t, hub.Config{Broker: b})
	c := wstest.Dial(t, url, wstest.Hello{User: "alice"})
	c.Join("stuck")
	c.Send(wstest.Frame("publish", "id", 1, "room", "stuck", "data", "never answered"))
	wstest.Eventually(t, wstest.Timeout, "the publish to reach the broker", func() bool {
		return len(b.ended) == 0 && h.SessionCount() == 1
	})
	time.Sleep(50 * time.Millisecond) // let the publish get stuck in the broker
	start := time.Now()
	if n := h.DisconnectUser("alice"); n != 1 {
		t.Fatalf("DisconnectUser = %d, want 1", n)
	}
	select {
	case err := <-b.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the publish ended with %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the publish was cancelled %v after the disconnect", d)
		}
	case <-time.After(wstest.Timeout):
		t.Fatal("the broker call outlived its session")
	}
	wstest.Eventually(t, wstest.Timeout, "the session to end", func() bool { return h.SessionCount() == 0 })
}

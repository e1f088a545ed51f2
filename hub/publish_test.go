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

package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// TestPublish_UnconfirmedIsNotUnavailableOnly: a publish sent to a Redis
// that then answers nothing for longer than the timeout fails with
// ErrUnconfirmed (it may have been stored, and here it was), while a
// publish refused before it was sent fails with ErrUnavailable alone. Publishing again
// with the same key resolves the first case.
func TestPublish_UnconfirmedIsNotUnavailableOnly(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	b := open(t, srv.URL(), Config{Timeout: 300 * time.Millisecond})
	ctx := context.Background()
	p := broker.Publication{From: "u", Data: []byte(`"maybe"`), Key: "k1"}

	slept := make(chan error, 1)
	go func() { _, err := srv.Do("DEBUG", "SLEEP", "1.5"); slept <- err }()
	time.Sleep(100 * time.Millisecond) // Redis is asleep now
	_, err := b.Publish(ctx, "room", p)
	if !errors.Is(err, broker.ErrUnconfirmed) || !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish to a silent Redis: %v, want ErrUnconfirmed and ErrUnavailable", err)
	}
	if err := <-slept; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}

	var pos broker.Position
	if !eventually(t, 10*time.Second, func() bool {
		pos, err = b.Publish(ctx, "room", p)
		return err == nil
	}) {
		t.Fatalf("publish again with the same key: %v", err)
	}
	h, err := b.History(ctx, "room", broker.HistoryQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Messages) != 1 || h.Messages[0].Offset != pos.Offset || string(h.Messages[0].Data) != `"maybe"` {
		t.Fatalf("history %+v, want the one message at %v", h.Messages, pos)
	}

	// Once the dead connection is noticed (the first publish after the
	// kill may still go out on it, and is unconfirmed), publishes are
	// refused before anything is sent: unavailable, and certainly not
	// stored.
	srv.Stop()
	if !eventually(t, 10*time.Second, func() bool {
		_, err = b.Publish(ctx, "room", broker.Publication{From: "u", Data: []byte("1")})
		return errors.Is(err, broker.ErrUnavailable) && !errors.Is(err, broker.ErrUnconfirmed)
	}) {
		t.Fatalf("publish with Redis gone: %v, want ErrUnavailable only", err)
	}
}

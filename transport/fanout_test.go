package transport

import (
	"fmt"
	"sync"
	"testing"
)

// TestFanout_EveryConnectionGetsEveryFrame sends frames to many connections
// through Fanout from several goroutines at once: every connection gets
// every frame, in order (a lost writer start would leave one behind).
func TestFanout_EveryConnectionGetsEveryFrame(t *testing.T) {
	const conns, frames, senders = 200, 50, 4
	ts := startServer(t, tcpMode, Config{SendQueueBytes: 1 << 20})
	clients := make([]*client, conns)
	for i := range clients {
		clients[i] = ts.dial(t, "noecho")
	}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for f := range frames {
				fan := ts.srv.Fanout()
				for _, c := range clients {
					fan.Send(c.rec.c, Frame{Data: []byte(fmt.Sprintf("%d-%d", s, f))})
				}
				fan.Flush()
			}
		})
	}
	errs := make(chan error, conns)
	var readers sync.WaitGroup
	for i, c := range clients {
		readers.Go(func() {
			next := make([]int, senders)
			for range senders * frames {
				f, err := c.next()
				if err != nil {
					errs <- fmt.Errorf("connection %d after %v: %w", i, next, err)
					return
				}
				var s, n int
				if _, err := fmt.Sscanf(string(f.payload), "%d-%d", &s, &n); err != nil || n != next[s] {
					errs <- fmt.Errorf("connection %d got %q, want %d-%d", i, f.payload, s, next[s])
					return
				}
				next[s]++
			}
		})
	}
	wg.Wait()
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

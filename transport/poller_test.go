package transport

import (
	"sync"
	"testing"
	"time"
)

// TestConn_IdleConnectionsWakeForEveryInput: idle connections (on Linux,
// waiting in the shared epoll set) see every input: round after round, the
// server pings 100 connections, each client answers with a pong, and the
// server reads every one of them. A lost wake-up would leave a
// connection's last-seen time behind.
func TestConn_IdleConnectionsWakeForEveryInput(t *testing.T) {
	const conns, rounds = 100, 20
	ts := startServer(t, tcpMode, Config{})
	clients := make([]*client, conns)
	for i := range clients {
		clients[i] = ts.dial(t, "noecho")
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for _, c := range clients {
		wg.Go(func() {
			for range rounds {
				f, err := c.next()
				if err != nil {
					errs <- err
					return
				}
				if f.op != opPing {
					continue
				}
				if _, err := c.conn.Write(rawFrame(finPong, f.payload, false)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for round := range rounds {
		start := time.Now()
		for _, c := range clients {
			c.rec.c.Ping()
		}
		deadline := time.Now().Add(testTimeout)
		for i, c := range clients {
			for c.rec.c.LastSeen().Before(start) {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: connection %d never read the pong (last seen %v before the ping)", round, i, start.Sub(c.rec.c.LastSeen()))
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

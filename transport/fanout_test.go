package transport

import (
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestFanout_EveryConnectionGetsEveryFrame sends frames to many connections
// through Fanout from several goroutines at once: every connection gets
// every frame, in order (a lost writer start would leave one behind). On
// detached sockets the workers write through io_uring where there is one
// (and the test checks they did), and with write(2) in tcp-write.
func TestFanout_EveryConnectionGetsEveryFrame(t *testing.T) {
	forModes(t, []mode{tcpMode, tcpWriteMode, netMode}, testFanoutEveryFrame)
}

func testFanoutEveryFrame(t *testing.T, m mode) {
	const conns, frames, senders = 200, 50, 4
	ts := startServer(t, m, Config{SendQueueBytes: 1 << 20})
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
	submissions := testutil.ToFloat64(ts.metrics.submissions)
	direct := testutil.ToFloat64(ts.metrics.writesByPath[pathDirect])
	t.Logf("%.0f direct writes, %.0f io_uring submissions", direct, submissions)
	if want := m == tcpMode && IOUring() == nil; want != (submissions > 0) {
		t.Errorf("%.0f io_uring submissions in mode %v; want some: %v (io_uring: %v)", submissions, m, want, IOUring())
	}
	if submissions > direct {
		t.Errorf("%.0f submissions for %.0f direct writes", submissions, direct)
	}
}

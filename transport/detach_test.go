package transport

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// streamer is a Handler whose connection the test streams to.
type streamer struct {
	closed chan struct{}
}

func (*streamer) Message([]byte, bool, bool) {}
func (*streamer) Written([]Frame)            {}
func (*streamer) Closing()                   {}
func (s *streamer) Closed()                  { close(s.closed) }

// TestConn_NoCrossTalkUnderChurn: clients connect, read a stream of frames
// the server writes to them as fast as they take it, and hang up at a
// random point, over and over, many at once. Each client sees only its
// own stream, in order, without a gap: a write on a descriptor number
// that a closed connection gave up and a new one got (the hazard of
// owning descriptors, see detach) would put another stream's frames, or
// half frames, in front of a client. Afterwards no connection, queued
// byte or descriptor is left. Not parallel: it counts the process's
// descriptors.
func TestConn_NoCrossTalkUnderChurn(t *testing.T) {
	for _, m := range []mode{tcpMode, tcpWriteMode, netMode} {
		t.Run(m.String(), func(t *testing.T) { testNoCrossTalk(t, m) })
	}
}

func testNoCrossTalk(t *testing.T, m mode) {
	const (
		clients = 16
		runFor  = 1500 * time.Millisecond
	)
	canDetach() // opens the poller's and the write waits' epoll sets, once
	fdsBefore := openDescriptors()
	srv, err := NewServer(Config{SendQueueBytes: 64 << 10, WriteTimeout: 2 * time.Second, NoIOUring: m == tcpWriteMode, Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	srv.keepNetConns = m == netMode
	var detached, opened atomic.Int64
	var streams sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, early, err := Upgrade(w, r, time.Second)
		if err != nil {
			return
		}
		id := r.URL.Query().Get("id")
		h := &streamer{closed: make(chan struct{})}
		c := srv.Open(nc, early, h)
		opened.Add(1)
		if c.nc == nil {
			detached.Add(1)
		}
		c.Start()
		streams.Go(func() {
			// As fast as the client takes them: SendWait waits for room.
			for i := 0; ; i++ {
				if !c.SendWait(Frame{Data: fmt.Appendf(nil, "%s:%d", id, i)}) {
					break
				}
			}
			<-h.closed
		})
	}))

	errs := make(chan error, clients)
	stop := time.Now().Add(runFor)
	var wg sync.WaitGroup
	for g := range clients {
		wg.Go(func() {
			for round := 0; time.Now().Before(stop); round++ {
				if err := churnOnce(hs.Listener.Addr().String(), fmt.Sprintf("%d-%d", g, round), rand.IntN(300)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	streams.Wait() // every connection ended
	hs.Close()
	if srv.Conns() != 0 || srv.QueuedBytes() != 0 {
		t.Errorf("after the churn: %d connections, %d queued bytes; want none", srv.Conns(), srv.QueuedBytes())
	}
	t.Logf("%d connections, %d detached", opened.Load(), detached.Load())
	if want := m != netMode && runtime.GOOS == "linux"; want != (detached.Load() == opened.Load()) || opened.Load() == 0 {
		t.Errorf("%d of %d connections detached; want all: %v", detached.Load(), opened.Load(), want)
	}
	if fdsBefore >= 0 {
		deadline := time.Now().Add(testTimeout)
		for n := openDescriptors(); n > fdsBefore; n = openDescriptors() {
			if time.Now().After(deadline) {
				t.Fatalf("%d descriptors open, %d before the churn", n, fdsBefore)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// churnOnce connects as id, reads n frames of its stream, and hangs up.
func churnOnce(addr, id string, n int) error {
	conn, br, err := dialWS(addr, false, "id="+id)
	if err != nil {
		return err
	}
	defer conn.Close()
	c := &client{conn: conn, br: br}
	for i := range n {
		f, err := c.next()
		if err != nil {
			return fmt.Errorf("client %s, frame %d: %w", id, i, err)
		}
		if want := fmt.Sprintf("%s:%d", id, i); f.op != opText || !bytes.Equal(f.payload, []byte(want)) {
			return fmt.Errorf("client %s got %v, want %q", id, f, want)
		}
	}
	return nil
}

// openDescriptors counts the process's open descriptors, or returns -1
// where it cannot.
func openDescriptors() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range entries {
		// The flusher's io_uring rings are the process's, kept for the
		// workers to come (at most maxRings).
		if target, _ := os.Readlink("/proc/self/fd/" + e.Name()); target != "anon_inode:[io_uring]" {
			n++
		}
	}
	return n
}

// TestConn_CloseWakesABlockedWriter: closing a connection whose writer
// waits for a client that stopped reading ends that write at once, not at
// the write timeout, and releases what it held.
func TestConn_CloseWakesABlockedWriter(t *testing.T) {
	forModes(t, []mode{tcpMode, tcpWriteMode, netMode}, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{SendQueueBytes: 16 << 20, WriteTimeout: time.Minute})
		c := ts.dial(t, "noecho")
		blocking := func() float64 { return testutil.ToFloat64(ts.metrics.writesByPath[pathBlocking]) }
		big := []byte(strings.Repeat("b", 64<<10))
		deadline := time.Now().Add(testTimeout)
		for blocking() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no write blocked")
			}
			c.rec.c.Send(Frame{Data: big})
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		deadline = start.Add(testTimeout)
		c.rec.c.Abort()
		select {
		case <-c.rec.closed:
		case <-time.After(testTimeout):
			t.Fatal("the connection did not end after Abort")
		}
		for ts.srv.QueuedBytes() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d bytes still held %v after Abort", ts.srv.QueuedBytes(), time.Since(start))
			}
			time.Sleep(time.Millisecond)
		}
	})
}

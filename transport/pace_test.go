package transport

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNextInterval: pacing starts only after two busy windows in a row,
// doubles up to the most, holds between the thresholds, halves when the
// workers are not busy, and is never on when the most is 0.
func TestNextInterval(t *testing.T) {
	const most = 64 * time.Millisecond
	tests := []struct {
		name     string
		interval time.Duration
		share    float64
		busy     bool
		most     time.Duration
		want     time.Duration
	}{
		{"one busy window is not enough", 0, 1, false, most, 0},
		{"two busy windows start it", 0, 0.9, true, most, paceMin},
		{"busy doubles", 8 * time.Millisecond, 0.9, true, most, 16 * time.Millisecond},
		{"up to the most", 64 * time.Millisecond, 1, true, most, most},
		{"a smaller most", 16 * time.Millisecond, 1, true, 20 * time.Millisecond, 20 * time.Millisecond},
		{"a most under paceMin", 0, 1, true, 2 * time.Millisecond, 2 * time.Millisecond},
		{"between the thresholds it holds", 32 * time.Millisecond, 0.6, true, most, 32 * time.Millisecond},
		{"between the thresholds off stays off", 0, 0.6, true, most, 0},
		{"not busy halves", 32 * time.Millisecond, 0.2, false, most, 16 * time.Millisecond},
		{"under paceMin it stops", paceMin, 0.2, false, most, 0},
		{"never with most 0", 0, 1, true, 0, 0},
	}
	for _, tt := range tests {
		if got := nextInterval(tt.interval, tt.share, tt.busy, tt.most); got != tt.want {
			t.Errorf("%s: nextInterval(%v, %v, %v, %v) = %v, want %v", tt.name, tt.interval, tt.share, tt.busy, tt.most, got, tt.want)
		}
	}
}

// TestPacedHeap: connections set aside come out earliest due first,
// whatever the order they went in.
func TestPacedHeap(t *testing.T) {
	var h pacedHeap
	var dues []int64
	for range 500 {
		d := rand.Int64N(100)
		dues = append(dues, d)
		h.push(paced{due: d})
		if len(dues)%3 == 0 { // interleave pops with pushes
			slices.Sort(dues)
			if got := h.pop().due; got != dues[0] {
				t.Fatalf("popped %d, want the earliest, %d", got, dues[0])
			}
			dues = dues[1:]
		}
	}
	slices.Sort(dues)
	for _, want := range dues {
		if got := h.pop().due; got != want {
			t.Fatalf("popped %d, want %d", got, want)
		}
	}
	if len(h) != 0 {
		t.Fatalf("%d left", len(h))
	}
}

// TestPacing_StopsAfterIdle: a window that lasted two or more (the
// workers were gone for most of it) ends pacing at once, from any
// interval; a window of busy workers keeps it.
func TestPacing_StopsAfterIdle(t *testing.T) {
	f := newFlusher(nil, DefaultMaxWriteDelay, false)
	f.max = 2
	for _, tt := range []struct {
		elapsed, busy time.Duration
		want          uint32
	}{
		{2 * paceWindow, 0, 0},
		{paceWindow, 2 * paceWindow, 64},
	} {
		f.mu.Lock()
		f.interval.Store(64)
		f.windowStart, f.busy = f.now()-int64(tt.elapsed), 0
		f.account(int64(tt.busy))
		f.mu.Unlock()
		if got := f.interval.Load(); got != tt.want {
			t.Errorf("a window of %v with the workers busy for %v: interval %d ms, want %d", tt.elapsed, tt.busy, got, tt.want)
		}
	}
}

// TestPacing_WritesOncePerInterval: while the flusher paces, messages sent
// to a connection within one interval of its last write go out together,
// in order, in one batched frame, no sooner than the interval after that
// write. Without pacing, the same sends go out one frame each.
func TestPacing_WritesOncePerInterval(t *testing.T) {
	for _, pace := range []bool{false, true} {
		t.Run(fmt.Sprintf("pace=%v", pace), func(t *testing.T) {
			const interval, sends = 40 * time.Millisecond, 8
			ts := startServer(t, tcpMode, Config{})
			f := ts.srv.flusher
			f.mu.Lock()
			// Keep the measuring window open, so that the interval set
			// here is the one the workers see.
			f.windowStart = f.now() + int64(time.Hour)
			f.mu.Unlock()
			c := ts.dial(t, "noecho")
			c.rec.c.SetBatch(true)
			c.rec.c.Send(Frame{Data: []byte("first")})
			if fr, err := c.next(); err != nil || string(fr.payload) != "first" {
				t.Fatalf("first frame: %v %v", fr, err)
			}
			wrote := time.Now()
			if pace {
				f.interval.Store(uint32(interval / time.Millisecond))
			}
			for i := range sends {
				c.rec.c.Send(Frame{Data: fmt.Appendf(nil, "m%d", i)})
				time.Sleep(interval / sends / 2)
			}
			var got [][]byte
			frames := 0
			for len(got) < sends {
				fr, err := c.next()
				if err != nil {
					t.Fatalf("after %d messages: %v", len(got), err)
				}
				if frames++; frames == 1 && pace && time.Since(wrote) < interval*3/4 {
					t.Errorf("the first paced frame came %v after the last write, well before the interval of %v", time.Since(wrote), interval)
				}
				got = append(got, bytes.Split(fr.payload, []byte("\n"))...)
			}
			for i, m := range got {
				if string(m) != fmt.Sprintf("m%d", i) {
					t.Fatalf("message %d is %q: %q", i, m, got)
				}
			}
			switch {
			case pace && frames > 2:
				t.Errorf("paced: %d messages sent within %v came in %d frames, want 1 (2 at most)", sends, interval/2, frames)
			case !pace && frames < sends/2:
				t.Errorf("not paced: %d messages came in %d frames, want about one each", sends, frames)
			}
		})
	}
}

// TestPacing_OnWhileSaturatedOffWhenIdle floods many connections from a
// tight loop, which keeps the flusher's workers busy all the time: pacing
// turns on. Once the flood stops and the flusher has been idle, the next
// message goes out at once, with pacing off. Every message arrives, in
// order.
func TestPacing_OnWhileSaturatedOffWhenIdle(t *testing.T) {
	const conns = 100
	ts := startServer(t, tcpMode, Config{SendQueueBytes: 8 << 20})
	f := ts.srv.flusher
	clients := make([]*client, conns)
	for i := range clients {
		clients[i] = ts.dial(t, "noecho")
		clients[i].rec.c.SetBatch(true)
	}
	var sent atomic.Int64
	stop := make(chan struct{})
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for n := int64(0); ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			fan := ts.srv.Fanout()
			for _, c := range clients {
				fan.Send(c.rec.c, Frame{Data: fmt.Appendf(nil, "%d", n)})
			}
			fan.Flush()
			sent.Store(n + 1)
		}
	}()
	// Readers take everything, checking the order.
	var readers sync.WaitGroup
	errs := make(chan error, conns)
	last := make([]atomic.Int64, conns)
	for i, c := range clients {
		last[i].Store(-1)
		readers.Go(func() {
			for {
				fr, err := c.next()
				if err != nil {
					errs <- fmt.Errorf("connection %d after %d: %w", i, last[i].Load(), err)
					return
				}
				for _, m := range bytes.Split(fr.payload, []byte("\n")) {
					var n int64
					if _, err := fmt.Sscan(string(m), &n); err != nil || n != last[i].Load()+1 {
						errs <- fmt.Errorf("connection %d got %q after %d", i, m, last[i].Load())
						return
					}
					last[i].Store(n)
				}
			}
		})
	}
	on := false
	for deadline := time.Now().Add(testTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if f.interval.Load() > 0 {
			on = true
			break
		}
	}
	close(stop)
	<-flooded
	if !on {
		t.Fatalf("a flusher kept busy for %v never paced", testTimeout)
	}
	// Wait until every reader has every message, then idle past two
	// windows.
	total := sent.Load()
	for deadline := time.Now().Add(testTimeout); ; time.Sleep(10 * time.Millisecond) {
		done := true
		for i := range last {
			done = done && last[i].Load() == total-1
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every connection got all %d messages", total)
		}
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	}
	time.Sleep(2*paceWindow + 10*time.Millisecond)
	start := time.Now()
	clients[0].rec.c.Send(Frame{Data: fmt.Appendf(nil, "%d", total)})
	for last[0].Load() != total {
		if time.Since(start) > testTimeout {
			t.Fatal("the message after the idle time did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
	if f.interval.Load() != 0 {
		t.Errorf("after %v idle the pacing interval is %d ms, want 0", 2*paceWindow, f.interval.Load())
	}
	for _, c := range clients {
		_ = c.conn.Close()
	}
	readers.Wait()
}

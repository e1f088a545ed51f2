package hub_test

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// drainer reads one client connection and counts the messages it got, so
// that the benchmark can wait until the clients have caught up.
type drainer struct {
	mu      sync.Mutex
	got     uint64
	waitFor uint64 // 0 when nobody waits
	wg      *sync.WaitGroup
}

// run reads c until it fails. Every frame after joined is a message; batch
// frames hold one per line.
func (d *drainer) run(c *wstest.Conn) {
	buf := make([]byte, 64<<10)
	ws := c.WS()
	_ = ws.SetReadDeadline(time.Time{})
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return
		}
		n := uint64(1)
		for {
			k, err := r.Read(buf)
			n += uint64(bytes.Count(buf[:k], []byte{'\n'}))
			if err != nil {
				break
			}
		}
		d.mu.Lock()
		d.got += n
		if d.waitFor != 0 && d.got >= d.waitFor {
			d.waitFor = 0
			d.wg.Done()
		}
		d.mu.Unlock()
	}
}

// await makes wg wait until the drainer has counted n messages.
func (d *drainer) await(n uint64, wg *sync.WaitGroup) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.got < n {
		wg.Add(1)
		d.waitFor, d.wg = n, wg
	}
}

// BenchmarkDeliver1000 measures Hub.Deliver, the hub's dispatch of one
// stored message to the 1,000 local members of its room (half in batch
// mode): encode once, append to 1,000 queues, hand the idle sessions to the
// flusher. The flusher's writes and the clients reading over loopback run
// meanwhile; every 64 messages the timer stops until the clients have
// caught up, so that queues stay short.
func BenchmarkDeliver1000(b *testing.B) {
	const (
		room     = "bench"
		sessions = 1000
		catchUp  = 64
	)
	h, url := startHub(b, hub.Config{SendQueueBytes: 64 << 20, Heartbeat: time.Hour})
	conns, epoch := dialJoined(b, url, room, sessions)
	drainers := make([]*drainer, sessions)
	var readers sync.WaitGroup
	for i, c := range conns {
		drainers[i] = &drainer{}
		readers.Go(func() { drainers[i].run(c) })
	}
	b.Cleanup(func() {
		for _, c := range conns {
			c.WS().Close()
		}
		readers.Wait()
	})
	data := json.RawMessage(`{"text":"a message of a typical chat room, neither tiny nor big","user":"someone","n":12345}`)
	waitAll := func(n uint64) {
		var wg sync.WaitGroup
		for _, d := range drainers {
			d.await(n, &wg)
		}
		wg.Wait()
	}

	var off uint64
	b.ReportAllocs()
	for b.Loop() {
		off++
		h.Deliver(&broker.Message{Room: room, Epoch: epoch, Offset: off, Time: time.Now().UnixMilli(), From: "bench", Data: data})
		if off%catchUp == 0 {
			b.StopTimer()
			waitAll(off)
			b.StartTimer()
		}
	}
	waitAll(off)
}

package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// benchRate is the steady publish rate of BenchmarkCrossInstanceLatency,
// in messages per second.
const benchRate = 200

// BenchmarkCrossInstanceLatency measures publish→deliver latency across
// instances: two instance processes share one redis-server, a client on A
// publishes to a room at a steady benchRate (WebSocket publish frames) and
// a client on B receives. Each message carries its send time; the latency
// is the time from just before the publish frame was written on A's
// socket to the message being decoded from B's socket. It reports the
// p50, p90, p99 and largest latency in milliseconds; ns/op would only
// repeat the pacing interval and is suppressed. Each iteration is one
// message, so -benchtime 2000x measures 2000 messages over 10 s:
//
//	go test -run '^$' -bench CrossInstance -benchtime 2000x ./cmd/switchboard
func BenchmarkCrossInstanceLatency(b *testing.B) {
	rs := redistest.Start(b)
	a := startInstance(b, "A", redisFlags(rs)...)
	bb := startInstance(b, "B", redisFlags(rs)...)
	const room = "bench"

	sub := wstest.Dial(b, bb.ws, wstest.Hello{User: "sub", Batch: true})
	sub.Join(room)
	pub := wstest.Dial(b, a.ws, wstest.Hello{User: "pub", Batch: true})
	pub.Join(room)

	// The subscriber records each message's latency; the publisher's acks
	// are read and checked.
	var mu sync.Mutex
	var latencies []time.Duration
	var problems []string
	received := make(chan struct{}, 1)
	go func() {
		for {
			f, err := sub.NextErr(time.Hour)
			if err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			if f.Type != protocol.TypeMessage {
				problems = append(problems, "subscriber got "+wstest.Describe(f))
			} else if p, err := decodePayload(f); err != nil {
				problems = append(problems, err.Error())
			} else {
				latencies = append(latencies, now.Sub(time.Unix(0, p.T)))
			}
			mu.Unlock()
			select {
			case received <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		for {
			f, err := pub.NextErr(time.Hour)
			if err != nil {
				return
			}
			if f.Type != protocol.TypeAck {
				mu.Lock()
				problems = append(problems, "publisher got "+wstest.Describe(f))
				mu.Unlock()
			}
		}
	}()
	sent := 0
	publish := func() {
		frame := wstest.Frame(protocol.TypePublish, "id", sent, "room", room, "data", payload{P: "pub", N: sent, T: time.Now().UnixNano()})
		if err := pub.TrySend(frame); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	// waitAll waits until the subscriber has every message sent so far and
	// returns the latencies.
	waitAll := func() []time.Duration {
		deadline := time.After(30 * time.Second)
		for {
			mu.Lock()
			n, bad := len(latencies), len(problems) > 0
			mu.Unlock()
			if bad {
				b.Fatalf("problems: %v", problems)
			}
			if n == sent {
				mu.Lock()
				defer mu.Unlock()
				return slices.Clone(latencies)
			}
			select {
			case <-received:
			case <-deadline:
				b.Fatalf("the subscriber received %d of %d messages", n, sent)
			}
		}
	}

	// Warm up the connections and scripts, untimed.
	for range 20 {
		publish()
		time.Sleep(time.Second / benchRate)
	}
	waitAll()
	mu.Lock()
	latencies = latencies[:0]
	sent = 0
	mu.Unlock()

	interval := time.Second / benchRate
	next := time.Now()
	start := next
	for b.Loop() {
		if d := time.Until(next); d > 0 {
			time.Sleep(d) // pacing, not waiting for a condition
		}
		next = next.Add(interval)
		publish()
	}
	elapsed := time.Since(start)
	lat := waitAll()
	b.StopTimer()

	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := min(int(p*float64(len(lat))), len(lat)-1)
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.90), "p90-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	if len(lat) > 1 {
		b.ReportMetric(float64(len(lat)-1)/elapsed.Seconds(), "msg/s")
	}
	if testing.Verbose() {
		b.Logf("%s", fmt.Sprintf("%d messages at %d/s: p50 %.2f ms, p99 %.2f ms", len(lat), benchRate, pct(0.5), pct(0.99)))
	}
}

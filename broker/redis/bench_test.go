package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// commandStats returns the calls per command from INFO commandstats
// ("evalsha", "xadd", ...).
func commandStats(tb testing.TB, s *redistest.Server) map[string]int64 {
	tb.Helper()
	info, err := s.Do("INFO", "commandstats")
	if err != nil {
		tb.Fatal(err)
	}
	stats := make(map[string]int64)
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, _ := strconv.ParseInt(calls, 10, 64)
		stats[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return stats
}

// commandsPerPublish publishes n messages with pub and returns, per
// publish, the commands clients sent (network) and those Redis ran in all
// (network commands plus those scripts called), excluding INFO and the
// probe markers of the brokers (PUBLISH outside scripts).
func commandsPerPublish(tb testing.TB, s *redistest.Server, n int, publishN func(n int)) (network, total float64, per map[string]float64) {
	tb.Helper()
	before := commandStats(tb, s)
	publishN(n)
	after := commandStats(tb, s)
	per = make(map[string]float64)
	for name, calls := range after {
		if d := calls - before[name]; d > 0 && name != "info" {
			per[name] = float64(d) / float64(n)
		}
	}
	// Clients send EVALSHA (EVAL after NOSCRIPT) and, for the probes,
	// PUBLISH; everything else ran inside the script.
	network = per["evalsha"] + per["eval"]
	for _, v := range per {
		total += v
	}
	return network, total, per
}

// TestBroker_CommandsPerPublish checks that one publish costs one command
// on the wire and reports what Redis runs for it.
func TestBroker_CommandsPerPublish(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	b := open(t, s.URL(), Config{ProbeInterval: time.Hour})
	publish(t, b, "warm", `0`) // loads the script
	for _, keyed := range []bool{false, true} {
		network, total, per := commandsPerPublish(t, s, 1000, func(n int) {
			for i := range n {
				p := broker.Publication{From: "alice", Origin: "s_1", Data: json.RawMessage(`{"text":"hello"}`)}
				if keyed {
					p.Key = fmt.Sprint("k", i)
				}
				if _, err := b.Publish(t.Context(), "general", p); err != nil {
					t.Fatal(err)
				}
			}
		})
		t.Logf("keyed=%v: %.2f network commands and %.2f Redis commands per publish: %v", keyed, network, total, per)
		if network != 1 {
			t.Errorf("keyed=%v: %.2f network commands per publish, want 1", keyed, network)
		}
	}
}

// BenchmarkPublish measures Publish to one Redis on loopback, serially and
// from parallel publishers (which rueidis pipelines), to one room and to
// many. It reports the commands Redis ran per publish.
func BenchmarkPublish(b *testing.B) {
	s := redistest.Start(b)
	data := json.RawMessage(`{"text":"hello, world","n":42}`)
	for _, bc := range []struct {
		name     string
		parallel bool
		rooms    int
	}{
		{"Serial", false, 1},
		{"ParallelOneRoom", true, 1},
		{"ParallelManyRooms", true, 1000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			br := open(b, s.URL(), Config{ProbeInterval: time.Hour})
			rooms := make([]string, bc.rooms)
			for i := range rooms {
				rooms[i] = fmt.Sprint("room-", i)
			}
			publish(b, br, rooms[0], `0`)
			before := commandStats(b, s)
			var n atomic.Int64
			b.ReportAllocs()
			if bc.parallel {
				b.SetParallelism(16) // 16 × GOMAXPROCS publishers
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						i++
						if _, err := br.Publish(context.Background(), rooms[i%len(rooms)], broker.Publication{From: "alice", Data: data}); err != nil {
							b.Error(err)
							return
						}
						n.Add(1)
					}
				})
			} else {
				for b.Loop() {
					if _, err := br.Publish(context.Background(), rooms[0], broker.Publication{From: "alice", Data: data}); err != nil {
						b.Fatal(err)
					}
					n.Add(1)
				}
			}
			b.StopTimer()
			after := commandStats(b, s)
			var total int64
			for name, calls := range after {
				if name != "info" {
					total += calls - before[name]
				}
			}
			b.ReportMetric(float64(total)/float64(n.Load()), "rediscmds/op")
			b.ReportMetric(float64(after["evalsha"]-before["evalsha"]+after["eval"]-before["eval"])/float64(n.Load()), "netcmds/op")
		})
	}
}

// latencyHandler signals each delivery.
type latencyHandler struct{ got chan *broker.Message }

func (h *latencyHandler) Deliver(m *broker.Message)     { h.got <- m }
func (h *latencyHandler) Reset(string, broker.Position) {}

// BenchmarkCrossInstanceLatency measures one message's way from Publish on
// one instance to Deliver on another (publish → script → pub/sub →
// dispatcher → handler), one message at a time.
func BenchmarkCrossInstanceLatency(b *testing.B) {
	s := redistest.Start(b)
	prefix := newPrefix()
	pub := open(b, s.URL(), Config{Prefix: prefix, ProbeInterval: time.Hour})
	sub := open(b, s.URL(), Config{Prefix: prefix, ProbeInterval: time.Hour})
	h := &latencyHandler{got: make(chan *broker.Message, 1)}
	if err := sub.Subscribe(context.Background(), h, "r"); err != nil {
		b.Fatal(err)
	}
	data := json.RawMessage(`{"text":"hello"}`)
	for b.Loop() {
		if _, err := pub.Publish(context.Background(), "r", broker.Publication{Data: data}); err != nil {
			b.Fatal(err)
		}
		<-h.got
	}
}

// BenchmarkSaveSessions measures one hub save tick: 100 session states,
// each in its inbox and one room, written to one Redis on loopback. The
// hub saves a tenth of its changed sessions ten times a second, so at any
// publish rate an instance of 1,000 members of a busy room makes one such
// call every 100 ms.
func BenchmarkSaveSessions(b *testing.B) {
	s := redistest.Start(b)
	br := open(b, s.URL(), Config{ProbeInterval: time.Hour})
	states := make([]broker.SessionState, 100)
	for i := range states {
		user := fmt.Sprintf("user-%d", i)
		states[i] = broker.SessionState{ID: fmt.Sprintf("s_%016d", i), User: user, Rooms: map[string]broker.Position{
			"@" + user: {Epoch: "abcdefghijkl", Offset: 3},
			"general":  {Epoch: "mnopqrstuvwx", Offset: uint64(1000 + i)},
		}}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := br.SaveSessions(context.Background(), 5*time.Minute, states...); err != nil {
			b.Fatal(err)
		}
	}
}

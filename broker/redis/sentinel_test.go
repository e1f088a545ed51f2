package redis

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// openSentinel returns a Broker that finds its primary through the
// sentinels of s, closed when the test ends.
func openSentinel(t testing.TB, s *redistest.Sentinel, cfg Config) *Broker {
	t.Helper()
	cfg.SentinelMaster = s.Master
	return open(t, s.Addrs(), cfg)
}

// TestSentinel runs the conformance suite against a primary found through
// three sentinels, then kills the primary (SIGKILL) while two brokers
// publish to the same rooms: the sentinels promote the replica, delivery
// resumes by itself, each room starts exactly one new epoch (decided by
// Redis, whichever broker meets the new primary first), and every handler
// either continues without a hole or gets a Reset to it.
func TestSentinel(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t)

	conformance(t, func(t testing.TB, cfg Config) *Broker { return openSentinel(t, s, cfg) })
	t.Run("URLForm", func(t *testing.T) {
		// The sentinel addresses and the master set in one URL, as before.
		url := "redis://" + s.Sentinels[0].Addr + "?master_set=" + s.Master + "&addr=" + s.Sentinels[1].Addr
		b := open(t, url, Config{})
		h := newRecorder(t)
		if err := b.Subscribe(t.Context(), h, "r"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, h, publish(t, b, "r", `1`))
	})

	t.Run("PrimaryKilled", func(t *testing.T) {
		prefix := newPrefix()
		cfg := Config{Prefix: prefix, ProbeInterval: 100 * time.Millisecond, Timeout: time.Second, HistorySize: 100_000}
		cfg.InstanceID = "i_a"
		a := openSentinel(t, s, cfg)
		cfg.InstanceID = "i_b"
		b := openSentinel(t, s, cfg)
		rooms := []string{"r1", "r2", "r3"}
		hs := make(map[string][2]*recorder)
		for _, room := range rooms {
			h := [2]*recorder{newRecorder(t), newRecorder(t)}
			for j, x := range []*Broker{a, b} {
				if err := x.Subscribe(t.Context(), h[j], room); err != nil {
					t.Fatal(err)
				}
			}
			hs[room] = h
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		acked := make(map[string][]broker.Position)
		for _, room := range rooms {
			for j, x := range []*Broker{a, b} {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						pos, err := x.Publish(context.Background(), room, broker.Publication{Data: json.RawMessage(strconv.Itoa(j*1_000_000 + i))})
						if err == nil {
							mu.Lock()
							acked[room] = append(acked[room], pos)
							mu.Unlock()
						}
						time.Sleep(5 * time.Millisecond) // a steady rate, not a flood
					}
				})
			}
		}
		count := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(acked[rooms[0]])
		}
		if !eventually(t, waitTimeout, func() bool { return count() >= 20 }) {
			t.Fatal("publishing did not start")
		}
		old := s.Primary()
		old.WaitReplicated()
		killed := time.Now()
		old.Stop()
		s.WaitPrimary(s.Other(old))
		promoted := time.Since(killed)
		mark := count()
		if !eventually(t, waitTimeout, func() bool { return count() >= mark+40 }) {
			t.Fatal("publishing did not resume after the failover")
		}
		close(stop)
		wg.Wait()

		var stall time.Duration
		for _, room := range rooms {
			ps := acked[room] // in the order they were acknowledged
			last := ps[len(ps)-1]
			epochs := map[string]bool{}
			for _, p := range ps {
				epochs[p.Epoch] = true
				if p.Epoch == last.Epoch && p.Offset > last.Offset {
					last = p
				}
			}
			if len(epochs) != 2 {
				t.Errorf("room %s: publishes were acknowledged in epochs %v, want the first and exactly one new one", room, epochs)
			}
			for j, h := range hs[room] {
				// The recorder fails the test on a delivery that follows
				// neither the previous one nor a Reset.
				waitFor(t, h, last)
				for _, p := range ps {
					if p.Epoch == last.Epoch && !h.has(p) {
						t.Errorf("room %s: handler %d lacks acknowledged %s/%d", room, j, p.Epoch, p.Offset)
					}
				}
				resets := h.resets()
				if len(resets) == 0 || resets[len(resets)-1].Epoch != last.Epoch {
					t.Errorf("room %s: handler %d got resets %v, want one to the new epoch %s", room, j, resets, last.Epoch)
				}
				stall = max(stall, h.longestGap())
			}
		}
		t.Logf("primary killed: sentinels promoted the replica after %v; longest pause in delivery: %v", promoted.Round(time.Millisecond), stall.Round(time.Millisecond))
	})
}

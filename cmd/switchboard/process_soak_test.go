//go:build soak

package main

// The soak (make soak, issue 12): minutes of steady mixed load on three
// instances, one of them restarted halfway, while their memory,
// goroutines and open files are sampled. Behind the build tag soak: it
// runs for SOAK_DURATION (10 minutes by default), which make test cannot
// afford.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard-rt/switchboard/internal/chaos"
	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// The soak's bounds. A series fails when its slope (per hour, after the
// warm-up, see segmentedSlope) passes its bound AND the growth that slope
// makes over the measured time passes the series' noise floor: a short
// run (SOAK_DURATION=2m) measures too little to tell a slope of a few
// MiB an hour from the garbage collector's rhythm, and must not fail for
// it, while a leak of one goroutine, socket or a few KiB per session or
// message shows at any length.
const (
	soakRSSSlope       = 32 << 20 // bytes per hour
	soakRSSFloor       = 8 << 20  // bytes
	soakGoroutineSlope = 120      // goroutines per hour
	soakGoroutineFloor = 25
	soakFDSlope        = 60 // open files per hour
	soakFDFloor        = 10
	// soakInterval is the sampling period.
	soakInterval = 10 * time.Second
)

// soakSeries names the three sampled series.
var soakSeries = []string{"rss", "goroutines", "fds"}

// TestProcess_Soak runs SOAK_DURATION (default 10m) of steady mixed load on
// one redis-server and three instances: the chaos workload's Go clients
// (internal/chaos: ~80 users over 6 rooms, a few with two sessions,
// publishing through client.Publish and client.Send and through the HTTP
// API with keys, every fourth publish a direct message), plus churners
// whose sessions connect, join, publish, leave and disconnect over and
// over on every instance. Halfway, instance B gets SIGTERM (it drains,
// its clients move to A and C), exits 0 and is started again on its
// address. Every soakInterval the RSS, go_goroutines and open fds of each
// instance are sampled; after the warm-up (a tenth of the run, at most a
// minute, at the start and again after the restart) the slope of each
// series is fitted (segmentedSlope) and checked against the bounds above.
// Every acknowledged message must reach every client of its room exactly
// once, in order. One summary line ends the run.
func TestProcess_Soak(t *testing.T) {
	skipIfShort(t)
	duration := 10 * time.Minute
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 30*time.Second {
			t.Fatalf("SOAK_DURATION=%q: want a duration of at least 30s", s)
		}
		duration = d
	}
	warmup := min(duration/10, time.Minute)

	rs := redistest.Start(t)
	flags := []string{
		"--redis", rs.URL() + "/0", "--history-size", "2000",
		"--heartbeat", "5s", "--drain-spread", "1s", "--drain-timeout", "5s",
	}
	names := []string{"A", "B", "C"}
	addrs := fixedPorts(t, len(names))
	nodes := make([]*soakNode, len(names))
	cfg := chaos.Config{
		Users: 80, TwoSessions: 16, Rooms: 6, RoomsPerUser: 2,
		ClientPublishers: 12, APIPublishers: 3, Interval: 500 * time.Millisecond,
		Prefix: "soak",
	}
	for i, name := range names {
		nodes[i] = &soakNode{chaosNode: chaosNode{name: name, addr: addrs[i], flags: flags}}
		nodes[i].start(t)
		cfg.WS = append(cfg.WS, "ws://"+addrs[i]+"/ws")
		cfg.API = append(cfg.API, "http://"+addrs[i])
	}
	dialCtx, cancel := context.WithTimeout(t.Context(), time.Minute)
	w, err := chaos.Start(dialCtx, cfg)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	began := time.Now()
	note := func(format string, args ...any) {
		t.Logf("%7.1fs %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	w.Publish()

	// The samplers: every instance, every soakInterval.
	stop := make(chan struct{})
	var sampling sync.WaitGroup
	for _, n := range nodes {
		sampling.Go(func() {
			tick := time.NewTicker(soakInterval)
			defer tick.Stop()
			for {
				n.sample(time.Since(began))
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
	}

	// The churners: short sessions on every instance, in turn.
	var churned, churnFailed atomic.Int64
	var churnMu sync.Mutex
	var churnErrs []string
	var churning sync.WaitGroup
	for c := range 3 {
		churning.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
				n := nodes[(c+i)%len(nodes)]
				in, gen := n.current()
				if in == nil {
					continue // being restarted
				}
				err := soakChurn(in, fmt.Sprintf("churner-%d", c), fmt.Sprintf("churn-room%d", i%cfg.Rooms))
				if err == nil {
					churned.Add(1)
					continue
				}
				if _, now := n.current(); now != gen {
					continue // the instance went down under this cycle: expected
				}
				churnFailed.Add(1)
				churnMu.Lock()
				if len(churnErrs) < 5 {
					churnErrs = append(churnErrs, fmt.Sprintf("%s: %v", in.id, err))
				}
				churnMu.Unlock()
			}
		})
	}

	// Halfway, B drains and restarts.
	time.Sleep(duration / 2)
	b := nodes[1]
	restartAt := time.Since(began)
	note("SIGTERM %s (%d clients on it)", b.cur.id, w.On(b.cur.id))
	in := b.down()
	in.signal(t, syscall.SIGTERM)
	code, err := in.waitExit(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("%s exited %d after SIGTERM, want 0", in.id, code)
	}
	b.up(t)
	note("%s exited %d, restarted as %s", in.id, code, b.cur.id)
	time.Sleep(duration - time.Since(began))

	close(stop)
	sampling.Wait()
	churning.Wait()
	note("load stopped; clients on the instances: A %d, B %d, C %d", w.On(nodes[0].cur.id), w.On(nodes[1].cur.id), w.On(nodes[2].cur.id))
	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	w.Stop(stopCtx)
	cancel()
	waitCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	if err := w.WaitCaughtUp(waitCtx); err != nil {
		t.Error(err)
	}
	cancel()
	w.Close()
	r := w.Report()
	t.Log(r)
	t.Log(r.Details())
	if err := r.Err(); err != nil {
		t.Error(err)
	}
	if r.Published == 0 || r.Delivered == 0 {
		t.Errorf("nothing published or delivered: %v", r)
	}
	if n := churnFailed.Load(); n > 0 {
		t.Errorf("%d churn cycles failed on instances that were up; the first: %s", n, strings.Join(churnErrs, "; "))
	}
	if churned.Load() == 0 {
		t.Error("no churn cycle completed")
	}

	// The slopes: samples after the warm-up, in two segments (before the
	// restart, and from the warm-up after it on).
	bounds := map[string][2]float64{
		"rss": {soakRSSSlope, soakRSSFloor}, "goroutines": {soakGoroutineSlope, soakGoroutineFloor},
		"fds": {soakFDSlope, soakFDFloor},
	}
	worst := map[string]float64{}
	for _, series := range soakSeries {
		worst[series] = math.Inf(-1)
		for _, n := range nodes {
			var use []sample
			for _, s := range n.samples[series] {
				switch {
				case s.at >= warmup && s.at < restartAt:
					s.segment = 0
				case s.at >= restartAt+warmup:
					s.segment = 1
				default:
					continue
				}
				use = append(use, s)
			}
			slope, ok := segmentedSlope(use)
			if !ok {
				t.Errorf("%s %s: too few samples after the warm-up (%d)", n.name, series, len(use))
				continue
			}
			span := use[len(use)-1].at - use[0].at
			t.Logf("%s %s: %d samples, slope %+.1f/h, first %.0f last %.0f", n.name, series, len(use), slope, use[0].value, use[len(use)-1].value)
			worst[series] = max(worst[series], slope)
			bound, floor := bounds[series][0], bounds[series][1]
			if slope > bound && slope*span.Hours() > floor {
				t.Errorf("%s: %s grows by %+.1f/h (bound %.0f/h), %.0f over the %v measured (noise floor %.0f)",
					n.name, series, slope, bound, slope*span.Hours(), span.Round(time.Second), floor)
			}
		}
	}

	verdict := "PASS"
	if t.Failed() {
		verdict = "FAIL"
	}
	line := fmt.Sprintf("soak: %v 3 instances (B restarted with SIGTERM at %v), %d msgs published, %d delivered, %d lost, %d duplicated, %d churn cycles; "+
		"worst slopes: rss %+.1f MiB/h, goroutines %+.1f/h, fds %+.1f/h; %s",
		duration, restartAt.Round(time.Second), r.Published, r.Delivered, r.Lost, r.Duplicated, churned.Load(),
		worst["rss"]/(1<<20), worst["goroutines"], worst["fds"], verdict)
	t.Log(line)
	fmt.Println(line)
}

// soakNode is a chaosNode whose process the samplers and churners find
// under a lock, with a generation that changes when it goes down and up.
type soakNode struct {
	chaosNode
	mu         sync.Mutex
	gen        int
	restarting bool
	samples    map[string][]sample
}

func (n *soakNode) start(t *testing.T) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.chaosNode.start(t)
	n.gen++
}

// current returns the running process and the generation, or nil while
// the node is being restarted.
func (n *soakNode) current() (*instance, int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.restarting {
		return nil, n.gen
	}
	return n.cur, n.gen
}

// down marks the node as being restarted and returns its process.
func (n *soakNode) down() *instance {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.restarting = true
	n.gen++
	return n.cur
}

// up starts the node's next process.
func (n *soakNode) up(t *testing.T) {
	n.start(t)
	n.mu.Lock()
	n.restarting = false
	n.mu.Unlock()
}

// sample records the RSS, goroutines and open files of the running
// process, if there is one and it answers.
func (n *soakNode) sample(at time.Duration) {
	in, _ := n.current()
	if in == nil {
		return
	}
	pid := in.cmd.Process.Pid
	rss, err1 := residentBytes(pid)
	fds, err2 := openFDs(pid)
	g, err3 := in.metric("go_goroutines")
	if errors.Join(err1, err2, err3) != nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.samples == nil {
		n.samples = map[string][]sample{}
	}
	n.samples["rss"] = append(n.samples["rss"], sample{at: at, value: float64(rss)})
	n.samples["fds"] = append(n.samples["fds"], sample{at: at, value: float64(fds)})
	n.samples["goroutines"] = append(n.samples["goroutines"], sample{at: at, value: g})
}

// soakChurn is one short session: hello, join room, publish, leave,
// close.
func soakChurn(in *instance, user, room string) error {
	ws, _, err := dialHello(in, wstest.Hello{User: user})
	if err != nil {
		return err
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	steps := []struct{ frame, want string }{
		{wstest.Frame("join", "id", 1, "room", room), "joined"},
		{wstest.Frame("publish", "id", 2, "room", room, "data", map[string]any{"churn": user}), "ack"},
		{wstest.Frame("leave", "id", 3, "room", room), "left"},
	}
	for _, s := range steps {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(s.frame)); err != nil {
			return fmt.Errorf("send %s: %w", s.want, err)
		}
		for {
			f, err := readFrame(ws)
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", s.want, err)
			}
			if f.Type == s.want {
				break
			}
			if f.Type == "error" {
				return fmt.Errorf("waiting for %s: %s", s.want, wstest.Describe(f))
			}
		}
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	return ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second))
}

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/chaos"
	"github.com/switchboard-rt/switchboard/internal/freeport"
	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// chaosPlan is how long and how hard TestProcess_Chaos runs.
type chaosPlan struct {
	name     string
	workload chaos.Config
	// cycles is how many times every instance is killed and restarted in
	// turn and then all of them are restarted with SIGTERM, one by one.
	cycles int
	// pairs adds to each cycle, between the kills and the SIGTERMs, the
	// kill of two instances at once, for each pair in turn.
	pairs bool
	// warmup is the publishing before the first kill; down how long a
	// killed instance stays down; settle the publishing after each
	// restart.
	warmup, down, settle time.Duration
}

// chaosPlanFromEnv returns the short plan (about 30 s of chaos, ~100
// clients), or with SWITCHBOARD_CHAOS=full (make chaos) the full one
// (several minutes, ~200 clients, more rooms and publishers, three cycles
// that also kill two instances at once).
func chaosPlanFromEnv(t *testing.T) chaosPlan {
	switch mode := os.Getenv("SWITCHBOARD_CHAOS"); mode {
	case "", "short":
		return chaosPlan{
			name: "short",
			workload: chaos.Config{
				Users: 80, TwoSessions: 20, Rooms: 5, RoomsPerUser: 2,
				ClientPublishers: 16, APIPublishers: 4, Interval: 250 * time.Millisecond,
			},
			cycles: 1, warmup: 2 * time.Second, down: time.Second, settle: 3 * time.Second,
		}
	case "full":
		return chaosPlan{
			name: "full",
			workload: chaos.Config{
				Users: 160, TwoSessions: 40, Rooms: 8, RoomsPerUser: 3,
				ClientPublishers: 32, APIPublishers: 6, Interval: 250 * time.Millisecond,
			},
			cycles: 3, pairs: true, warmup: 5 * time.Second, down: 3 * time.Second, settle: 6 * time.Second,
		}
	default:
		t.Fatalf("SWITCHBOARD_CHAOS=%q: want short or full", mode)
		return chaosPlan{}
	}
}

// TestProcess_Chaos is the zero-loss proof of issue 5: one redis-server and
// three instance processes; ~100 Go clients (client.Dial with the URLs of
// all three, so they spread over them and move between them) in five
// rooms, a quarter of the users with two sessions; publishers at a steady
// rate through clients (client.Publish and client.Send) and through the
// HTTP API (with a key each, retried with the same key until acknowledged).
// Meanwhile every instance is killed with SIGKILL and restarted on its
// address in turn, and then all three are restarted with SIGTERM one after
// the other (each drains and exits 0 first). After the publishing stops and
// the clients caught up, every client must hold every acknowledged message
// of its rooms and inbox exactly once, in offset order (see internal/chaos),
// no client may have been reset (Redis stays up) or stopped, and the one
// summary line says so. SWITCHBOARD_CHAOS=full runs the longer version
// (make chaos), which also prints the line to stdout.
func TestProcess_Chaos(t *testing.T) {
	skipIfShort(t)
	// Not parallel: the proof runs with the machine to itself, so that
	// what it measures (the longest disconnection) is the system's and not
	// the neighbours'.
	plan := chaosPlanFromEnv(t)
	rs := redistest.Start(t)
	flags := []string{
		"--redis", rs.URL() + "/0", "--history-size", "2000",
		"--heartbeat", "2s", "--drain-spread", "1s", "--drain-timeout", "5s",
	}
	const drainTimeout = 5 * time.Second
	names := []string{"A", "B", "C"}
	addrs := fixedPorts(t, len(names))
	nodes := make([]*chaosNode, len(names))
	cfg := plan.workload
	for i, name := range names {
		nodes[i] = &chaosNode{name: name, addr: addrs[i], flags: flags}
		nodes[i].start(t)
		cfg.WS = append(cfg.WS, "ws://"+addrs[i]+"/ws")
		cfg.API = append(cfg.API, "http://"+addrs[i])
	}

	began := time.Now()
	dialCtx, cancel := context.WithTimeout(t.Context(), time.Minute)
	w, err := chaos.Start(dialCtx, cfg)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	t.Logf("%s run: %d clients dialled and joined in %v", plan.name, w.Clients(), time.Since(began).Round(time.Millisecond))

	began = time.Now()
	note := func(format string, args ...any) {
		t.Logf("%6.1fs %s", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	spread := func() string {
		on := make([]string, len(nodes))
		for i, n := range nodes {
			on[i] = fmt.Sprintf("%s %d", n.cur.id, w.On(n.cur.id))
		}
		return strings.Join(on, ", ")
	}
	note("clients on the instances: %s", spread())
	w.Publish()
	// Chaos is a matter of time: the publishers run while instances go
	// down and come back, so these pauses are the point, not a wait for
	// something.
	time.Sleep(plan.warmup)
	for cycle := 1; cycle <= plan.cycles; cycle++ {
		for _, n := range nodes {
			note("cycle %d: SIGKILL %s (%d clients on it)", cycle, n.cur.id, w.On(n.cur.id))
			n.cur.kill()
			time.Sleep(plan.down)
			n.start(t)
			note("cycle %d: %s restarted as %s", cycle, n.name, n.cur.id)
			time.Sleep(plan.settle)
		}
		if plan.pairs {
			for i := range nodes {
				a, b := nodes[i], nodes[(i+1)%len(nodes)]
				note("cycle %d: SIGKILL %s and %s at once (%d clients on them)", cycle, a.cur.id, b.cur.id, w.On(a.cur.id)+w.On(b.cur.id))
				a.cur.kill()
				b.cur.kill()
				time.Sleep(plan.down)
				a.start(t)
				b.start(t)
				note("cycle %d: restarted as %s and %s", cycle, a.cur.id, b.cur.id)
				time.Sleep(plan.settle)
			}
		}
		for _, n := range nodes {
			note("cycle %d: SIGTERM %s (%d clients on it)", cycle, n.cur.id, w.On(n.cur.id))
			n.cur.signal(t, syscall.SIGTERM)
			signalled := time.Now()
			code, err := n.cur.waitExit(drainTimeout + 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code != 0 {
				t.Errorf("%s exited %d after SIGTERM, want 0", n.cur.id, code)
			}
			exited := time.Since(signalled)
			n.start(t)
			note("cycle %d: %s exited %d after %v, restarted as %s", cycle, n.name, code, exited.Round(time.Millisecond), n.cur.id)
			time.Sleep(plan.settle)
		}
	}
	note("clients on the instances: %s", spread())

	stopCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	took := w.Stop(stopCtx)
	cancel()
	note("publishing stopped; the last publishes were answered within %v", took.Round(time.Millisecond))
	caughtUp := time.Now()
	waitCtx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	err = w.WaitCaughtUp(waitCtx)
	cancel()
	if err != nil {
		t.Error(err)
	} else {
		note("every client caught up within %v", time.Since(caughtUp).Round(time.Millisecond))
	}
	eventually(t, 10*time.Second, func() string {
		if n := w.Connected(); n != w.Clients() {
			return fmt.Sprintf("%d of %d clients connected at the end", n, w.Clients())
		}
		return ""
	})
	w.Close()

	r := w.Report()
	t.Log(r)
	t.Log(r.Details())
	if os.Getenv("SWITCHBOARD_CHAOS") != "" {
		fmt.Println(r)
	}
	if err := r.Err(); err != nil {
		t.Error(err)
	}
	if r.Published == 0 || r.Delivered == 0 {
		t.Errorf("nothing published or delivered: %v", r)
	}
}

// chaosNode is one instance of the chaos test across its restarts: the
// same address every time (so the clients' URLs stay valid), a new process
// and instance id (i_A1, i_A2 …, as a restarted process gets a new random
// id by default).
type chaosNode struct {
	name  string
	addr  string
	flags []string
	runs  int
	cur   *instance
}

// start starts the node's next process and waits until it is ready.
func (n *chaosNode) start(t *testing.T) {
	t.Helper()
	n.runs++
	n.cur = startInstanceAt(t, n.name+strconv.Itoa(n.runs), n.addr, n.flags...)
}

// fixedPorts returns n loopback addresses that are free now, on ports below
// the kernel's ephemeral range: an instance restarts on its address, and
// while it is down no outgoing connection (the clients reconnect all the
// time) may take its port as a local one.
func fixedPorts(t testing.TB, n int) []string {
	t.Helper()
	addrs, err := freeport.Loopback(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

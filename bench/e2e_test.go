package bench

import (
	"context"
	"os"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// childEnv makes the test binary a bench child process (see TestMain), so
// that --procs is tested with real processes.
const childEnv = "SWITCHBOARD_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(RunChild(context.Background(), os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

func childCommand() ([]string, []string) {
	return []string{os.Args[0], "-test.run=^$"}, []string{childEnv + "=1"}
}

func TestRun_FanoutNoLoss(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	res, err := Run(t.Context(), Config{
		Workload: Fanout, URLs: []string{srv.WS}, Rooms: 1, Members: 20,
		Ladder: []float64{50}, Duration: time.Second, Drain: 500 * time.Millisecond, Batch: true, Quiet: true,
		ServerPIDs: []int{os.Getpid()},
		// Counted exactly below, also on a slow machine: queue what no
		// worker can take at once instead of skipping it.
		APIQueue: 100,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connect.Opened != 20 || res.Connect.Failed != 0 {
		t.Fatalf("connect = %+v, want 20 open", res.Connect)
	}
	if len(res.Steps) != 1 {
		t.Fatalf("%d steps, want 1", len(res.Steps))
	}
	st := res.Steps[0]
	// A pacer held up for over 100 ms (a loaded machine, the race
	// detector) skips the sends it is late for; every other one must be
	// acknowledged and delivered to all 20 members.
	if st.Sent+st.Missed != 50 || st.Missed > 10 || st.Acked != st.Sent || st.PubErrors != 0 {
		t.Errorf("publishes: sent %d acked %d skipped %d errors %d, want 50 sent or skipped, all sent acked", st.Sent, st.Acked, st.Missed, st.PubErrors)
	}
	if st.Expected != st.Acked*20 || st.Received != st.Expected || st.Lost != 0 || st.Dups != 0 {
		t.Errorf("deliveries: expected %d received %d lost %d dups %d, want 20 per acked publish, none lost", st.Expected, st.Received, st.Lost, st.Dups)
	}
	// Sane: milliseconds, not micro- or nanoseconds.
	if st.Latency.Count != st.Received || st.Latency.P50 <= 0 || st.Latency.P50 > st.Latency.P99 || st.Latency.P99 > st.Latency.Max || st.Latency.Max > 5000 {
		t.Errorf("latency %+v is not sane", st.Latency)
	}
	if st.DeliveredPerSec != float64(st.Received) {
		t.Errorf("DeliveredPerSec = %v, want %d (received in the 1 s step)", st.DeliveredPerSec, st.Received)
	}
	if st.ServerCPU <= 0 || st.PerCoreSecond <= 0 {
		t.Errorf("server CPU %v, per core-second %v: want positive", st.ServerCPU, st.PerCoreSecond)
	}
	clean := st.Missed == 0 && st.Latency.P99 < float64(cleanP99.Milliseconds())
	if res.Summary == nil || (res.Summary.CleanRate == 50) != clean {
		t.Errorf("summary %+v, want clean rate 50 exactly when nothing was skipped and p99 < 100 ms", res.Summary)
	}
	if len(res.Notes) != 0 || len(res.Warnings) != 0 {
		t.Errorf("notes %v warnings %v, want none", res.Notes, res.Warnings)
	}
}

func TestRun_IdleMeasuresMemory(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{})
	res, err := Run(t.Context(), Config{Workload: Idle, URLs: []string{srv.WS}, Conns: 100, Duration: 100 * time.Millisecond, Quiet: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connect.Opened != 100 || res.Connect.Failed != 0 || res.Connect.PerSecond <= 0 {
		t.Errorf("connect = %+v, want 100 open", res.Connect)
	}
	if len(res.Memory) != 1 {
		t.Fatalf("memory = %+v (warnings %v), want one server", res.Memory, res.Warnings)
	}
	m := res.Memory[0]
	if m.Conns != 100 || m.BeforeBytes <= 0 || m.AfterBytes <= 0 || m.Source != "/metrics" {
		t.Errorf("memory = %+v", m)
	}
	// The run closes its connections before it returns; the server
	// notices shortly after.
	deadline := time.Now().Add(5 * time.Second)
	for srv.Hub().SessionCount() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.Hub().SessionCount(); n != 0 {
		t.Errorf("%d sessions left after the run", n)
	}
}

func TestRun_RoomsInChildProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	a := wstest.Start(t, switchboard.Config{})
	cmd, env := childCommand()
	res, err := Run(t.Context(), Config{
		Workload: Rooms, URLs: []string{a.WS}, Conns: 40, Ladder: []float64{40, 80}, Duration: 500 * time.Millisecond,
		Drain: 300 * time.Millisecond, Procs: 2, ChildCommand: cmd, ChildEnv: env, Quiet: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connect.Opened != 40 || len(res.Steps) != 2 {
		t.Fatalf("opened %d, %d steps; want 40 and 2", res.Connect.Opened, len(res.Steps))
	}
	for _, st := range res.Steps {
		want := int64(st.Rate / 2) // 0.5 s per step, one receiver per message
		if st.Sent != want || st.Expected != want || st.Received != want || st.Lost != 0 || st.Dups != 0 {
			t.Errorf("step %v/s: sent %d expected %d received %d lost %d dups %d, want %d each and none lost",
				st.Rate, st.Sent, st.Expected, st.Received, st.Lost, st.Dups, want)
		}
	}
}

// TestRun_ContinuousWithWarmupAndReceivers runs the issue-15 shape on a
// small scale: a warm-up, steps back to back, API publishing from a few
// workers, and each receiver mode.
func TestRun_ContinuousWithWarmupAndReceivers(t *testing.T) {
	t.Parallel()
	for _, recv := range []string{ReceivePooled, ReceiveScan, ReceiveDecode} {
		t.Run(recv, func(t *testing.T) {
			t.Parallel()
			srv := wstest.Start(t, switchboard.Config{})
			res, err := Run(t.Context(), Config{
				Workload: Fanout, URLs: []string{srv.WS}, Rooms: 1, Members: 10, Receiver: recv,
				Ladder: []float64{20, 40}, Duration: 500 * time.Millisecond, Warmup: 500 * time.Millisecond, WarmupRate: 10,
				Continuous: true, APIWorkers: 4, APIQueue: 100, Drain: 300 * time.Millisecond, Batch: true, Quiet: true,
				ServerPIDs: []int{os.Getpid()}, BrokerPIDs: []int{os.Getpid()},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Steps) != 3 || !res.Steps[0].Warmup || res.Steps[1].Warmup || res.Steps[0].Rate != 10 {
				t.Fatalf("steps %+v, want the warm-up at 10/s then 2 steps", res.Steps)
			}
			var acked int64
			for _, st := range res.Steps {
				// Half-second steps. A pacer that a loaded machine holds up
				// for over 100 ms skips what it is late for: allow that, but
				// every publish must be accounted for and delivered.
				want := int64(st.Rate / 2)
				acked += st.Acked
				if st.Acked+st.Missed != want || st.Expected != st.Acked*10 || st.Received != st.Expected || st.Lost != 0 || st.Dups != 0 {
					t.Errorf("step %v/s: acked %d skipped %d expected %d received %d lost %d dups %d; want %d acked or skipped, all delivered",
						st.Rate, st.Acked, st.Missed, st.Expected, st.Received, st.Lost, st.Dups, want)
				}
				if st.AcceptedPerSec != float64(st.Acked)*2 {
					t.Errorf("step %v/s: accepted %v/s, want %d", st.Rate, st.AcceptedPerSec, st.Acked*2)
				}
				if st.PublishLatency == nil || st.PublishLatency.Count != st.Acked {
					t.Errorf("step %v/s: publish latency %+v, want one round trip per publish", st.Rate, st.PublishLatency)
				}
				// CPU time comes in 10 ms ticks: a short step may show none.
				if st.DeliveredPerSec <= 0 || (st.ServerCPU > 0 && (st.PerCoreSecond <= 0 || st.PerCoreSecondWithBroker <= 0)) || st.DrainSeconds != 0 {
					t.Errorf("step %v/s: deliveries/s %v, per core-s %v / %v, drain %v", st.Rate, st.DeliveredPerSec, st.PerCoreSecond, st.PerCoreSecondWithBroker, st.DrainSeconds)
				}
			}
			if acked == 0 {
				t.Error("no publish was acknowledged")
			}
			if res.Summary.PeakRate == 10 {
				t.Errorf("the warm-up counts in the summary: %+v", res.Summary)
			}
			if len(res.Notes) != 0 || len(res.Warnings) != 0 {
				t.Errorf("notes %v warnings %v, want none", res.Notes, res.Warnings)
			}
		})
	}
}

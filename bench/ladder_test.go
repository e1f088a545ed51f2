package bench

import (
	"testing"
	"time"
)

func TestStepPlans(t *testing.T) {
	t.Parallel()
	cfg := Config{Ladder: []float64{25, 100}, Duration: 6 * time.Second, Warmup: 3 * time.Second, WarmupRate: 10}
	got := stepPlans(cfg)
	want := []stepPlan{{rate: 10, d: 3 * time.Second, warmup: true}, {rate: 25, d: 6 * time.Second}, {rate: 100, d: 6 * time.Second}}
	if len(got) != len(want) {
		t.Fatalf("stepPlans = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if n := stepSlots(cfg); n != 3 {
		t.Errorf("stepSlots = %d, want 3", n)
	}
	cfg.Saturate = true
	if n := stepSlots(cfg); n != 3+MaxClimbSteps {
		t.Errorf("stepSlots with Saturate = %d, want %d", n, 3+MaxClimbSteps)
	}
	cfg.Warmup = 0
	if got := stepPlans(cfg); len(got) != 2 || got[0].warmup {
		t.Errorf("stepPlans without warm-up = %+v, want the two ladder steps", got)
	}
}

func TestNextClimb(t *testing.T) {
	t.Parallel()
	step := func(rate, delivered float64, due, skipped int64) StepResult {
		return StepResult{Rate: rate, DeliveredPerSec: delivered, Due: due, Missed: skipped}
	}
	warm := StepResult{Rate: 10, DeliveredPerSec: 1e9, Warmup: true} // never the best
	tests := []struct {
		name     string
		saturate bool
		steps    []StepResult
		climbed  int
		want     float64 // 0: no further step
	}{
		{name: "Off", saturate: false, steps: []StepResult{step(100, 1000, 600, 0)}},
		{name: "StillGrowing", saturate: true, steps: []StepResult{warm, step(100, 1000, 600, 0), step(200, 2000, 1200, 0)}, want: 400},
		{name: "FirstStepClimbs", saturate: true, steps: []StepResult{warm, step(100, 1000, 600, 0)}, want: 200},
		{name: "DeliveriesStopGrowing", saturate: true, steps: []StepResult{step(100, 1000, 600, 0), step(200, 1040, 1200, 0)}},
		{name: "DeliveriesFall", saturate: true, steps: []StepResult{step(100, 1000, 600, 0), step(200, 900, 1200, 0)}},
		{name: "PublishesSkipped", saturate: true, steps: []StepResult{step(100, 1000, 600, 0), step(200, 2000, 1200, 13)}},
		{name: "FewSkipsTolerated", saturate: true, steps: []StepResult{step(100, 1000, 600, 0), step(200, 2000, 1200, 12)}, want: 400},
		{name: "AfterWarmupOnly", saturate: true, steps: []StepResult{warm}},
		{name: "ClimbIsBounded", saturate: true, steps: []StepResult{step(100, 1000, 600, 0), step(200, 2000, 1200, 0)}, climbed: MaxClimbSteps},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Saturate: tt.saturate, Duration: 6 * time.Second}
			next, ok := nextClimb(cfg, tt.steps, tt.climbed)
			switch {
			case tt.want == 0 && ok:
				t.Errorf("nextClimb = %+v, want no further step", next)
			case tt.want != 0 && !ok:
				t.Errorf("nextClimb: no further step, want %v msg/s", tt.want)
			case ok && (next.rate != tt.want || next.d != cfg.Duration || next.warmup):
				t.Errorf("nextClimb = %+v, want %v msg/s for %v", next, tt.want, cfg.Duration)
			}
		})
	}
}

func TestOverloaded(t *testing.T) {
	t.Parallel()
	slow := StepResult{Latency: Latency{P99: 6000}}
	lossy := StepResult{Expected: 100, Received: 70, Lost: 30, Latency: Latency{P99: 10}}
	if !overloaded(slow, false) || !overloaded(slow, true) {
		t.Error("a step with p99 over 5 s is not overloaded")
	}
	if !overloaded(lossy, false) {
		t.Error("a drained step that lost 30 % is not overloaded")
	}
	if overloaded(lossy, true) {
		t.Error("a continuous step's deliveries still in flight count as lost")
	}
}

func TestSummarizeSteps_SkipsWarmupAndFindsSkips(t *testing.T) {
	t.Parallel()
	steps := []StepResult{
		{Rate: 10, Warmup: true, Expected: 10, Received: 10, DeliveredPerSec: 1e9, AcceptedPerSec: 1e6, PerCoreSecond: 1e9},
		{Rate: 25, Expected: 250, Received: 250, DeliveredPerSec: 50, AcceptedPerSec: 25, Latency: Latency{P99: 40}, PerCoreSecond: 900, PerCoreSecondWithBroker: 700},
		{Rate: 400, Due: 2400, Missed: 900, Expected: 3000, Received: 3000, DeliveredPerSec: 500, AcceptedPerSec: 250, Latency: Latency{P99: 40}},
		{Rate: 800, Due: 4800, Missed: 3300, Expected: 3000, Received: 3000, DeliveredPerSec: 480, AcceptedPerSec: 240, Latency: Latency{P99: 40}},
	}
	s := summarizeSteps(steps)
	if s.PeakDeliveredPerSec != 500 || s.PeakRate != 400 {
		t.Errorf("peak = %v at %v, want 500 at 400 (the warm-up left out)", s.PeakDeliveredPerSec, s.PeakRate)
	}
	if s.PeakPerCoreSecond != 900 || s.PeakPerCoreSecondWithBroker != 700 {
		t.Errorf("per core-second peaks = %v, %v; want 900, 700", s.PeakPerCoreSecond, s.PeakPerCoreSecondWithBroker)
	}
	if s.PeakAcceptedPerSec != 250 || s.FirstSkipRate != 400 {
		t.Errorf("accepted %v/s, first skip at %v; want 250 and 400", s.PeakAcceptedPerSec, s.FirstSkipRate)
	}
	if s.CleanRate != 25 {
		t.Errorf("CleanRate = %v, want 25 (skipping steps are not clean)", s.CleanRate)
	}
}

package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Overload bounds: after a step this bad the ladder stops (unless
// FullLadder), because its backlog would spill into the next step.
const (
	overloadP99  = 5 * time.Second
	overloadLoss = 0.2
)

// Saturation bounds of Config.Saturate: a step that delivers less than
// saturationGain times the best step before it, or skips more than
// saturationSkip of its publishes, has saturated the machine.
const (
	saturationGain = 1.05
	saturationSkip = 0.01
)

// stepPlan is one step of a run: its publish rate, its length, and whether
// it is the warm-up.
type stepPlan struct {
	rate   float64
	d      time.Duration
	warmup bool
}

// stepPlans returns the steps cfg asks for before any saturation climb:
// the warm-up, if any, then the ladder.
func stepPlans(cfg Config) []stepPlan {
	var plans []stepPlan
	if cfg.Warmup > 0 {
		plans = append(plans, stepPlan{rate: cfg.WarmupRate, d: cfg.Warmup, warmup: true})
	}
	for _, rate := range cfg.Ladder {
		plans = append(plans, stepPlan{rate: rate, d: cfg.Duration})
	}
	return plans
}

// stepSlots is how many steps a run may have: the planned ones and the
// saturation climb. Workers keep counters for each.
func stepSlots(cfg Config) int {
	n := len(stepPlans(cfg))
	if cfg.Saturate {
		n += MaxClimbSteps
	}
	return n
}

// nextClimb returns the step that Config.Saturate adds after steps, or
// false when the last step saturated the machine (or the climb is over).
// climbed is how many steps the climb has added so far.
func nextClimb(cfg Config, steps []StepResult, climbed int) (stepPlan, bool) {
	if !cfg.Saturate || climbed >= MaxClimbSteps || len(steps) == 0 {
		return stepPlan{}, false
	}
	last := steps[len(steps)-1]
	if last.Warmup || saturated(steps) {
		return stepPlan{}, false
	}
	return stepPlan{rate: last.Rate * 2, d: cfg.Duration}, true
}

// saturated reports whether the last of steps saturated the machine: it
// skipped more than saturationSkip of its publishes, or delivered less
// than saturationGain times the best earlier step (warm-up excluded).
func saturated(steps []StepResult) bool {
	last := steps[len(steps)-1]
	if last.Due > 0 && float64(last.Missed) > saturationSkip*float64(last.Due) {
		return true
	}
	best := 0.0
	for _, st := range steps[:len(steps)-1] {
		if !st.Warmup {
			best = max(best, st.DeliveredPerSec)
		}
	}
	return best > 0 && last.DeliveredPerSec < saturationGain*best
}

// ladder runs fanout and rooms: connect, then one step per rate.
func (r *runner) ladder(ctx context.Context) error {
	if r.cfg.Publish == PublishAPI {
		// Started first, so that its workers are idle when the first step
		// begins.
		r.api = newAPIPublisher(r.cfg, stepSlots(r.cfg))
	}
	if err := r.connect(ctx); err != nil {
		return err
	}
	plans := stepPlans(r.cfg)
	var (
		badPIDs []int
		windows []stepWindow
		climbed int
	)
	for k := 0; k < len(plans); k++ {
		win, bad, err := r.runStep(ctx, k, plans[k])
		if len(bad) > 0 && badPIDs == nil {
			badPIDs = bad
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("cannot read CPU time of processes %v", bad))
		}
		if err != nil {
			return err
		}
		windows = append(windows, win)
		st, err := r.collect(ctx, k, plans[k], win, !r.cfg.Continuous)
		if err != nil {
			return err
		}
		r.res.Steps = append(r.res.Steps, st)
		r.res.Summary = summarizeSteps(r.res.Steps)
		if k == len(plans)-1 {
			if next, ok := nextClimb(r.cfg, r.res.Steps, climbed); ok {
				plans = append(plans, next)
				climbed++
			}
		}
		if !r.cfg.FullLadder && k < len(plans)-1 && overloaded(st, r.cfg.Continuous) {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("ladder stopped after %s msg/s: overloaded (p99 %s ms, %d of %d deliveries lost)",
				num(st.Rate), ms(st.Latency.P99), st.Lost, st.Expected))
			break
		}
	}
	if !r.cfg.Continuous {
		return nil
	}
	// Back to back: loss and latency are known only after one drain.
	r.setPhase("final drain")
	if _, _, err := r.drain(ctx); err != nil {
		return err
	}
	for k, win := range windows {
		st, err := r.collect(ctx, k, plans[k], win, true)
		if err != nil {
			return err
		}
		r.res.Steps[k] = st
	}
	r.res.Summary = summarizeSteps(r.res.Steps)
	return nil
}

// overloaded reports whether st was so bad that the next step would only
// measure its backlog. Back to back, loss is not known yet: p99 decides.
func overloaded(st StepResult, continuous bool) bool {
	if st.Latency.P99 > float64(overloadP99.Milliseconds()) {
		return true
	}
	return !continuous && st.Expected > 0 && float64(st.Lost) > overloadLoss*float64(st.Expected)
}

// stepWindow is what was measured over a step's wall-clock window: its
// length, the CPU time of servers, broker, generator and machine, and the
// deliveries that arrived in it, from any step.
type stepWindow struct {
	elapsed    float64
	late       bool // deliveries still arrived after the first drain wait
	drained    time.Duration
	srv        float64
	broker     float64
	gen        float64
	machine    float64 // busy cores
	arrived    int64
	hasMachine bool
}

// runStep runs step k of plan p: publishes at its rate for its length and,
// unless the run is continuous, waits for the drain. It measures the
// step's window.
func (r *runner) runStep(ctx context.Context, k int, p stepPlan) (stepWindow, []int, error) {
	label := fmt.Sprintf("step %d %s msg/s", k+1, num(p.rate))
	if p.warmup {
		label = "warm-up " + num(p.rate) + " msg/s"
	}
	r.setPhase("%s", label)
	srv0, bad := cpuSum(r.cfg.ServerPIDs)
	brk0, badB := cpuSum(r.cfg.BrokerPIDs)
	bad = append(bad, badB...)
	gen0, _ := cpuSum(r.benchPIDs())
	busy0, total0, _ := machineCPU()
	arrived0, err := r.totals(ctx)
	if err != nil {
		return stepWindow{}, bad, err
	}
	start := time.Now()

	var wg sync.WaitGroup
	var stepErr error
	if r.api != nil {
		wg.Go(func() { r.paceAPI(ctx, k, p.rate, p.d) })
	} else {
		totalPubs := 0
		for _, n := range r.plan.pubsPerWorker {
			totalPubs += n
		}
		wg.Go(func() {
			_, stepErr = r.all(ctx, func(i int) (request, bool) {
				n := r.plan.pubsPerWorker[i]
				if n == 0 {
					return request{}, false
				}
				share := p.rate * float64(n) / float64(totalPubs)
				return request{Op: "step", Step: k, Rate: share, Seconds: p.d.Seconds()}, true
			})
		})
	}
	wg.Wait()
	if stepErr != nil {
		return stepWindow{}, bad, fmt.Errorf("bench: step %d: %w", k+1, stepErr)
	}
	var win stepWindow
	if !r.cfg.Continuous {
		r.setPhase("%s: drain", label)
		if win.drained, win.late, err = r.drain(ctx); err != nil {
			return stepWindow{}, bad, err
		}
	}
	win.elapsed = time.Since(start).Seconds()
	arrived1, err := r.totals(ctx)
	if err != nil {
		return stepWindow{}, bad, err
	}
	srv1, _ := cpuSum(r.cfg.ServerPIDs)
	brk1, _ := cpuSum(r.cfg.BrokerPIDs)
	gen1, _ := cpuSum(r.benchPIDs())
	busy1, total1, _ := machineCPU()
	win.srv, win.broker, win.gen = srv1-srv0, brk1-brk0, gen1-gen0
	win.arrived = arrived1 - arrived0
	if total1 > total0 {
		win.hasMachine = true
		win.machine = float64(numCPU()) * (busy1 - busy0) / (total1 - total0)
	}
	return win, bad, nil
}

// collect gathers the counts of step k from the workers and the API
// publisher and combines them with the step's window. final says that the
// step's messages are no longer in flight: a delivery may arrive before
// its publish's answer, so only then are more deliveries than expected a
// problem worth a warning.
func (r *runner) collect(ctx context.Context, k int, p stepPlan, win stepWindow, final bool) (StepResult, error) {
	replies, err := r.all(ctx, func(int) (request, bool) { return request{Op: "stats", Step: k}, true })
	if err != nil {
		return StepResult{}, fmt.Errorf("bench: stats of step %d: %w", k+1, err)
	}
	st := StepResult{Rate: p.rate, Warmup: p.warmup, Seconds: p.d.Seconds()}
	hist := newHDR()
	var sum workerStats
	for _, rep := range replies {
		if rep.Stats == nil {
			continue
		}
		addStats(&sum, *rep.Stats)
		h, err := decodeHist(rep.Stats.Hist)
		if err != nil {
			return StepResult{}, err
		}
		hist.Merge(h)
	}
	r.res.Notes = nil // the workers' notes are running totals: keep the latest
	for _, rep := range replies {
		if rep.Stats != nil {
			r.addNotes(rep.Stats.Notes)
		}
	}
	if r.api != nil {
		addStats(&sum, r.api.stats(k))
		pl := summarize(r.api.steps[k].lat.merged())
		st.PublishLatency = &pl
		r.api.nmu.Lock()
		r.addNotes(r.api.notes)
		r.api.nmu.Unlock()
	}
	st.Due, st.Sent, st.Missed = sum.Due, sum.Sent, sum.Missed
	st.Acked, st.PubErrors = sum.Acked, sum.PubErrors
	st.Expected, st.Received, st.Dups = sum.Expected, sum.Received, sum.Dups
	st.Lost = max(st.Expected-st.Received, 0)
	st.AcceptedPerSec = float64(st.Acked) / p.d.Seconds()
	if r.cfg.Continuous {
		// Whatever arrived during the step's window, from any step: what a
		// user's generator counts per second of wall time.
		st.DeliveredPerSec = float64(win.arrived) / win.elapsed
	} else {
		// The step's own deliveries over the time they took: the step, or,
		// when they went on arriving after the first drain wait, until the
		// last look that still saw them arrive.
		window := p.d.Seconds()
		if win.late {
			window = max(window, win.elapsed-drainPoll.Seconds())
		}
		st.DeliveredPerSec = float64(st.Received) / window
	}
	st.Latency = summarize(hist)
	// Deliveries per core-second: those of the window, over the CPU time
	// spent in it.
	delivered := float64(st.Received)
	if r.cfg.Continuous {
		delivered = float64(win.arrived)
	}
	if len(r.cfg.ServerPIDs) > 0 {
		st.ServerCPU = win.srv
		st.ServerCores = win.srv / win.elapsed
		if win.srv > 0 {
			st.PerCoreSecond = delivered / win.srv
		}
	}
	if len(r.cfg.BrokerPIDs) > 0 {
		st.BrokerCPU = win.broker
		st.BrokerCores = win.broker / win.elapsed
		if win.srv+win.broker > 0 {
			st.PerCoreSecondWithBroker = delivered / (win.srv + win.broker)
		}
	}
	st.BenchCores = win.gen / win.elapsed
	if win.hasMachine {
		st.MachineCores = win.machine
	}
	st.DrainSeconds = win.drained.Seconds()
	if final && sum.Received > st.Expected && st.Expected > 0 {
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("step %d: %d more deliveries than expected", k+1, sum.Received-st.Expected))
	}
	return st, nil
}

func addStats(dst *workerStats, s workerStats) {
	dst.Received += s.Received
	dst.Dups += s.Dups
	dst.Self += s.Self
	dst.Due += s.Due
	dst.Sent += s.Sent
	dst.Missed += s.Missed
	dst.Acked += s.Acked
	dst.PubErrors += s.PubErrors
	dst.Expected += s.Expected
}

// paceAPI publishes step k through the HTTP API at rate over all rooms for
// d: message n goes to room n mod R, through instance n mod len(APIs).
func (r *runner) paceAPI(ctx context.Context, k int, rate float64, d time.Duration) {
	// Sequence numbers run on across steps: receivers find duplicates per
	// source over the whole run.
	if r.apiSeqs == nil {
		r.apiSeqs = make([]int64, len(r.plan.rooms))
	}
	seqs := r.apiSeqs
	ps := Pace(ctx, rate, d, func(n int64) bool {
		ri := int(n % int64(len(r.plan.rooms)))
		job := apiJob{
			step: k, room: r.plan.rooms[ri], roomIdx: ri, seq: seqs[ri],
			base: r.cfg.APIs[int(n%int64(len(r.cfg.APIs)))], receivers: r.plan.members[ri],
		}
		if !r.api.offer(job) {
			return false
		}
		seqs[ri]++
		return true
	})
	st := r.api.steps[k]
	st.due.Add(ps.Due)
	st.sent.Add(ps.Sent)
	st.missed.Add(ps.Missed)
}

// drainPoll is how often the drain looks for deliveries still arriving:
// longer than a child's progress interval, so that each look sees news.
const drainPoll = 1200 * time.Millisecond

// drain waits Drain, then as long as deliveries keep arriving, up to
// MaxDrain: a message still on its way is late, not lost. It returns how
// long it waited, and whether deliveries still arrived after Drain.
func (r *runner) drain(ctx context.Context) (waited time.Duration, late bool, err error) {
	start := time.Now()
	if err := sleep(ctx, r.cfg.Drain); err != nil {
		return 0, false, err
	}
	last := r.totalReceived()
	for time.Since(start) < r.cfg.MaxDrain {
		if err := sleep(ctx, drainPoll); err != nil {
			return 0, false, err
		}
		now := r.totalReceived()
		if now == last {
			break
		}
		last, late = now, true
	}
	return time.Since(start), late, nil
}

// totalReceived sums the workers' deliveries so far, as of their latest
// progress reports.
func (r *runner) totalReceived() int64 {
	var n int64
	for _, w := range r.workers {
		n += w.progress().Received
	}
	return n
}

// totals asks every worker for its deliveries so far, now (not as of its
// latest progress report), and sums them.
func (r *runner) totals(ctx context.Context) (int64, error) {
	replies, err := r.all(ctx, func(int) (request, bool) { return request{Op: "progress"}, true })
	if err != nil {
		return 0, fmt.Errorf("bench: progress: %w", err)
	}
	var n int64
	for _, rep := range replies {
		if rep.Progress != nil {
			n += rep.Progress.Received
		}
	}
	return n, nil
}

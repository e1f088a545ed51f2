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

// ladder runs fanout and rooms: connect, then one step per rate.
func (r *runner) ladder(ctx context.Context) error {
	if err := r.connect(ctx); err != nil {
		return err
	}
	if r.cfg.Publish == PublishAPI {
		r.api = newAPIPublisher(r.cfg.Target, r.cfg.APIKey, r.cfg.PayloadBytes, len(r.cfg.Ladder))
	}
	var badPIDs []int
	for k, rate := range r.cfg.Ladder {
		st, bad, err := r.step(ctx, k, rate)
		if len(bad) > 0 && badPIDs == nil {
			badPIDs = bad
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("cannot read CPU time of processes %v", bad))
		}
		if err != nil {
			return err
		}
		r.res.Steps = append(r.res.Steps, st)
		r.res.Summary = summarizeSteps(r.res.Steps)
		if !r.cfg.FullLadder && k < len(r.cfg.Ladder)-1 && overloaded(st) {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("ladder stopped after %s msg/s: overloaded (p99 %s ms, %d of %d deliveries lost)",
				num(rate), ms(st.Latency.P99), st.Lost, st.Expected))
			break
		}
	}
	return nil
}

func overloaded(st StepResult) bool {
	if st.Latency.P99 > float64(overloadP99.Milliseconds()) {
		return true
	}
	return st.Expected > 0 && float64(st.Lost) > overloadLoss*float64(st.Expected)
}

// step runs ladder step k at rate, waits for the drain and gathers counts.
func (r *runner) step(ctx context.Context, k int, rate float64) (StepResult, []int, error) {
	r.setPhase("step %d/%d %s msg/s", k+1, len(r.cfg.Ladder), num(rate))
	srv0, bad := cpuSum(r.cfg.ServerPIDs)
	gen0, _ := cpuSum(r.benchPIDs())
	busy0, total0, _ := machineCPU()
	start := time.Now()

	var wg sync.WaitGroup
	var stepErr error
	if r.api != nil {
		wg.Go(func() { r.paceAPI(ctx, k, rate) })
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
				share := rate * float64(n) / float64(totalPubs)
				return request{Op: "step", Step: k, Rate: share, Seconds: r.cfg.Duration.Seconds()}, true
			})
		})
	}
	wg.Wait()
	if stepErr != nil {
		return StepResult{}, bad, fmt.Errorf("bench: step %d: %w", k+1, stepErr)
	}
	r.setPhase("step %d/%d drain", k+1, len(r.cfg.Ladder))
	drained, late, err := r.drain(ctx)
	if err != nil {
		return StepResult{}, bad, err
	}
	elapsed := time.Since(start).Seconds()
	srv1, _ := cpuSum(r.cfg.ServerPIDs)
	gen1, _ := cpuSum(r.benchPIDs())
	busy1, total1, _ := machineCPU()

	replies, err := r.all(ctx, func(int) (request, bool) { return request{Op: "stats", Step: k}, true })
	if err != nil {
		return StepResult{}, bad, fmt.Errorf("bench: stats of step %d: %w", k+1, err)
	}
	st := StepResult{Rate: rate}
	hist := newHDR()
	var sum workerStats
	for _, rep := range replies {
		if rep.Stats == nil {
			continue
		}
		addStats(&sum, *rep.Stats)
		h, err := decodeHist(rep.Stats.Hist)
		if err != nil {
			return StepResult{}, bad, err
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
		r.api.nmu.Lock()
		r.addNotes(r.api.notes)
		r.api.nmu.Unlock()
	}
	st.Due, st.Sent, st.Missed = sum.Due, sum.Sent, sum.Missed
	st.Acked, st.PubErrors = sum.Acked, sum.PubErrors
	st.Expected, st.Received, st.Dups = sum.Expected, sum.Received, sum.Dups
	st.Lost = max(st.Expected-st.Received, 0)
	// Deliveries per second over the time they took: the step, or, when
	// they went on arriving after the first drain wait, until the last
	// look that still saw them arrive.
	window := r.cfg.Duration.Seconds()
	if late {
		window = max(window, elapsed-drainPoll.Seconds())
	}
	st.DeliveredPerSec = float64(st.Received) / window
	st.Latency = summarize(hist)
	if len(r.cfg.ServerPIDs) > 0 {
		st.ServerCPU = srv1 - srv0
		st.ServerCores = st.ServerCPU / elapsed
		if st.ServerCPU > 0 {
			st.PerCoreSecond = float64(st.Received) / st.ServerCPU
		}
	}
	st.BenchCores = (gen1 - gen0) / elapsed
	if total1 > total0 {
		st.MachineCores = float64(numCPU()) * (busy1 - busy0) / (total1 - total0)
	}
	st.DrainSeconds = drained.Seconds()
	if sum.Received > st.Expected && st.Expected > 0 {
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("step %d: %d more deliveries than expected", k+1, sum.Received-st.Expected))
	}
	return st, bad, nil
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

// paceAPI publishes step k through the HTTP API at rate over all rooms:
// message n goes to room n mod R, through instance n mod len(APIs).
func (r *runner) paceAPI(ctx context.Context, k int, rate float64) {
	// Sequence numbers run on across steps: receivers find duplicates per
	// source over the whole run.
	if r.apiSeqs == nil {
		r.apiSeqs = make([]int64, len(r.plan.rooms))
	}
	seqs := r.apiSeqs
	ps := Pace(ctx, rate, r.cfg.Duration, func(n int64) bool {
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

// totalReceived sums the workers' deliveries so far.
func (r *runner) totalReceived() int64 {
	var n int64
	for _, w := range r.workers {
		n += w.progress().Received
	}
	return n
}

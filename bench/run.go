package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Run runs the benchmark that cfg describes: it opens the connections (in
// this process or in cfg.Procs children), runs the workload, prints a
// progress line every second to progress (nil: none) and returns what it
// measured. It ends every connection and child before it returns, also when
// ctx is cancelled, in which case the result holds the steps that finished.
func Run(ctx context.Context, cfg Config, progressOut io.Writer) (*Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	raiseFileLimit()
	runID := newRunID()
	pl := makePlan(cfg, runID)
	res := &Result{
		Workload: cfg.Workload, Target: cfg.Target, Label: cfg.Label, Started: time.Now().UTC().Truncate(time.Second),
		URLs: cfg.URLs, Conns: cfg.Conns, Procs: cfg.Procs, Receiver: cfg.Receiver,
	}
	if cfg.Workload != Idle {
		res.Rooms, res.Members, res.Publish, res.Payload = cfg.Rooms, cfg.Members, cfg.Publish, cfg.PayloadBytes
		res.StepSeconds = cfg.Duration.Seconds()
		res.Continuous = cfg.Continuous
		if cfg.Publish == PublishAPI {
			res.APIWorkers = cfg.APIWorkers
		}
	}

	r := &runner{cfg: cfg, plan: pl, res: res}
	if err := r.startWorkers(); err != nil {
		r.stopWorkers()
		return nil, err
	}
	defer r.stopWorkers()
	if progressOut != nil && !cfg.Quiet {
		stop := r.startProgress(progressOut)
		defer stop()
	}

	switch cfg.Workload {
	case Idle:
		err = r.idle(ctx)
	default:
		err = r.ladder(ctx)
	}
	r.closeWorkers()
	if errors.Is(err, context.Canceled) && len(res.Steps)+len(res.Memory) > 0 {
		res.Warnings = append(res.Warnings, "interrupted: partial results")
		err = nil
	}
	return res, err
}

// newRunID names a run, so that its rooms and users are fresh.
func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runner holds one run's workers and state.
type runner struct {
	cfg     Config
	plan    plan
	res     *Result
	workers []workerClient
	api     *apiPublisher
	apiSeqs []int64 // next sequence number of each room's API publishes
	phase   atomic.Pointer[string]
}

func (r *runner) setPhase(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.phase.Store(&s)
}

func (r *runner) setup() *workerSetup {
	return &workerSetup{
		Target: r.cfg.Target, Token: r.cfg.Token, JWTSecret: r.cfg.JWTSecret, TokenTTL: r.cfg.TokenTTL,
		Batch: r.cfg.Batch, Receiver: r.cfg.Receiver, PayloadBytes: r.cfg.PayloadBytes, Steps: stepSlots(r.cfg),
		DialTimeout: r.cfg.DialTimeout, Concurrency: r.cfg.Concurrency, SrcIPs: r.cfg.SrcIPs,
	}
}

func (r *runner) startWorkers() error {
	if r.cfg.Procs == 1 {
		r.workers = []workerClient{&localWorker{}}
		return nil
	}
	for range r.cfg.Procs {
		cw, err := startChild(r.cfg.ChildCommand, r.cfg.ChildEnv, os.Stderr)
		if err != nil {
			return fmt.Errorf("bench: procs: %w", err)
		}
		r.workers = append(r.workers, cw)
	}
	return nil
}

// all calls every worker concurrently with the request mk builds for it.
func (r *runner) all(ctx context.Context, mk func(i int) (request, bool)) ([]reply, error) {
	replies := make([]reply, len(r.workers))
	errs := make([]error, len(r.workers))
	var wg sync.WaitGroup
	for i, w := range r.workers {
		req, ok := mk(i)
		if !ok {
			continue
		}
		wg.Go(func() { replies[i], errs[i] = w.call(ctx, req) })
	}
	wg.Wait()
	return replies, errors.Join(errs...)
}

// closeWorkers asks every worker to close its connections, in bounded time.
func (r *runner) closeWorkers() {
	r.setPhase("closing")
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout+2*time.Second)
	defer cancel()
	if _, err := r.all(ctx, func(int) (request, bool) { return request{Op: "close"}, true }); err != nil {
		r.res.Warnings = append(r.res.Warnings, "close: "+err.Error())
	}
	if r.api != nil {
		r.api.close()
	}
}

func (r *runner) stopWorkers() {
	for _, w := range r.workers {
		w.stop()
	}
}

// connect opens every planned connection.
func (r *runner) connect(ctx context.Context) error {
	r.setPhase("connecting")
	start := time.Now()
	setup := r.setup()
	replies, err := r.all(ctx, func(i int) (request, bool) {
		return request{Op: "connect", Setup: setup, Conns: r.plan.perWorker[i]}, true
	})
	c := &r.res.Connect
	c.Seconds = time.Since(start).Seconds()
	for _, rep := range replies {
		if rep.Connect == nil {
			continue
		}
		c.Opened += rep.Connect.Opened
		c.Failed += rep.Connect.Failed
		for _, e := range rep.Connect.Errors {
			if len(c.Errors) < 5 {
				c.Errors = append(c.Errors, e)
			}
		}
	}
	if c.Seconds > 0 {
		c.PerSecond = float64(c.Opened) / c.Seconds
	}
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	if c.Opened == 0 {
		return fmt.Errorf("bench: no connection could be opened: %v", c.Errors)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// benchPIDs are the load generator's processes.
func (r *runner) benchPIDs() []int {
	pids := []int{os.Getpid()}
	for _, w := range r.workers {
		if p := w.pid(); p != os.Getpid() {
			pids = append(pids, p)
		}
	}
	return pids
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startProgress prints a line every second to w until the returned func
// is called.
func (r *runner) startProgress(w io.Writer) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last progress
		lastAt := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				var p progress
				for _, wk := range r.workers {
					p.add(wk.progress())
				}
				if r.api != nil {
					p.Sent += r.api.sent.Load()
					p.Acked += r.api.acked.Load()
					p.Errors += r.api.errors.Load()
				}
				dt := now.Sub(lastAt).Seconds()
				phase := ""
				if ph := r.phase.Load(); ph != nil {
					phase = *ph
				}
				fmt.Fprintf(w, "[%s %s] open %d failed %d | sent %d (%s/s) acked %d errors %d | received %d (%s/s) | drops %d\n",
					r.cfg.Workload, phase, p.Open, p.Failed, p.Sent, num(float64(p.Sent-last.Sent)/dt),
					p.Acked, p.Errors, p.Received, num(float64(p.Received-last.Received)/dt), p.Drops)
				last, lastAt = p, now
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

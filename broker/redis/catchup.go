package redis

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// catchUpJob asks for a room's position and the history after a position:
// the messages a room missed.
type catchUpJob struct {
	r     *roomState // identifies the room; only the dispatcher reads it
	seq   uint64     // which of the room's catch-ups this is
	room  string
	after broker.Position
}

// catchUpBatch bounds the rooms read in one pipeline.
const catchUpBatch = 256

// A failed read is tried again after catchUpRetry, then after twice as
// long each time up to catchUpMaxRetry, until catchUpPatience has passed
// since the first attempt; only then is the dispatcher told. The patience
// outlasts a failover: the live messages of a shard whose replica was just
// promoted can arrive over a subscription that already found the new
// master while reads are still routed to the old one for a moment, and
// giving up then would cost every session a Reset (and the messages
// history still holds) for what Redis would have answered a second later.
const (
	catchUpRetry    = 100 * time.Millisecond
	catchUpMaxRetry = time.Second
	catchUpPatience = 5 * time.Second
)

// catcher reads the missed messages of a shard's rooms, off the dispatch
// path: one goroutine per shard takes the rooms queued for it, reads them
// in pipelined batches, retries failed reads, and hands each answer to the
// dispatcher through its queue. A slow read (a huge history, a server that
// answers slowly) holds up the catch-ups of its own shard only; live
// messages of every room keep flowing meanwhile.
type catcher struct {
	b    *Broker
	s    *shard
	mu   sync.Mutex // a leaf lock
	jobs []catchUpJob
	wake chan struct{} // cap 1
	quit chan struct{}
	done chan struct{}
}

func newCatcher(b *Broker, s *shard) *catcher {
	return &catcher{b: b, s: s, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
}

// add queues j; it never blocks.
func (c *catcher) add(j catchUpJob) {
	c.mu.Lock()
	c.jobs = append(c.jobs, j)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// stop ends run and waits for it; the jobs left are dropped (the
// dispatcher hands their rooms to another shard).
func (c *catcher) stop() {
	close(c.quit)
	<-c.done
}

func (c *catcher) run(ctx context.Context) {
	defer close(c.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.quit:
			return
		case <-c.wake:
		}
		for {
			c.mu.Lock()
			n := min(len(c.jobs), catchUpBatch)
			batch := append([]catchUpJob(nil), c.jobs[:n]...)
			c.jobs = append(c.jobs[:0], c.jobs[n:]...)
			c.mu.Unlock()
			if n == 0 {
				break
			}
			if !c.read(ctx, batch) {
				return
			}
		}
	}
}

// read reads a batch, retrying the rooms whose read failed, and hands the
// answers to the dispatcher. It reports false if the catcher must stop.
func (c *catcher) read(ctx context.Context, jobs []catchUpJob) bool {
	wait := catchUpRetry
	giveUp := time.Now().Add(catchUpPatience)
	for {
		hs, errs := c.b.histories(ctx, jobs)
		last := time.Now().Add(wait).After(giveUp)
		var failed []catchUpJob
		for i, j := range jobs {
			if errs[i] != nil && !last {
				failed = append(failed, j)
				continue
			}
			h, err := hs[i], errs[i]
			c.b.do(func(d *dispatcher) { d.caughtUp(j, h, err) })
		}
		if len(failed) == 0 {
			return true
		}
		jobs = failed
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-c.quit:
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, catchUpMaxRetry)
	}
}

// histories reads, in one pipeline, each job's room position and the
// history after its position.
func (b *Broker) histories(ctx context.Context, jobs []catchUpJob) ([]broker.History, []error) {
	execs := make([]rueidis.LuaExec, len(jobs))
	for i, j := range jobs {
		execs[i] = rueidis.LuaExec{
			Keys: b.historyKeys(j.room),
			Args: b.historyArgs(j.after.Epoch, broker.HistoryQuery{After: j.after.Offset}),
		}
	}
	rctx, cancel := b.timeout(ctx)
	defer cancel()
	var res []rueidis.RedisResult
	if len(jobs) == 1 {
		res = []rueidis.RedisResult{historyScript.Exec(rctx, b.client, execs[0].Keys, execs[0].Args)}
	} else {
		res = historyScript.ExecMulti(rctx, b.client, execs...)
	}
	hs := make([]broker.History, len(jobs))
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		h, err := decodeHistory(j.room, res[i])
		if err != nil {
			errs[i] = b.fail("catch up "+strconv.Quote(j.room), rctx, err)
			continue
		}
		hs[i] = h
	}
	return hs, errs
}

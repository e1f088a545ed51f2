package admission

import (
	"errors"
	"math"
	"sync"
	"time"
)

// Kind says whether a session resumes (hello.session or hello.resume) or
// starts cold.
type Kind int

// Kinds of sessions.
const (
	Cold Kind = iota
	Resume
)

// String returns "cold" or "resume", the metric label.
func (k Kind) String() string {
	if k == Resume {
		return "resume"
	}
	return "cold"
}

// Result is how a Gate answered.
type Result int

// Results of Gate.Enter and Waiter.Wait.
const (
	// Admitted: the session got a token.
	Admitted Result = iota
	// Full: the queue had no room (or a resuming hello took the place).
	Full
	// TimedOut: no token came within the wait bound.
	TimedOut
	// Cancelled: Cancel was called while it waited.
	Cancelled
	// waiting: not decided yet (Enter returned a Waiter).
	waiting
)

// String returns the result's metric label.
func (r Result) String() string {
	switch r {
	case Admitted:
		return "admitted"
	case Full:
		return "queue_full"
	case TimedOut:
		return "timeout"
	case Cancelled:
		return "cancelled"
	}
	return "waiting"
}

// GateConfig configures a Gate.
type GateConfig struct {
	// Rate is the tokens added per second. Required (positive).
	Rate float64
	// Burst is the bucket's size: how many sessions pass at once after a
	// quiet time. Required (at least 1).
	Burst int
	// Queue is the most hellos waiting at once, both kinds together.
	// Required (at least 1).
	Queue int
	// Wait bounds how long a hello waits for a token. Required (positive).
	Wait time.Duration
}

// Gate is a token bucket for new sessions that serves resuming sessions
// first (see the package comment). It is safe for concurrent use.
type Gate struct {
	cfg GateConfig

	mu     sync.Mutex
	tokens float64
	last   time.Time
	queues [2]fifo // by Kind
	timer  *time.Timer
	// timerAt is when the timer fires; zero when it is stopped.
	timerAt time.Time
}

// Waiter is a hello waiting in a Gate's queue.
type Waiter struct {
	kind     Kind
	deadline time.Time
	// result is set, under the Gate's lock, when decided; done is then
	// given it.
	result Result
	done   chan Result
}

// NewGate returns a Gate with a full bucket.
func NewGate(cfg GateConfig) (*Gate, error) {
	switch {
	case !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0):
		return nil, errors.New("admission: Gate rate must be positive")
	case cfg.Burst < 1:
		return nil, errors.New("admission: Gate burst must be at least 1")
	case cfg.Queue < 1:
		return nil, errors.New("admission: Gate queue must be at least 1")
	case cfg.Wait <= 0:
		return nil, errors.New("admission: Gate wait must be positive")
	}
	g := &Gate{cfg: cfg, tokens: float64(cfg.Burst), last: time.Now()}
	g.timer = time.AfterFunc(time.Hour, g.tick)
	g.timer.Stop()
	return g, nil
}

// Enter asks for a token for a session of kind. It returns Admitted or
// Full at once, or a Waiter whose Wait gives the answer.
func (g *Gate) Enter(kind Kind) (*Waiter, Result) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.refillLocked(now)
	g.dispatchLocked(now)
	if g.queues[Cold].len()+g.queues[Resume].len() == 0 && g.tokens >= 1 {
		g.tokens--
		return nil, Admitted
	}
	if g.queues[Cold].len()+g.queues[Resume].len() >= g.cfg.Queue {
		if kind == Cold || g.queues[Cold].len() == 0 {
			return nil, Full
		}
		g.decideLocked(g.queues[Cold].popBack(), Full)
	}
	w := &Waiter{kind: kind, deadline: now.Add(g.cfg.Wait), result: waiting, done: make(chan Result, 1)}
	g.queues[kind].push(w)
	g.scheduleLocked(now)
	return w, waiting
}

// Wait blocks until w is decided and returns Admitted, Full, TimedOut or
// Cancelled.
func (w *Waiter) Wait() Result { return <-w.done }

// Cancel withdraws w if it still waits (its Wait returns Cancelled); a
// decided w is left as it is. It may be called more than once.
func (g *Gate) Cancel(w *Waiter) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.result != waiting {
		return
	}
	g.decideLocked(w, Cancelled)
	g.queues[w.kind].cancelled()
}

// CancelAll withdraws every waiting hello (each Wait returns Cancelled),
// for a server that stops.
func (g *Gate) CancelAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.queues {
		q := &g.queues[k]
		for q.len() > 0 {
			g.decideLocked(q.popFront(), Cancelled)
		}
	}
}

// Waiting returns the number of hellos of kind waiting now.
func (g *Gate) Waiting(kind Kind) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.queues[kind].len()
}

func (g *Gate) tick() {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.timerAt = time.Time{}
	g.refillLocked(now)
	g.dispatchLocked(now)
	g.scheduleLocked(now)
}

func (g *Gate) refillLocked(now time.Time) {
	if d := now.Sub(g.last); d > 0 {
		g.tokens = min(float64(g.cfg.Burst), g.tokens+d.Seconds()*g.cfg.Rate)
	}
	g.last = now
}

// dispatchLocked gives the tokens there are to waiting hellos, resuming
// ones first, then refuses those whose wait is over.
func (g *Gate) dispatchLocked(now time.Time) {
	for g.tokens >= 1 {
		q := &g.queues[Resume]
		if q.len() == 0 {
			q = &g.queues[Cold]
		}
		if q.len() == 0 {
			break
		}
		g.tokens--
		g.decideLocked(q.popFront(), Admitted)
	}
	// Within a queue, deadlines grow from front to back.
	for k := range g.queues {
		q := &g.queues[k]
		for q.len() > 0 && !q.front().deadline.After(now) {
			g.decideLocked(q.popFront(), TimedOut)
		}
	}
}

// scheduleLocked sets the timer for the next event: the next token if a
// hello waits for one, or the oldest hello's deadline.
func (g *Gate) scheduleLocked(now time.Time) {
	var at time.Time
	for k := range g.queues {
		if q := &g.queues[k]; q.len() > 0 {
			if d := q.front().deadline; at.IsZero() || d.Before(at) {
				at = d
			}
		}
	}
	if at.IsZero() {
		return // nothing waits; a stale timer finds nothing to do
	}
	if g.tokens < 1 {
		next := now.Add(time.Duration((1 - g.tokens) / g.cfg.Rate * float64(time.Second)))
		if next.Before(at) {
			at = next
		}
	}
	if !g.timerAt.IsZero() && !g.timerAt.After(at) {
		return // the timer fires soon enough
	}
	g.timerAt = at
	g.timer.Reset(max(at.Sub(now), 0))
}

func (g *Gate) decideLocked(w *Waiter, r Result) {
	w.result = r
	w.done <- r
}

// fifo is a queue of waiters. A cancelled waiter stays in it, decided,
// until it reaches an end, so that Cancel costs O(1); live counts the
// undecided ones.
type fifo struct {
	items []*Waiter
	head  int
	live  int
}

func (q *fifo) len() int { return q.live }

func (q *fifo) push(w *Waiter) {
	q.items = append(q.items, w)
	q.live++
}

// trim drops decided waiters from both ends.
func (q *fifo) trim() {
	for q.head < len(q.items) && q.items[q.head].result != waiting {
		q.items[q.head] = nil
		q.head++
	}
	for n := len(q.items); n > q.head && q.items[n-1].result != waiting; n-- {
		q.items[n-1] = nil
		q.items = q.items[:n-1]
	}
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 64 && q.head*2 > len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
}

// front returns the oldest undecided waiter; q.len() must be positive.
func (q *fifo) front() *Waiter {
	q.trim()
	return q.items[q.head]
}

// popFront removes and returns the oldest undecided waiter, which the
// caller decides at once; q.len() must be positive.
func (q *fifo) popFront() *Waiter {
	q.trim()
	w := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	q.live--
	return w
}

// popBack removes and returns the newest undecided waiter, which the
// caller decides at once; q.len() must be positive.
func (q *fifo) popBack() *Waiter {
	q.trim()
	n := len(q.items)
	w := q.items[n-1]
	q.items[n-1] = nil
	q.items = q.items[:n-1]
	q.live--
	return w
}

// cancelled notes that an undecided waiter in q was decided in place.
func (q *fifo) cancelled() {
	q.live--
	q.trim()
}

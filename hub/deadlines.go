package hub

import (
	"container/heap"
	"slices"
	"sync"
	"time"
)

// deadlineKind is what a session's deadline ends.
type deadlineKind uint8

const (
	anyDeadline   deadlineKind = iota
	helloDeadline              // no hello in time
	tokenDeadline              // the token stopped being valid
)

// deadlines runs the sessions' deadlines, the hello timeout and then the
// token's expiry, earliest first on one timer for the whole hub. A
// time.Timer of its own would cost each connection about 140 bytes; an
// entry here costs 24. A session has at most one deadline at a time.
type deadlines struct {
	// fire is called, without the lock, for each deadline reached.
	fire func(s *Session, kind deadlineKind)
	// base is the zero of the entries' times: they are monotonic offsets
	// from it, so a change of the wall clock moves no deadline.
	base time.Time

	mu    sync.Mutex
	queue deadlineQueue
	timer *time.Timer // runs expire at the earliest deadline; nil until the first
}

type deadline struct {
	at   time.Duration // since base
	s    *Session
	kind deadlineKind
}

func newDeadlines(fire func(s *Session, kind deadlineKind)) *deadlines {
	return &deadlines{fire: fire, base: time.Now()}
}

// set makes at the session's deadline, of kind, in place of any it had.
func (d *deadlines) set(s *Session, at time.Time, kind deadlineKind) {
	e := deadline{at: at.Sub(d.base), s: s, kind: kind}
	d.mu.Lock()
	defer d.mu.Unlock()
	if i := s.deadline - 1; i >= 0 {
		d.queue[i] = e
		heap.Fix(&d.queue, i)
	} else {
		heap.Push(&d.queue, e)
	}
	if d.queue[0].s == s {
		d.armLocked()
	}
}

// clear removes the session's deadline if it is of kind (or of any kind,
// with anyDeadline).
func (d *deadlines) clear(s *Session, kind deadlineKind) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := s.deadline - 1
	if i < 0 || kind != anyDeadline && d.queue[i].kind != kind {
		return
	}
	heap.Remove(&d.queue, i)
	d.shrinkLocked()
	// The timer stays set for the removed deadline if it was the first:
	// expire then finds nothing due and sets it for the next.
}

// keptDeadlines is the capacity the queue keeps however few deadlines it
// holds.
const keptDeadlines = 1024

// shrinkLocked gives back the queue's memory once it holds less than a
// quarter of its capacity, so that a storm of connections does not leave
// it at its peak for good. Copying keeps every entry at its index.
func (d *deadlines) shrinkLocked() {
	if c := cap(d.queue); c > keptDeadlines && len(d.queue) < c/4 {
		d.queue = slices.Clone(d.queue)
	}
}

// armLocked sets the timer for the earliest deadline. d.mu must be held.
func (d *deadlines) armLocked() {
	wait := d.queue[0].at - time.Since(d.base)
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, d.expire)
		return
	}
	d.timer.Reset(wait)
}

// expire fires the deadlines that are due and sets the timer for the
// next.
func (d *deadlines) expire() {
	var due []deadline
	d.mu.Lock()
	now := time.Since(d.base)
	for len(d.queue) > 0 && d.queue[0].at <= now {
		due = append(due, heap.Pop(&d.queue).(deadline))
	}
	d.shrinkLocked()
	if len(d.queue) > 0 {
		d.armLocked()
	}
	d.mu.Unlock()
	for _, e := range due {
		d.fire(e.s, e.kind)
	}
}

// deadlineQueue is a min-heap of deadlines by time (container/heap). Each
// session records its entry's index plus one in Session.deadline.
type deadlineQueue []deadline

func (q deadlineQueue) Len() int           { return len(q) }
func (q deadlineQueue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q deadlineQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].s.deadline = i + 1
	q[j].s.deadline = j + 1
}

func (q *deadlineQueue) Push(x any) {
	e := x.(deadline)
	e.s.deadline = len(*q) + 1
	*q = append(*q, e)
}

func (q *deadlineQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = deadline{}
	*q = old[:len(old)-1]
	e.s.deadline = 0
	return e
}

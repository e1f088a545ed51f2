package transport

import "time"

// Pacing trades a little latency for far fewer writes when the flusher
// cannot keep up. A write costs about the same whether it carries one
// message or twenty (on loopback the system call also runs the receiver's
// TCP input), and the receiver pays per read as well. While the flusher's
// workers are busy most of the time, the machine is saturated and messages
// already wait for them; each connection is then written at most once per
// interval, and what arrives for it meanwhile joins that write (one batched
// frame in batch mode). The interval doubles while the workers stay busy,
// up to Config.MaxWriteDelay, and halves once they are not, so a server that keeps up
// never waits: a message to an idle connection, or at a rate the workers
// take in their stride, goes out at once.
const (
	// paceWindow is how often the workers' busy share is measured.
	paceWindow = 100 * time.Millisecond
	// paceHigh and paceLow are the busy shares (of all workers' time in a
	// window) above which the interval grows, if the window before was
	// above it too, and below which it shrinks. A single busy window is
	// not enough: the fan-out of one message to a large room keeps the
	// workers busy for a while at any rate.
	paceHigh = 0.75
	paceLow  = 0.40
	// paceMin is the first interval, and the least (unless the most,
	// Config.MaxWriteDelay, is less).
	paceMin = 4 * time.Millisecond
)

// nextInterval is the pacing interval after a window in which the workers
// were busy for share of their time, with interval the one before it,
// busy whether the window before was above paceHigh too, and most the
// longest interval (0: never pace).
func nextInterval(interval time.Duration, share float64, busy bool, most time.Duration) time.Duration {
	switch {
	case share > paceHigh && busy:
		return min(max(2*interval, paceMin), most)
	case share < paceLow:
		if interval /= 2; interval < min(paceMin, most) {
			return 0
		}
	}
	return interval
}

// account adds busy time of a worker and, once a window has passed, sets
// the interval for the next one. f.mu must be held.
func (f *flusher) account(busy int64) {
	f.busy += busy
	now := f.now()
	elapsed := now - f.windowStart
	if elapsed < int64(paceWindow) {
		return
	}
	share, interval := 0.0, time.Duration(0)
	if elapsed < int64(2*paceWindow) {
		// Otherwise the flusher was idle for most of it: no pacing.
		share = float64(f.busy) / (float64(elapsed) * float64(f.max))
		interval = time.Duration(f.interval.Load()) * time.Millisecond
		interval = nextInterval(interval, share, f.busyBefore, f.maxDelay)
	}
	f.interval.Store(uint32(interval / time.Millisecond))
	f.busyBefore = share > paceHigh
	f.windowStart, f.busy = now, 0
}

// wait sets connections aside until they are due.
func (f *flusher) wait(later []paced) {
	f.mu.Lock()
	for _, p := range later {
		f.waiting.push(p)
	}
	f.armLocked()
	f.mu.Unlock()
}

// armLocked sets the timer for the earliest connection set aside. f.mu must
// be held.
func (f *flusher) armLocked() {
	if len(f.waiting) == 0 {
		f.timer.Stop()
		f.armedAt = 0
		return
	}
	if due := f.waiting[0].due; f.armedAt == 0 || due < f.armedAt {
		f.armedAt = due
		f.timer.Reset(time.Duration(max(0, due-f.now())))
	}
}

// release moves the connections that are due, and those due within the
// next millisecond, back to the ready queue.
func (f *flusher) release() {
	f.mu.Lock()
	f.armedAt = 0
	now := f.now()
	start := 0
	for len(f.waiting) > 0 && f.waiting[0].due <= now+int64(time.Millisecond) {
		start += f.readyLocked(f.waiting.pop().c)
	}
	if len(f.waiting) == 0 && cap(f.waiting) > 1024 {
		f.waiting = nil // a saturated spell does not keep its peak
	}
	f.armLocked()
	f.mu.Unlock()
	for range start {
		go f.work()
	}
}

// pacedHeap holds connections set aside, earliest due first.
type pacedHeap []paced

func (h *pacedHeap) push(p paced) {
	*h = append(*h, p)
	q := *h
	for i := len(q) - 1; i > 0; {
		parent := (i - 1) / 2
		if q[parent].due <= q[i].due {
			break
		}
		q[parent], q[i] = q[i], q[parent]
		i = parent
	}
}

func (h *pacedHeap) pop() paced {
	q := *h
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[last] = paced{}
	q = q[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(q) && q[l].due < q[least].due {
			least = l
		}
		if r < len(q) && q[r].due < q[least].due {
			least = r
		}
		if least == i {
			break
		}
		q[i], q[least] = q[least], q[i]
		i = least
	}
	*h = q
	return top
}

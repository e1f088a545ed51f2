package transport

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// flusher writes the queued frames of connections from a few shared
// goroutines. A message to a room of a thousand idle sessions then costs a
// thousand non-blocking writes from GOMAXPROCS-1 goroutines whose stacks are
// already grown, rather than a thousand goroutines started, grown and
// scheduled; with io_uring, 32 of those writes go in each system call
// (sendBatch). A socket that does not take a whole write gets a goroutine of
// its own (Conn.writeLoop) for the rest, so one slow client never holds up
// the others. Workers exist only while there is work: an idle server has
// none.
//
// Under load the flusher paces its writes (see pace): while its workers
// are busy most of the time, a connection written less than the pacing
// interval ago waits until the interval has passed, and what is queued for
// it meanwhile goes out in the same write.
type flusher struct {
	mu sync.Mutex
	// ready[head:] are the connections waiting for a worker.
	ready   []*Conn
	head    int
	workers int
	max     int
	wires   *sync.Pool
	// uring makes workers send each chunk of detached connections with
	// one io_uring submission where the kernel allows (see sendBatch).
	uring bool

	// yieldEvery is how long a worker runs between two yields, in
	// nanoseconds (see yieldPeriod).
	yieldEvery int64

	// maxDelay is the longest pacing interval; 0 turns pacing off.
	maxDelay time.Duration
	// epoch starts the millisecond clock of Conn.wroteAt.
	epoch time.Time
	// interval is the pacing interval in milliseconds, 0 when off. The
	// workers read it without the lock; it changes under it.
	interval atomic.Uint32
	// The current window of the busy measure: when it began, and how long
	// the workers were busy in it (nanoseconds, on the epoch clock).
	windowStart int64
	busy        int64
	busyBefore  bool // the window before was busy (see nextInterval)
	// waiting are the connections set aside by pacing; timer puts them
	// back in ready when they are due, armed for armedAt (0: not armed).
	waiting pacedHeap
	timer   *time.Timer
	armedAt int64
}

// paced is a connection set aside until due (epoch nanoseconds).
type paced struct {
	c   *Conn
	due int64
}

// flushChunk is how many connections a worker takes from the queue at a
// time.
const flushChunk = 32

// yieldInterval is how long a flusher worker runs between two turns it
// gives to the goroutines waiting for a processor, when there are several
// processors: a tenth of the Go scheduler's own preemption interval.
const yieldInterval = time.Millisecond

// yieldPeriod is yieldInterval for procs processors, in nanoseconds. With
// one, the worker yields after every chunk: it holds the only processor,
// and with no idle one a yield costs no handoff.
func yieldPeriod(procs int) int64 {
	if procs == 1 {
		return 0
	}
	return int64(yieldInterval)
}

// flushWorkers is how many flusher workers may run at once for procs
// processors: one fewer, so that a saturating fan-out leaves a processor
// that runs out of work now and then. The Go scheduler polls the network
// only from a processor with nothing else to run (and otherwise from its
// monitor thread, every 10 ms): with every processor busy writing, the
// broker's answers and the API requests that feed the fan-out would wait
// that long to be noticed.
func flushWorkers(procs int) int { return max(1, procs-1) }

func newFlusher(wires *sync.Pool, maxDelay time.Duration, uring bool) *flusher {
	procs := runtime.GOMAXPROCS(0)
	f := &flusher{max: flushWorkers(procs), yieldEvery: yieldPeriod(procs), wires: wires, epoch: time.Now(), maxDelay: max(0, maxDelay), uring: uring}
	f.timer = time.AfterFunc(time.Hour, f.release)
	f.timer.Stop()
	return f
}

// now is the time on the flusher's clock, in nanoseconds.
func (f *flusher) now() int64 { return int64(time.Since(f.epoch)) }

// schedule queues connections whose write side the caller has claimed,
// and starts workers for them.
func (f *flusher) schedule(conns ...*Conn) {
	if len(conns) == 0 {
		return
	}
	f.mu.Lock()
	start := f.readyLocked(conns...)
	f.mu.Unlock()
	for range start {
		go f.work()
	}
}

// readyLocked queues conns and returns how many workers to start for
// them. f.mu must be held.
func (f *flusher) readyLocked(conns ...*Conn) (start int) {
	if f.head > 0 && f.head >= len(f.ready)/2 {
		// Under steady load the queue may never run empty: drop the taken
		// front now and then, so that the slice does not grow for ever.
		n := copy(f.ready, f.ready[f.head:])
		clear(f.ready[n:])
		f.ready, f.head = f.ready[:n], 0
	}
	f.ready = append(f.ready, conns...)
	start = min(f.max-f.workers, (len(f.ready)-f.head+flushChunk-1)/flushChunk)
	f.workers += start
	return start
}

// work flushes queued connections until there are none left.
func (f *flusher) work() {
	w := f.wires.Get().(*wire)
	defer putWire(f.wires, w)
	var batch [flushChunk]*Conn
	var sends *sendBatch
	if f.uring {
		sends = newSendBatch(f.wires)
		defer sends.release()
	}
	mark := f.now()
	yielded := mark
	for {
		f.mu.Lock()
		now := f.now()
		f.account(now - mark)
		mark = now
		n := min(len(f.ready)-f.head, flushChunk)
		if n == 0 {
			f.workers--
			f.mu.Unlock()
			return
		}
		// Take from the front so that connections are written in the
		// order they became ready.
		copy(batch[:], f.ready[f.head:f.head+n])
		clear(f.ready[f.head : f.head+n])
		f.head += n
		if f.head == len(f.ready) {
			f.ready, f.head = f.ready[:0], 0
		}
		f.mu.Unlock()
		interval := f.interval.Load()
		ms := uint32(now / int64(time.Millisecond))
		var later []paced
		for i, c := range batch[:n] {
			batch[i] = nil
			if since := ms - c.wroteAt; interval > 0 && since < interval {
				later = append(later, paced{c: c, due: now + int64(interval-since)*int64(time.Millisecond)})
				continue
			}
			c.wroteAt = ms
			if sends.takes(c) {
				sends.add(f, c)
				continue
			}
			if c.flush(w) {
				f.schedule(c)
			}
		}
		if sends != nil {
			sends.send(f)
		}
		if len(later) > 0 {
			f.wait(later)
		}
		// Between chunks, now and then, let the goroutines that wait for
		// a processor run (an API request, the broker's reader): a fan-out
		// that keeps the workers busy must not starve the publishes that
		// feed it. With several processors not after every chunk:
		// Gosched wakes an idle processor's thread to take the worker
		// over, which, when nothing else waits, is a futex wake and sleep
		// and a context switch or two for nothing, and can leave the rest
		// of the fan-out waiting for the kernel to run that thread.
		if f.now()-yielded >= f.yieldEvery {
			runtime.Gosched()
			yielded = f.now()
		}
	}
}

// maxPooledWire is the largest write buffer the pool keeps.
const maxPooledWire = 256 << 10

func newWire() any { return &wire{buf: make([]byte, 0, 4096), call: newRawWrite()} }

// putWire returns w to pool unless it grew too big to keep.
func putWire(pool *sync.Pool, w *wire) {
	if cap(w.buf) <= maxPooledWire {
		w.reset()
		pool.Put(w)
	}
}

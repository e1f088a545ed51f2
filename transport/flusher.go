package transport

import (
	"runtime"
	"sync"
)

// flusher writes the queued frames of connections from a few shared
// goroutines. A message to a room of a thousand idle sessions then costs a
// thousand non-blocking writes from GOMAXPROCS goroutines whose stacks are
// already grown, rather than a thousand goroutines started, grown and
// scheduled. A socket that does not take a whole write gets a goroutine of
// its own (Conn.writeLoop) for the rest, so one slow client never holds up
// the others. Workers exist only while there is work: an idle server has
// none.
type flusher struct {
	mu sync.Mutex
	// ready[head:] are the connections waiting for a worker.
	ready   []*Conn
	head    int
	workers int
	max     int
	wires   *sync.Pool
}

// flushChunk is how many connections a worker takes from the queue at a
// time.
const flushChunk = 32

func newFlusher(wires *sync.Pool) *flusher {
	return &flusher{max: runtime.GOMAXPROCS(0), wires: wires}
}

// schedule queues connections whose write side the caller has claimed,
// and starts workers for them.
func (f *flusher) schedule(conns ...*Conn) {
	if len(conns) == 0 {
		return
	}
	f.mu.Lock()
	if f.head > 0 && f.head >= len(f.ready)/2 {
		// Under steady load the queue may never run empty: drop the taken
		// front now and then, so that the slice does not grow for ever.
		n := copy(f.ready, f.ready[f.head:])
		clear(f.ready[n:])
		f.ready, f.head = f.ready[:n], 0
	}
	f.ready = append(f.ready, conns...)
	start := min(f.max-f.workers, (len(f.ready)-f.head+flushChunk-1)/flushChunk)
	f.workers += start
	f.mu.Unlock()
	for range start {
		go f.work()
	}
}

// work flushes queued connections until there are none left.
func (f *flusher) work() {
	w := f.wires.Get().(*wire)
	defer putWire(f.wires, w)
	var batch [flushChunk]*Conn
	for {
		f.mu.Lock()
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
		for i, c := range batch[:n] {
			if c.flush(w) {
				f.schedule(c)
			}
			batch[i] = nil
		}
		// Between chunks, let the goroutines that wait for a processor
		// run (an API request, the broker's reader): a fan-out that keeps
		// the workers busy must not starve the publishes that feed it.
		runtime.Gosched()
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

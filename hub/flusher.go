package hub

import (
	"runtime"
	"sync"
)

// flusher writes the queued frames of sessions from a few shared
// goroutines. A message to a room of a thousand idle sessions then costs a
// thousand non-blocking writes from GOMAXPROCS goroutines whose stacks are
// already grown, rather than a thousand goroutines started, grown and
// scheduled. A socket that does not take a whole write gets a goroutine of
// its own (Session.writeLoop) for the rest, so one slow client never holds
// up the others. Workers exist only while there is work: an idle hub has
// none.
type flusher struct {
	mu sync.Mutex
	// ready[head:] are the sessions waiting for a worker.
	ready   []*Session
	head    int
	workers int
	max     int
	// wire recycles write buffers between workers.
	wire sync.Pool
}

// flushChunk is how many sessions a worker takes from the queue at a time.
const flushChunk = 32

func newFlusher() *flusher {
	return &flusher{max: runtime.GOMAXPROCS(0)}
}

// schedule queues sessions whose writing flag the caller has just set, and
// starts workers for them.
func (f *flusher) schedule(sessions ...*Session) {
	if len(sessions) == 0 {
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
	f.ready = append(f.ready, sessions...)
	start := min(f.max-f.workers, (len(f.ready)-f.head+flushChunk-1)/flushChunk)
	f.workers += start
	f.mu.Unlock()
	for range start {
		go f.work()
	}
}

// work flushes queued sessions until there are none left.
func (f *flusher) work() {
	w := f.getWire()
	defer f.putWire(w)
	var batch [flushChunk]*Session
	for {
		f.mu.Lock()
		n := min(len(f.ready)-f.head, flushChunk)
		if n == 0 {
			f.workers--
			f.mu.Unlock()
			break
		}
		// Take from the front so that sessions are written in the order
		// they became ready.
		copy(batch[:], f.ready[f.head:f.head+n])
		clear(f.ready[f.head : f.head+n])
		f.head += n
		if f.head == len(f.ready) {
			f.ready, f.head = f.ready[:0], 0
		}
		f.mu.Unlock()
		for i, s := range batch[:n] {
			if s.flush(w) {
				f.schedule(s)
			}
			batch[i] = nil
		}
	}
}

// getWire returns a write buffer from the pool.
func (f *flusher) getWire() *wireBatch {
	if w, ok := f.wire.Get().(*wireBatch); ok {
		return w
	}
	return &wireBatch{buf: make([]byte, 0, 4096)}
}

// putWire returns w to the pool unless it grew too big to keep.
func (f *flusher) putWire(w *wireBatch) {
	if cap(w.buf) <= maxPooledWire {
		w.reset()
		f.wire.Put(w)
	}
}

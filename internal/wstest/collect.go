package wstest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/protocol"
)

// collectReadTimeout bounds each read of a Collector. It only has to be
// longer than any test: the connection is closed when the test ends, which
// ends the read.
const collectReadTimeout = 10 * time.Minute

// Collector reads a connection's frames in a goroutine of its own and keeps
// them, so that a test can wait for conditions on everything a session has
// received while other goroutines publish. Once a Conn is collected, only the
// Collector reads it: do not call Next, Expect or similar on that Conn any
// more. Sending (Conn.Send from the test's goroutine, or Conn.TrySend from
// one goroutine at a time) stays allowed. A Collector is safe for concurrent
// use.
type Collector struct {
	conn *Conn

	mu     sync.Mutex
	frames []protocol.ServerFrame
	err    error
	// changed is closed and replaced whenever frames or err change.
	changed chan struct{}
	done    chan struct{}
}

// Collect starts reading c in the background. Frames that c has already
// read but not returned are collected first. The goroutine ends when the
// connection does (the server closes it, Conn.Close, or the end of the
// test).
func (c *Conn) Collect() *Collector {
	k := &Collector{conn: c, changed: make(chan struct{}), done: make(chan struct{})}
	go k.run()
	return k
}

func (k *Collector) run() {
	defer close(k.done)
	for {
		f, err := k.conn.NextErr(collectReadTimeout)
		k.mu.Lock()
		if err != nil {
			k.err = err
		} else {
			k.frames = append(k.frames, f)
		}
		close(k.changed)
		k.changed = make(chan struct{})
		k.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Conn returns the collected connection, for sending.
func (k *Collector) Conn() *Conn { return k.conn }

// Frames returns a copy of the frames received so far, in order.
func (k *Collector) Frames() []protocol.ServerFrame {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]protocol.ServerFrame(nil), k.frames...)
}

// Done is closed when the connection has ended.
func (k *Collector) Done() <-chan struct{} { return k.done }

// Err returns the read error that ended the connection, or nil while it
// is open.
func (k *Collector) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// CloseCode returns the close code the server ended the connection with,
// or -1 if it is still open or ended without a close frame.
func (k *Collector) CloseCode() int {
	var ce *websocket.CloseError
	if err := k.Err(); errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// Wait waits until cond, called with the frames received so far, returns
// true. It returns an error when timeout passes first, or when the
// connection ends while cond is still false. cond is called with the
// Collector's lock held: it must not keep the slice or call the Collector.
func (k *Collector) Wait(timeout time.Duration, what string, cond func([]protocol.ServerFrame) bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		k.mu.Lock()
		ok := cond(k.frames)
		n, err, changed := len(k.frames), k.err, k.changed
		k.mu.Unlock()
		if ok {
			return nil
		}
		if err != nil {
			return fmt.Errorf("waiting for %s: connection ended after %d frames: %w", what, n, err)
		}
		select {
		case <-changed:
		case <-timer.C:
			return fmt.Errorf("waiting for %s: timed out after %v and %d frames", what, timeout, n)
		}
	}
}

// WaitFor waits until a frame that match accepts has arrived and returns
// the first such frame. See Wait.
func (k *Collector) WaitFor(timeout time.Duration, what string, match func(protocol.ServerFrame) bool) (protocol.ServerFrame, error) {
	var found protocol.ServerFrame
	err := k.Wait(timeout, what, func(frames []protocol.ServerFrame) bool {
		for _, f := range frames {
			if match(f) {
				found = f
				return true
			}
		}
		return false
	})
	return found, err
}

// WaitClosed waits until the connection has ended and returns its close
// code (-1 when it ended without a close frame), or an error after timeout.
func (k *Collector) WaitClosed(timeout time.Duration) (int, error) {
	select {
	case <-k.done:
		return k.CloseCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("connection still open after %v", timeout)
	}
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/auth"
)

// workerSetup is what every connection of a worker shares.
type workerSetup struct {
	Target       Target        `json:"target"`
	Token        string        `json:"token,omitempty"`
	JWTSecret    string        `json:"jwtSecret,omitempty"`
	TokenTTL     time.Duration `json:"tokenTTL"`
	Batch        bool          `json:"batch"`
	Receiver     string        `json:"receiver,omitempty"`
	PayloadBytes int           `json:"payload"`
	Steps        int           `json:"steps"`
	DialTimeout  time.Duration `json:"dialTimeout"`
	Concurrency  int           `json:"concurrency"`
	SrcIPs       []netip.Addr  `json:"srcIPs,omitempty"`
}

// connSpec describes one connection to open.
type connSpec struct {
	Index int      `json:"i"`
	User  string   `json:"u"`
	URL   string   `json:"url"`
	Rooms []string `json:"rooms,omitempty"`
	// Inbox joins the user's inbox explicitly where the protocol needs it.
	Inbox bool `json:"inbox,omitempty"`
	// PubRoom is the room this connection publishes to, and Receivers how
	// many other connections are members of it.
	PubRoom   string `json:"pub,omitempty"`
	Receivers int    `json:"recv,omitempty"`
}

// stepStats counts one ladder step in one worker.
type stepStats struct {
	received, dups, self       atomic.Int64
	due, sent, missed          atomic.Int64
	acked, pubErrors, expected atomic.Int64
	lat                        latencies
}

// workerStats is one step's counts of one worker, as sent to the parent.
type workerStats struct {
	Received  int64            `json:"received"`
	Dups      int64            `json:"dups"`
	Self      int64            `json:"self"`
	Due       int64            `json:"due"`
	Sent      int64            `json:"sent"`
	Missed    int64            `json:"missed"`
	Acked     int64            `json:"acked"`
	PubErrors int64            `json:"pubErrors"`
	Expected  int64            `json:"expected"`
	Hist      string           `json:"hist,omitempty"`
	Notes     map[string]int64 `json:"notes,omitempty"`
}

// progress is a worker's running totals, for the progress line.
type progress struct {
	Open     int64 `json:"open"`
	Failed   int64 `json:"failed"`
	Received int64 `json:"received"`
	Sent     int64 `json:"sent"`
	Acked    int64 `json:"acked"`
	Errors   int64 `json:"errors"`
	Drops    int64 `json:"drops"`
	Stray    int64 `json:"stray"`
}

func (p *progress) add(q progress) {
	p.Open += q.Open
	p.Failed += q.Failed
	p.Received += q.Received
	p.Sent += q.Sent
	p.Acked += q.Acked
	p.Errors += q.Errors
	p.Drops += q.Drops
	p.Stray += q.Stray
}

// connectResult is what a worker's connect reports.
type connectResult struct {
	Opened  int      `json:"opened"`
	Failed  int      `json:"failed"`
	Errors  []string `json:"errors,omitempty"`
	Seconds float64  `json:"seconds"`
}

// sendJob is one publish handed from the pacer to a sender.
type sendJob struct {
	c    *conn
	step int
	seq  int64
}

// worker holds connections, in this process or in a child: it opens them,
// publishes from those that publish, counts what they receive, and closes
// them. Its methods are called one at a time by its owner; its counters
// are safe to read concurrently.
type worker struct {
	setup workerSetup
	proto adapter
	steps []*stepStats

	conns []*conn
	pubs  []*conn
	reads sync.WaitGroup

	sendq   chan sendJob
	senders sync.WaitGroup

	open, failed, received, sent, acked, errors, drops, stray atomic.Int64

	nmu   sync.Mutex
	notes map[string]int64
}

func newWorker(setup workerSetup) *worker {
	w := &worker{setup: setup, proto: newAdapter(setup.Target), notes: map[string]int64{}}
	w.steps = make([]*stepStats, max(setup.Steps, 1))
	for i := range w.steps {
		w.steps[i] = &stepStats{}
	}
	return w
}

// step returns the counters of step i, nil if out of range.
func (w *worker) step(i int) *stepStats {
	if i < 0 || i >= len(w.steps) {
		return nil
	}
	return w.steps[i]
}

// note counts an event worth reporting (error codes, resets, disconnects).
func (w *worker) note(what string) {
	w.nmu.Lock()
	w.notes[what]++
	w.nmu.Unlock()
}

func (w *worker) progress() progress {
	return progress{
		Open: w.open.Load(), Failed: w.failed.Load(), Received: w.received.Load(), Sent: w.sent.Load(),
		Acked: w.acked.Load(), Errors: w.errors.Load(), Drops: w.drops.Load(), Stray: w.stray.Load(),
	}
}

// connect opens the connections of specs, Concurrency at a time.
func (w *worker) connect(ctx context.Context, specs []connSpec) connectResult {
	start := time.Now()
	var (
		mu       sync.Mutex
		res      connectResult
		wg       sync.WaitGroup
		distinct = map[string]bool{}
	)
	sem := make(chan struct{}, w.setup.Concurrency)
	for _, spec := range specs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := w.dial(ctx, spec)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				w.failed.Add(1)
				if msg := err.Error(); !distinct[msg] && len(res.Errors) < 5 {
					distinct[msg] = true
					res.Errors = append(res.Errors, msg)
				}
				return
			}
			res.Opened++
			w.conns = append(w.conns, c)
			if c.pubRoom != "" {
				w.pubs = append(w.pubs, c)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		res.Errors = append(res.Errors, "interrupted: "+ctx.Err().Error())
	}
	res.Seconds = time.Since(start).Seconds()
	return res
}

// dial opens one connection, authenticates, joins its rooms and starts
// reading it.
func (w *worker) dial(ctx context.Context, spec connSpec) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, w.setup.DialTimeout)
	defer cancel()
	var src netip.Addr
	if n := len(w.setup.SrcIPs); n > 0 {
		src = w.setup.SrcIPs[spec.Index%n]
	}
	c := &conn{idx: spec.Index, user: spec.User, w: w, proto: w.proto, pubRoom: spec.PubRoom, receivers: spec.Receivers, inbox: spec.Inbox}
	switch {
	case w.setup.JWTSecret != "":
		tok, err := auth.Sign([]byte(w.setup.JWTSecret), auth.Claims{User: spec.User, Expires: time.Now().Add(w.setup.TokenTTL)})
		if err != nil {
			return nil, fmt.Errorf("token for %q: %w", spec.User, err)
		}
		c.token = tok
	default:
		c.token = w.setup.Token
	}
	ws, resp, err := dialer(src, w.setup.DialTimeout).DialContext(ctx, spec.URL, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (HTTP %d)", spec.URL, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", spec.URL, err)
	}
	c.ws = ws
	ws.SetPingHandler(c.answerPing)
	if err := w.proto.handshake(ctx, c, spec.Rooms); err != nil {
		_ = ws.Close()
		return nil, err
	}
	w.open.Add(1)
	w.reads.Go(c.readLoop)
	return c, nil
}

// connEnded is called when a connection's read loop ends with err.
func (w *worker) connEnded(c *conn, err error) {
	w.open.Add(-1)
	if c.done.Load() {
		return
	}
	w.drops.Add(1)
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		w.note(fmt.Sprintf("connection closed by the server: %d %s", ce.Code, ce.Text))
		return
	}
	w.note("connection dropped: " + dropReason(err))
}

// dropReason names how a connection ended without a close frame, without
// the addresses an error's text holds (notes are counted by their text).
func dropReason(err error) string {
	switch {
	case errors.Is(err, errPongLate):
		return fmt.Sprintf("could not answer a ping within %v (this process fell behind)", pingAnswerTimeout)
	case errors.Is(err, syscall.ECONNRESET):
		return "reset by the peer"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "closed without a close frame"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "read deadline passed"
	case errors.Is(err, syscall.ETIMEDOUT):
		return "timed out in TCP (ETIMEDOUT)"
	default:
		// The text after the last colon leaves out "read tcp a->b".
		text := err.Error()
		if i := strings.LastIndex(text, ": "); i >= 0 {
			text = text[i+2:]
		}
		return fmt.Sprintf("%s (%T)", text, err)
	}
}

// senderCount is how many goroutines write publishes for a worker.
const senderCount = 16

// runStep publishes at rate (this worker's share) for d, from the worker's
// publishing connections in turn.
func (w *worker) runStep(ctx context.Context, step int, rate float64, d time.Duration) PaceStats {
	st := w.step(step)
	if st == nil || len(w.pubs) == 0 || rate <= 0 {
		return PaceStats{}
	}
	if w.sendq == nil {
		w.sendq = make(chan sendJob, 4096)
		for range min(senderCount, len(w.pubs)) {
			w.senders.Go(func() {
				for job := range w.sendq {
					_ = job.c.publish(job.step, job.seq, w.setup.PayloadBytes)
				}
			})
		}
	}
	ps := Pace(ctx, rate, d, func(n int64) bool {
		c := w.pubs[n%int64(len(w.pubs))]
		select {
		case w.sendq <- sendJob{c: c, step: step, seq: c.seq}:
			c.seq++
			w.sent.Add(1)
			return true
		default:
			return false
		}
	})
	st.due.Add(ps.Due)
	st.sent.Add(ps.Sent)
	st.missed.Add(ps.Missed)
	return ps
}

// stats reports step i's counts.
func (w *worker) stats(i int) (workerStats, error) {
	st := w.step(i)
	if st == nil {
		return workerStats{}, fmt.Errorf("no step %d", i)
	}
	hist, err := encodeHist(st.lat.merged())
	if err != nil {
		return workerStats{}, err
	}
	w.nmu.Lock()
	notes := maps.Clone(w.notes)
	w.nmu.Unlock()
	return workerStats{
		Received: st.received.Load(), Dups: st.dups.Load(), Self: st.self.Load(),
		Due: st.due.Load(), Sent: st.sent.Load(), Missed: st.missed.Load(),
		Acked: st.acked.Load(), PubErrors: st.pubErrors.Load(), Expected: st.expected.Load(),
		Hist: hist, Notes: notes,
	}, nil
}

// errCloseTimeout says that some read loops did not end in time.
var errCloseTimeout = errors.New("connections did not close in time")

// closeAll closes every connection and waits, up to timeout, for their
// read loops and the senders.
func (w *worker) closeAll(timeout time.Duration) error {
	if w.sendq != nil {
		close(w.sendq)
		w.senders.Wait()
		w.sendq = nil
	}
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, c := range w.conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.close()
		})
	}
	wg.Wait()
	done := make(chan struct{})
	go func() { w.reads.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return errCloseTimeout
	}
}

package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"
)

// A parent drives its workers with requests and reads replies; a worker in
// a child process gets them as JSON lines on its standard input and writes
// JSON lines on its standard output: replies, and a progress line every
// second. The child ends when its input closes.

// request is one command to a worker.
type request struct {
	ID      int64        `json:"id"`
	Op      string       `json:"op"` // connect, step, stats, progress, close
	Setup   *workerSetup `json:"setup,omitempty"`
	Conns   []connSpec   `json:"conns,omitempty"`
	Step    int          `json:"step,omitempty"`
	Rate    float64      `json:"rate,omitempty"`
	Seconds float64      `json:"seconds,omitempty"`
}

// reply is a worker's answer to a request.
type reply struct {
	ID       int64          `json:"id"`
	Err      string         `json:"err,omitempty"`
	Connect  *connectResult `json:"connect,omitempty"`
	Pace     *PaceStats     `json:"pace,omitempty"`
	Stats    *workerStats   `json:"stats,omitempty"`
	Progress *progress      `json:"progress,omitempty"`
	PID      int            `json:"pid,omitempty"`
}

// closeTimeout bounds how long a worker waits for its connections to close.
const closeTimeout = 5 * time.Second

// serve runs one request on w.
func (w *worker) serve(ctx context.Context, req request) reply {
	rep := reply{ID: req.ID}
	switch req.Op {
	case "connect":
		r := w.connect(ctx, req.Conns)
		rep.Connect = &r
	case "step":
		ps := w.runStep(ctx, req.Step, req.Rate, time.Duration(req.Seconds*float64(time.Second)))
		rep.Pace = &ps
	case "stats":
		st, err := w.stats(req.Step)
		if err != nil {
			rep.Err = err.Error()
		}
		rep.Stats = &st
	case "progress":
		p := w.progress()
		rep.Progress = &p
	case "close":
		if err := w.closeAll(closeTimeout); err != nil {
			rep.Err = err.Error()
		}
	default:
		rep.Err = fmt.Sprintf("unknown op %q", req.Op)
	}
	return rep
}

// workerClient is how the parent talks to a worker, here or in a child.
type workerClient interface {
	// call sends a request and waits for its reply.
	call(ctx context.Context, req request) (reply, error)
	// progress returns the worker's latest totals.
	progress() progress
	// pid is the worker's process id.
	pid() int
	// stop releases the worker (ends the child process).
	stop()
}

// localWorker is a worker in this process.
type localWorker struct {
	mu sync.Mutex
	w  *worker
}

func (l *localWorker) call(ctx context.Context, req request) (reply, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if req.Op == "connect" {
		l.w = newWorker(*req.Setup)
	}
	if l.w == nil {
		return reply{}, errors.New("bench: worker: connect first")
	}
	rep := l.w.serve(ctx, req)
	if rep.Err != "" {
		return rep, errors.New(rep.Err)
	}
	return rep, nil
}

func (l *localWorker) progress() progress {
	l.mu.Lock()
	w := l.w
	l.mu.Unlock()
	if w == nil {
		return progress{}
	}
	return w.progress()
}

func (l *localWorker) pid() int { return os.Getpid() }
func (l *localWorker) stop()    {}

// childWorker is a worker in a child process.
type childWorker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	enc    *json.Encoder
	mu     sync.Mutex // one call at a time
	nextID atomic.Int64
	last   atomic.Pointer[progress]
	rmu    sync.Mutex
	waits  map[int64]chan reply
	exited chan struct{}
	err    error // why the child's output ended; read after exited
}

// startChild starts a child process running RunChild.
func startChild(command, env []string, stderr io.Writer) (*childWorker, error) {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = stderr
	// The child must not outlive the parent, even when the parent is
	// killed: it ends on EOF of its input, and (on Linux) on the parent's
	// death.
	cmd.SysProcAttr = childProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start child: %w", err)
	}
	cw := &childWorker{cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), waits: map[int64]chan reply{}, exited: make(chan struct{})}
	cw.last.Store(&progress{})
	go cw.readReplies(stdout)
	return cw, nil
}

// readReplies reads the child's output until it ends.
func (cw *childWorker) readReplies(r io.Reader) {
	defer close(cw.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var rep reply
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			cw.err = fmt.Errorf("child output: %w", err)
			continue
		}
		if rep.Progress != nil && rep.ID == 0 {
			cw.last.Store(rep.Progress)
			continue
		}
		cw.rmu.Lock()
		ch := cw.waits[rep.ID]
		delete(cw.waits, rep.ID)
		cw.rmu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
	if cw.err == nil {
		cw.err = sc.Err()
	}
	if cw.err == nil {
		cw.err = errors.New("child exited")
	}
}

func (cw *childWorker) call(ctx context.Context, req request) (reply, error) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	req.ID = cw.nextID.Add(1)
	ch := make(chan reply, 1)
	cw.rmu.Lock()
	cw.waits[req.ID] = ch
	cw.rmu.Unlock()
	if err := cw.enc.Encode(req); err != nil {
		return reply{}, fmt.Errorf("child %d: send %s: %w", cw.pid(), req.Op, err)
	}
	select {
	case rep := <-ch:
		if rep.Err != "" {
			return rep, fmt.Errorf("child %d: %s", cw.pid(), rep.Err)
		}
		return rep, nil
	case <-cw.exited:
		return reply{}, fmt.Errorf("child %d: %s: %w", cw.pid(), req.Op, cw.err)
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

func (cw *childWorker) progress() progress { return *cw.last.Load() }
func (cw *childWorker) pid() int           { return cw.cmd.Process.Pid }

// stop closes the child's input, which ends it; it is killed if it has not
// ended after closeTimeout plus a margin.
func (cw *childWorker) stop() {
	_ = cw.stdin.Close()
	done := make(chan struct{})
	go func() { _ = cw.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeTimeout + 3*time.Second):
		_ = cw.cmd.Process.Kill()
		<-done
	}
}

// RunChild runs a worker for a parent `switchboard bench --procs N`: it
// reads requests from in and writes replies and progress to out until in
// ends. It returns the process exit code.
//
// With SWITCHBOARD_BENCH_CPUPROFILE=prefix in its environment, a worker
// writes a CPU profile of its whole run to prefix.<pid>, to see what the
// load generator itself costs.
func RunChild(ctx context.Context, in io.Reader, out io.Writer) int {
	raiseFileLimit()
	stopProfile := startProfile()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wmu sync.Mutex
		enc = json.NewEncoder(out)
	)
	write := func(r reply) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = enc.Encode(r)
	}
	var (
		w    atomic.Pointer[worker]
		jobs sync.WaitGroup
	)
	stopProgress := make(chan struct{})
	jobs.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				if cur := w.Load(); cur != nil {
					p := cur.progress()
					write(reply{Progress: &p, PID: os.Getpid()})
				}
			}
		}
	})
	dec := json.NewDecoder(in)
	code := 0
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if !errors.Is(err, io.EOF) {
				code = 1
			}
			break
		}
		if req.Op == "connect" {
			if req.Setup == nil {
				write(reply{ID: req.ID, Err: "connect without setup"})
				continue
			}
			w.Store(newWorker(*req.Setup))
		}
		cur := w.Load()
		if cur == nil {
			write(reply{ID: req.ID, Err: "connect first"})
			continue
		}
		write(cur.serve(ctx, req))
	}
	// Stopped before closing: the parent may be gone by the end.
	stopProfile()
	close(stopProgress)
	cancel()
	if cur := w.Load(); cur != nil {
		_ = cur.closeAll(closeTimeout)
	}
	jobs.Wait()
	return code
}

// startProfile starts the CPU profile SWITCHBOARD_BENCH_CPUPROFILE asks
// for, if any, and returns what stops it.
func startProfile() (stop func()) {
	prefix := os.Getenv("SWITCHBOARD_BENCH_CPUPROFILE")
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", prefix, os.Getpid()))
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// Command indep is a second, independent load generator for the W2-API
// workload of issue 15, written from the description and sharing
// no code with package bench (`switchboard bench`), so that each checks the
// other.
//
// It opens --members connections spread round-robin over the --url
// instances, each in one room, asking Switchboard for batch mode (or
// subscribing a Centrifugo channel); every connection reads with
// gorilla/websocket's ReadMessage, splits frames on newlines and scans each
// object for the send time embedded in the data, without decoding JSON.
// --workers goroutines publish with POST /api/publish, round-robin over the
// instances; a pacer hands each publish, when it is due, to an idle worker
// over an unbuffered channel, or counts it as skipped. The steps (a warm-up,
// then the ladder) run back to back; deliveries/s and CPU are per
// wall-clock step, loss and latency per message of the step after a final
// drain. CPU is utime+stime of --server-pids and --redis-pid from /proc.
// With --publishers-apart the HTTP workers and the pacer run in a child
// process (this program started again), on the same schedule from the same
// start, so that they do not wait for a processor behind the receivers; the
// child reports its counts to the parent, whose CPU column includes it.
//
//	go build -o /tmp/indep ./bench/indep
//	/tmp/indep --url ws://127.0.0.1:P1/ws,ws://127.0.0.1:P2/ws --jwt-secret S --api-key K \
//	  --server-pids 11,12 --redis-pid 13
//
// Only loopback targets are accepted.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

type options struct {
	target     string
	urls       []string
	apis       []string
	secret     string
	apiKey     string
	members    int
	workers    int
	warmup     time.Duration
	warmupRate float64
	ladder     []float64
	step       time.Duration
	payload    int
	serverPIDs []int
	redisPID   int
	jsonOut    string
	msgLog     string
	// apart runs the HTTP publishers in a child process of their own.
	apart bool
}

func main() {
	opt, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "indep:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if os.Getenv(envRoom) != "" {
		if err := runPublishers(ctx, opt); err != nil {
			fmt.Fprintln(os.Stderr, "indep publishers:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, opt); err != nil {
		fmt.Fprintln(os.Stderr, "indep:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("indep", flag.ContinueOnError)
	urls := fs.String("url", "", "comma-separated WebSocket URLs of the instances")
	ladder := fs.String("ladder", "25,100,200,400,800,1600", "publish rates, msg/s, one step each")
	pids := fs.String("server-pids", "", "comma-separated server process ids")
	fs.StringVar(&o.target, "target", "switchboard", "switchboard or centrifugo")
	fs.StringVar(&o.secret, "jwt-secret", "", "HS256 secret for connection tokens")
	fs.StringVar(&o.apiKey, "api-key", "", "HTTP API key")
	fs.IntVar(&o.members, "members", 2000, "connections, all in one room")
	fs.IntVar(&o.workers, "workers", 64, "concurrent HTTP publishers")
	fs.DurationVar(&o.warmup, "warmup", 6*time.Second, "warm-up step length")
	fs.Float64Var(&o.warmupRate, "warmup-rate", 10, "warm-up rate, msg/s")
	fs.DurationVar(&o.step, "step", 6*time.Second, "length of each step")
	fs.IntVar(&o.payload, "payload", 100, "bytes of message data")
	fs.IntVar(&o.redisPID, "redis-pid", 0, "Redis process id")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.BoolVar(&o.apart, "publishers-apart", false, "run the HTTP publishers in a child process of their own, so that they do not wait for a processor behind the receivers")
	fs.StringVar(&o.msgLog, "msglog", "", "write one CSV line per message (step, seq, send time, per instance: deliveries and largest latency) to this file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.target != "switchboard" && o.target != "centrifugo" {
		return o, fmt.Errorf("--target %q: want switchboard or centrifugo", o.target)
	}
	for _, u := range strings.Split(*urls, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Scheme != "ws" {
			return o, fmt.Errorf("--url %q: want ws://host:port/path", u)
		}
		host := p.Hostname()
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return o, fmt.Errorf("--url %q: only loopback targets", u)
		}
		o.urls = append(o.urls, p.String())
		o.apis = append(o.apis, "http://"+p.Host)
	}
	for _, r := range strings.Split(*ladder, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 {
			return o, fmt.Errorf("--ladder: %q is not a positive rate", r)
		}
		o.ladder = append(o.ladder, v)
	}
	if *pids != "" {
		for _, p := range strings.Split(*pids, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil {
				return o, fmt.Errorf("--server-pids: %q", p)
			}
			o.serverPIDs = append(o.serverPIDs, n)
		}
	}
	if o.members <= 0 || o.workers <= 0 || o.step <= 0 || o.payload < 60 {
		return o, errors.New("--members, --workers and --step must be positive, --payload at least 60")
	}
	return o, nil
}

// stepCounts is what one step measured.
type stepCounts struct {
	rate                 float64
	seconds              float64
	due, handed, skipped int64
	accepted, failed     atomic.Int64
	received             atomic.Int64
	hist                 *histogram
	// The parts of a publish's round trip, from net/http/httptrace:
	// request start to request written (getting a connection, writing),
	// written to first answer byte read (network, server, and the client
	// transport's reader being scheduled), and first byte to the worker
	// having the answer (the worker goroutine being scheduled again).
	pubWrite, pubServer, pubWake *histogram
	arrived                      int64 // deliveries from any step during the window
	serverCPU, redisCPU, selfCPU float64
	windowSeconds                float64
	firstError                   atomic.Pointer[string]
	// msgs has one entry per publish of the step, by sequence number, for
	// --msglog.
	msgs []msgStats
}

// msgStats is what the receivers saw of one message: its send time, and
// the largest latency and the number of deliveries on each instance's
// receivers (connection i sits on instance i mod 2).
type msgStats struct {
	sent   atomic.Int64
	maxLat [2]atomic.Int64
	count  [2]atomic.Int64
}

type job struct {
	step int
	seq  int64
}

func run(ctx context.Context, o options) error {
	room := fmt.Sprintf("indep-%d", time.Now().UnixNano()%1_000_000)
	steps := newSteps(o)
	var total atomic.Int64

	// Connect, 100 at a time.
	conns := make([]*websocket.Conn, o.members)
	sem := make(chan struct{}, 100)
	var wg sync.WaitGroup
	var connErr atomic.Pointer[error]
	for i := range o.members {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := connect(ctx, o, i, room)
			if err != nil {
				connErr.CompareAndSwap(nil, &err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	if p := connErr.Load(); p != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return fmt.Errorf("connect: %w", *p)
	}
	var readers sync.WaitGroup
	var ended endings
	for i, c := range conns {
		readers.Go(func() {
			if err := read(c, i%2, steps, &total); !ended.closing.Load() {
				ended.add(err)
			}
		})
	}
	defer func() {
		ended.closing.Store(true)
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
	}()

	// The publishers: here, or in a child process that follows the same
	// schedule from the same start.
	genPIDs := []int{os.Getpid()}
	var jobs chan job
	var stopPublishers func()
	var child *publisherChild
	start := time.Now().Add(100 * time.Millisecond)
	if o.apart {
		start = time.Now().Add(2 * time.Second) // the child starts its workers meanwhile
		var err error
		if child, err = startPublisherChild(room, start); err != nil {
			return err
		}
		defer child.kill()
		genPIDs = append(genPIDs, child.pid())
	} else {
		jobs, stopPublishers = startPublishers(o, room, steps)
	}

	for k, st := range steps {
		stepStart := start.Add(stepOffset(steps, k))
		time.Sleep(time.Until(stepStart))
		if k == len(steps)-1 {
			stopTrace := startTrace()
			defer stopTrace()
		}
		srv0, redis0, self0 := cpu(o.serverPIDs), cpu([]int{o.redisPID}), cpu(genPIDs)
		arrived0 := total.Load()
		if jobs != nil {
			pace(ctx, st, k, stepStart, jobs)
		}
		if d := time.Until(stepStart.Add(time.Duration(st.seconds * float64(time.Second)))); d > 0 {
			time.Sleep(d)
		}
		st.windowSeconds = time.Since(stepStart).Seconds()
		st.arrived = total.Load() - arrived0
		st.serverCPU = cpu(o.serverPIDs) - srv0
		st.redisCPU = cpu([]int{o.redisPID}) - redis0
		st.selfCPU = cpu(genPIDs) - self0
		if child == nil {
			fmt.Fprintf(os.Stderr, "indep: step %d (%g msg/s): handed %d skipped %d, %d deliveries\n", k, st.rate, st.handed, st.skipped, st.arrived)
		} else {
			fmt.Fprintf(os.Stderr, "indep: step %d (%g msg/s): %d deliveries\n", k, st.rate, st.arrived)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if child != nil {
		if err := child.wait(steps); err != nil {
			return err
		}
	} else {
		stopPublishers()
	}
	// Drain: until nothing arrived for 2 s, at most 30 s.
	last, quiet := total.Load(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && time.Since(quiet) < 2*time.Second; {
		time.Sleep(200 * time.Millisecond)
		if n := total.Load(); n != last {
			last, quiet = n, time.Now()
		}
	}
	if err := report(o, steps); err != nil {
		return err
	}
	if n, first := ended.count(); n > 0 {
		fmt.Printf("\n%d connections ended before the run did; the first: %s\n", n, first)
	}
	return nil
}

// endings counts the connections that end while the run still reads them
// (a server's close, a reset), with the first one's error.
type endings struct {
	closing atomic.Bool // the run itself closes them now
	mu      sync.Mutex
	n       int
	first   string
}

func (e *endings) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == 0 && err != nil {
		e.first = err.Error()
	}
	e.n++
}

func (e *endings) count() (int, string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n, e.first
}

// newSteps makes the warm-up step and one step per rate of the ladder.
func newSteps(o options) []*stepCounts {
	rates := append([]float64{o.warmupRate}, o.ladder...)
	steps := make([]*stepCounts, len(rates))
	for i, r := range rates {
		d := o.step
		if i == 0 {
			d = o.warmup
		}
		steps[i] = &stepCounts{rate: r, seconds: d.Seconds(), hist: newHistogram(2 * time.Minute), msgs: make([]msgStats, int(r*d.Seconds())+1),
			pubWrite: newHistogram(20 * time.Second), pubServer: newHistogram(20 * time.Second), pubWake: newHistogram(20 * time.Second)}
	}
	return steps
}

// stepOffset is when step k starts after the first: the steps run back to
// back.
func stepOffset(steps []*stepCounts, k int) time.Duration {
	var d time.Duration
	for _, st := range steps[:k] {
		d += time.Duration(st.seconds * float64(time.Second))
	}
	return d
}

// startPublishers starts o.workers HTTP publishers that take jobs from the
// returned unbuffered channel, so that a publish is handed only to a worker
// that is waiting for one; stop closes it and waits for them.
func startPublishers(o options, room string, steps []*stepCounts) (jobs chan job, stop func()) {
	jobs = make(chan job)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.workers}}
	var idle atomic.Int64
	var workers sync.WaitGroup
	for range o.workers {
		workers.Go(func() {
			idle.Add(1)
			for j := range jobs {
				idle.Add(-1)
				publish(client, o, room, j, steps[j.step])
				idle.Add(1)
			}
		})
	}
	for idle.Load() < int64(o.workers) {
		time.Sleep(time.Millisecond)
	}
	return jobs, func() { close(jobs); workers.Wait() }
}

// pace offers step k's publishes to the workers when each is due, from
// start, counting those no worker was free for as skipped.
func pace(ctx context.Context, st *stepCounts, k int, start time.Time, jobs chan<- job) {
	n := int64(st.rate * st.seconds)
	var seq int64
	for i := range n {
		due := start.Add(time.Duration(float64(i) / st.rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			return
		}
		st.due++
		select {
		case jobs <- job{step: k, seq: seq}:
			st.handed++
			seq++
		default:
			st.skipped++
		}
	}
}

// With --publishers-apart, the generator starts itself again as the
// publishers' process: these variables give the child the room and the
// start of the schedule (Unix nanoseconds); it prints its counts as JSON.
const (
	envRoom  = "INDEP_PUBLISHERS_ROOM"
	envStart = "INDEP_PUBLISHERS_START"
)

// childStep is what the publishers' process counted in one step.
type childStep struct {
	Due, Handed, Skipped, Accepted, Failed int64
	FirstError                             string
	PubWrite, PubServer, PubWake           sparseHistogram
}

// sparseHistogram carries a histogram's non-empty buckets between the
// processes.
type sparseHistogram struct {
	Buckets [][2]int64 // index, count
	Max     int64
}

func (h *histogram) sparse() sparseHistogram {
	out := sparseHistogram{Max: h.max.Load()}
	for i := range h.buckets {
		if n := h.buckets[i].Load(); n > 0 {
			out.Buckets = append(out.Buckets, [2]int64{int64(i), int64(n)})
		}
	}
	return out
}

func (h *histogram) add(s sparseHistogram) {
	for _, b := range s.Buckets {
		if b[0] >= 0 && b[0] < int64(len(h.buckets)) {
			h.buckets[b[0]].Add(uint32(b[1]))
		}
	}
	raiseTo(&h.max, s.Max)
}

// runPublishers is the publishers' process: the same steps from the start
// its parent gave, then the counts on standard output.
func runPublishers(ctx context.Context, o options) error {
	room := os.Getenv(envRoom)
	ns, err := strconv.ParseInt(os.Getenv(envStart), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: %w", envStart, err)
	}
	start := time.Unix(0, ns)
	steps := newSteps(o)
	jobs, stop := startPublishers(o, room, steps)
	for k, st := range steps {
		stepStart := start.Add(stepOffset(steps, k))
		time.Sleep(time.Until(stepStart))
		pace(ctx, st, k, stepStart, jobs)
		if ctx.Err() != nil {
			break
		}
	}
	stop()
	out := make([]childStep, len(steps))
	for k, st := range steps {
		out[k] = childStep{Due: st.due, Handed: st.handed, Skipped: st.skipped, Accepted: st.accepted.Load(), Failed: st.failed.Load(),
			PubWrite: st.pubWrite.sparse(), PubServer: st.pubServer.sparse(), PubWake: st.pubWake.sparse()}
		if e := st.firstError.Load(); e != nil {
			out[k].FirstError = *e
		}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// publisherChild is the publishers' process, seen from the receivers'.
type publisherChild struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func startPublisherChild(room string, start time.Time) (*publisherChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("publishers' process: %w", err)
	}
	c := &publisherChild{cmd: exec.Command(exe, os.Args[1:]...)}
	c.cmd.Env = append(os.Environ(), envRoom+"="+room, envStart+"="+strconv.FormatInt(start.UnixNano(), 10))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, os.Stderr
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("publishers' process: %w", err)
	}
	return c, nil
}

func (c *publisherChild) pid() int { return c.cmd.Process.Pid }

// kill stops the process if it still runs (the receivers' side failed).
func (c *publisherChild) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
}

// wait waits for the publishers to finish and adds their counts to steps.
func (c *publisherChild) wait(steps []*stepCounts) error {
	if err := c.cmd.Wait(); err != nil {
		return fmt.Errorf("publishers' process: %w", err)
	}
	var in []childStep
	if err := json.Unmarshal(c.out.Bytes(), &in); err != nil || len(in) != len(steps) {
		return fmt.Errorf("publishers' process: %d steps in its answer, want %d (%v)", len(in), len(steps), err)
	}
	for k, cs := range in {
		st := steps[k]
		st.due, st.handed, st.skipped = cs.Due, cs.Handed, cs.Skipped
		st.accepted.Store(cs.Accepted)
		st.failed.Store(cs.Failed)
		if cs.FirstError != "" {
			e := cs.FirstError
			st.firstError.Store(&e)
		}
		st.pubWrite.add(cs.PubWrite)
		st.pubServer.add(cs.PubServer)
		st.pubWake.add(cs.PubWake)
		fmt.Fprintf(os.Stderr, "indep: step %d (%g msg/s): handed %d skipped %d (publishers' process)\n", k, st.rate, st.handed, st.skipped)
	}
	return nil
}

// startTrace starts a runtime trace of the generator itself into the file
// INDEP_TRACE names, if any, for INDEP_TRACE_SECONDS (default 3) from the
// start of the last step, to see where its own goroutines wait.
func startTrace() (stop func()) {
	path := os.Getenv("INDEP_TRACE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		return func() {}
	}
	secs, err := strconv.ParseFloat(os.Getenv("INDEP_TRACE_SECONDS"), 64)
	if err != nil || secs <= 0 {
		secs = 3
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return func() {}
	}
	t := time.AfterFunc(time.Duration(secs*float64(time.Second)), trace.Stop)
	return func() {
		t.Stop()
		trace.Stop()
		f.Close()
	}
}

// connect opens connection i and joins room.
func connect(ctx context.Context, o options, i int, room string) (*websocket.Conn, error) {
	user := fmt.Sprintf("indep-u%d", i)
	claims := jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(o.secret))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, _, err := websocket.DefaultDialer.DialContext(ctx, o.urls[i%len(o.urls)], nil)
	if err != nil {
		return nil, err
	}
	c.SetPingHandler(func(data string) error { return answerPing(c, data) })
	deadline, _ := ctx.Deadline()
	_ = c.SetReadDeadline(deadline)
	steps := []struct {
		send string
		want string // a substring of the answer that completes the step
	}{
		{fmt.Sprintf(`{"type":"hello","token":%q,"batch":true}`, token), `"type":"welcome"`},
		{fmt.Sprintf(`{"type":"join","id":1,"room":%q}`, room), `"type":"joined"`},
	}
	if o.target == "centrifugo" {
		steps[0].send, steps[0].want = fmt.Sprintf(`{"id":1,"connect":{"token":%q}}`, token), `"id":1,`
		steps[1].send, steps[1].want = fmt.Sprintf(`{"id":2,"subscribe":{"channel":"bench:%s"}}`, room), `"id":2,`
	}
	for _, s := range steps {
		if err := c.WriteMessage(websocket.TextMessage, []byte(s.send)); err != nil {
			c.Close()
			return nil, err
		}
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				c.Close()
				return nil, err
			}
			if bytes.Contains(msg, []byte(`"error"`)) {
				c.Close()
				return nil, fmt.Errorf("handshake answer: %s", msg)
			}
			if bytes.Contains(msg, []byte(s.want)) {
				break
			}
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// pongTimeout bounds the answer to a server's WebSocket ping.
const pongTimeout = 5 * time.Second

// answerPing answers a ping within pongTimeout. gorilla/websocket's default
// handler allows one second and, when a busy generator gets to the write
// later, ends the connection with a bare "i/o timeout": the generator's
// doing, not the server's. Past pongTimeout the connection still ends, with
// a reason that says so.
func answerPing(c *websocket.Conn, data string) error {
	err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(pongTimeout))
	var ne net.Error
	switch {
	case err == nil || errors.Is(err, websocket.ErrCloseSent):
		return nil
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("the generator could not answer a ping within %v: %w", pongTimeout, err)
	default:
		return err
	}
}

var (
	sndKey = []byte(`"snd":`)
	stpKey = []byte(`"stp":`)
	seqKey = []byte(`"n":`)
)

// read counts the benchmark messages of one connection until it ends, and
// returns how it ended.
func read(c *websocket.Conn, inst int, steps []*stepCounts, total *atomic.Int64) error {
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		for line := range bytes.SplitSeq(msg, []byte{'\n'}) {
			if string(line) == "{}" { // Centrifugo's application ping
				_ = c.WriteMessage(websocket.TextMessage, []byte("{}"))
				continue
			}
			sent, ok1 := scanInt(line, sndKey)
			step, ok2 := scanInt(line, stpKey)
			if !ok1 || !ok2 || step < 0 || int(step) >= len(steps) {
				continue
			}
			st := steps[step]
			st.received.Add(1)
			total.Add(1)
			st.hist.record(time.Duration(now - sent))
			if seq, ok := scanInt(line, seqKey); ok && seq < int64(len(st.msgs)) {
				m := &st.msgs[seq]
				m.sent.Store(sent)
				m.count[inst].Add(1)
				raiseTo(&m.maxLat[inst], now-sent)
			}
		}
	}
}

// scanInt finds key in b and parses the integer after it.
func scanInt(b, key []byte) (int64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	var v int64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	return v, n > 0
}

// publish sends one message through instance seq mod N and counts the
// answer.
func publish(client *http.Client, o options, room string, j job, st *stepCounts) {
	data := fmt.Sprintf(`{"stp":%d,"n":%d,"snd":%d,"pad":"`, j.step, j.seq, time.Now().UnixNano())
	data += strings.Repeat("x", max(o.payload-len(data)-2, 0)) + `"}`
	var body string
	if o.target == "centrifugo" {
		body = fmt.Sprintf(`{"channel":"bench:%s","data":%s}`, room, data)
	} else {
		body = fmt.Sprintf(`{"room":%q,"data":%s}`, room, data)
	}
	req, err := http.NewRequest(http.MethodPost, o.apis[j.seq%int64(len(o.apis))]+"/api/publish", strings.NewReader(body))
	if err != nil {
		st.fail(err.Error())
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if o.target == "centrifugo" {
		req.Header.Set("X-API-Key", o.apiKey)
	} else {
		req.Header.Set("Authorization", "Bearer "+o.apiKey)
	}
	var start, wrote, firstByte time.Time
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		WroteRequest:         func(httptrace.WroteRequestInfo) { wrote = time.Now() },
		GotFirstResponseByte: func() { firstByte = time.Now() },
	}))
	start = time.Now()
	resp, err := client.Do(req)
	if err != nil {
		st.fail(err.Error())
		return
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if done := time.Now(); !wrote.IsZero() && !firstByte.IsZero() {
		st.pubWrite.record(wrote.Sub(start))
		st.pubServer.record(firstByte.Sub(wrote))
		st.pubWake.record(done.Sub(firstByte))
	}
	if resp.StatusCode != http.StatusOK || bytes.Contains(answer, []byte(`"error"`)) {
		st.fail(fmt.Sprintf("HTTP %d %s", resp.StatusCode, answer))
		return
	}
	st.accepted.Add(1)
}

func (st *stepCounts) fail(msg string) {
	st.failed.Add(1)
	st.firstError.CompareAndSwap(nil, &msg)
}

// cpu sums utime+stime of pids, in seconds (fields 14 and 15 of
// /proc/<pid>/stat, after the command name in parentheses).
func cpu(pids []int) float64 {
	var sum float64
	for _, pid := range pids {
		if pid <= 0 {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		sum += (ut + stime) / 100
	}
	return sum
}

// histogram counts latencies in 100 µs buckets up to 2 minutes.
type histogram struct {
	buckets []atomic.Uint32
	max     atomic.Int64
}

const bucketWidth = 100 * time.Microsecond

func newHistogram(limit time.Duration) *histogram {
	return &histogram{buckets: make([]atomic.Uint32, int(limit/bucketWidth)+1)}
}

// count is how many values h holds.
func (h *histogram) count() int64 {
	var n int64
	for i := range h.buckets {
		n += int64(h.buckets[i].Load())
	}
	return n
}

func (h *histogram) record(d time.Duration) {
	i := min(max(int(d/bucketWidth), 0), len(h.buckets)-1)
	h.buckets[i].Add(1)
	raiseTo(&h.max, int64(d))
}

// raiseTo sets a to v if v is larger, against concurrent raises.
func raiseTo(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// quantile returns the upper edge of the bucket holding quantile q, in ms.
func (h *histogram) quantile(q float64, count int64) float64 {
	if count == 0 {
		return 0
	}
	want := int64(q*float64(count) + 0.5)
	var seen int64
	for i := range h.buckets {
		seen += int64(h.buckets[i].Load())
		if seen >= max(want, 1) {
			return float64(time.Duration(i+1)*bucketWidth) / 1e6
		}
	}
	return float64(h.max.Load()) / 1e6
}

type stepJSON struct {
	Rate               float64 `json:"rate"`
	Warmup             bool    `json:"warmup,omitempty"`
	Due                int64   `json:"due"`
	Skipped            int64   `json:"skipped"`
	Accepted           int64   `json:"accepted"`
	Failed             int64   `json:"failed"`
	AcceptedPerSec     float64 `json:"acceptedPerSec"`
	DeliveredPerSec    float64 `json:"deliveredPerSec"`
	Received           int64   `json:"received"`
	Lost               int64   `json:"lost"`
	P50, P90, P99, Max float64
	ServerCores        float64 `json:"serverCores"`
	GeneratorCores     float64 `json:"benchCores"`
	PerCoreSecond      float64 `json:"deliveriesPerCoreSecond"`
	PerCoreWithRedis   float64 `json:"deliveriesPerCoreSecondWithBroker"`
	FirstError         string  `json:"firstError,omitempty"`
	// Publish round-trip parts, p50 and p99 in ms: see stepCounts.
	PubWriteP50, PubWriteP99   float64
	PubServerP50, PubServerP99 float64
	PubWakeP50, PubWakeP99     float64
}

func report(o options, steps []*stepCounts) error {
	out := make([]stepJSON, len(steps))
	fmt.Printf("**indep, %s** (independent generator): 1 room × %d members, %d HTTP workers, %d-byte payload, steps back to back\n\n", o.target, o.members, o.workers, o.payload)
	fmt.Println("| rate msg/s | skipped | accepted/s | failed | deliveries/s | lost | p50 ms | p90 ms | p99 ms | max ms | server cores | deliveries/core-s | incl. redis | generator cores |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i, st := range steps {
		recv := st.received.Load()
		acc := st.accepted.Load()
		s := stepJSON{
			Rate: st.rate, Warmup: i == 0, Due: st.due, Skipped: st.skipped, Accepted: acc, Failed: st.failed.Load(),
			AcceptedPerSec: float64(acc) / st.seconds, DeliveredPerSec: float64(st.arrived) / st.windowSeconds,
			Received: recv, Lost: max(acc*int64(o.members)-recv, 0),
			P50: st.hist.quantile(0.5, recv), P90: st.hist.quantile(0.9, recv), P99: st.hist.quantile(0.99, recv),
			Max: float64(st.hist.max.Load()) / 1e6, ServerCores: st.serverCPU / st.windowSeconds, GeneratorCores: st.selfCPU / st.windowSeconds,
		}
		if st.serverCPU > 0 {
			s.PerCoreSecond = float64(st.arrived) / st.serverCPU
		}
		if st.serverCPU+st.redisCPU > 0 {
			s.PerCoreWithRedis = float64(st.arrived) / (st.serverCPU + st.redisCPU)
		}
		if e := st.firstError.Load(); e != nil {
			s.FirstError = *e
		}
		n := st.pubServer.count()
		s.PubWriteP50, s.PubWriteP99 = st.pubWrite.quantile(0.5, n), st.pubWrite.quantile(0.99, n)
		s.PubServerP50, s.PubServerP99 = st.pubServer.quantile(0.5, n), st.pubServer.quantile(0.99, n)
		s.PubWakeP50, s.PubWakeP99 = st.pubWake.quantile(0.5, n), st.pubWake.quantile(0.99, n)
		out[i] = s
		rate := strconv.FormatFloat(s.Rate, 'f', -1, 64)
		if s.Warmup {
			rate += " (warm-up)"
		}
		fmt.Printf("| %s | %d | %.0f | %d | %.0f | %d | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f | %.0f | %.2f |\n", rate, s.Skipped, s.AcceptedPerSec,
			s.Failed, s.DeliveredPerSec, s.Lost, s.P50, s.P90, s.P99, s.Max, s.ServerCores, s.PerCoreSecond, s.PerCoreWithRedis, s.GeneratorCores)
	}
	fmt.Println("\nWhere a publish's round trip goes (p50 / p99 ms): written = request start to request written; answered = written to the first answer byte read (network, server, and the client transport's reader goroutine being scheduled); woken = first byte to the worker goroutine having the answer.")
	fmt.Println()
	fmt.Println("| rate msg/s | written p50 | p99 | answered p50 | p99 | woken p50 | p99 |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, s := range out {
		fmt.Printf("| %g | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", s.Rate, s.PubWriteP50, s.PubWriteP99, s.PubServerP50, s.PubServerP99, s.PubWakeP50, s.PubWakeP99)
	}
	for _, s := range out {
		if s.FirstError != "" {
			fmt.Printf("\nstep %v msg/s: %d publishes failed, first: %s\n", s.Rate, s.Failed, s.FirstError)
		}
	}
	if o.msgLog != "" {
		if err := writeMsgLog(o.msgLog, steps); err != nil {
			return err
		}
	}
	if o.jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(o.jsonOut, b, 0o644)
}

// writeMsgLog writes one CSV line per message that arrived anywhere.
func writeMsgLog(path string, steps []*stepCounts) error {
	var b strings.Builder
	b.WriteString("step,seq,sent_unix_ns,count_a,max_ms_a,count_b,max_ms_b\n")
	for k, st := range steps {
		for seq := range st.msgs {
			m := &st.msgs[seq]
			if m.sent.Load() == 0 {
				continue
			}
			fmt.Fprintf(&b, "%d,%d,%d,%d,%.2f,%d,%.2f\n", k, seq, m.sent.Load(), m.count[0].Load(), float64(m.maxLat[0].Load())/1e6,
				m.count[1].Load(), float64(m.maxLat[1].Load())/1e6)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

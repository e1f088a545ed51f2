// Command tracestat reads a runtime trace of a `switchboard serve` instance
// (from the profiling build's /debug/pprof/trace, see
// scripts/profile/build.sh) and tells where the time of HTTP API requests
// goes: waiting for a P (runnable), running, waiting for Redis (blocked
// under rueidis), and other waits. It also sums how long the other busy
// goroutines (flusher workers, the broker's dispatcher, rueidis's pipe
// goroutines, session writers) waited runnable, which is what a request's
// runnable time competes with.
//
// With -waits it prints instead where net/http's connection goroutines
// block, most frequent first: what to adjust when a new Go or server
// version blocks somewhere these patterns do not know.
//
// A request starts when its connection goroutine, parked waiting for the
// next request (net/http's conn.serve in bufio Peek or readRequest), is made
// runnable, and ends when it parks there again.
//
//	go run . /tmp/trace.out
//
// It lives in a module of its own so that golang.org/x/exp/trace is no
// dependency of Switchboard.
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

type gstate struct {
	state     trace.GoState
	since     trace.Time
	idle      bool // parked waiting for the next HTTP request
	inReq     bool
	reqStart  trace.Time
	parts     map[string]time.Duration
	lastBlock string // class of the current wait
	class     string // what kind of goroutine, from its stacks
}

type request struct {
	total time.Duration
	parts map[string]time.Duration
}

func main() {
	args := os.Args[1:]
	waits := len(args) == 2 && args[0] == "-waits"
	if waits {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: tracestat [-waits] TRACE")
		os.Exit(2)
	}
	f, err := os.Open(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gs := map[trace.GoID]*gstate{}
	var reqs []request
	runnableByClass := map[string]time.Duration{}
	runningByClass := map[string]time.Duration{}
	runs := map[string]int{}
	runnableCount := map[string]int{}
	var first, last trace.Time
	httpWaits := map[string]int{} // with -waits: where HTTP connection goroutines block
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			break
		}
		if first == 0 {
			first = ev.Time()
		}
		last = ev.Time()
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		g := gs[id]
		if g == nil {
			g = &gstate{state: from, since: ev.Time()}
			gs[id] = g
		}
		now := ev.Time()
		d := time.Duration(now - g.since)
		// Account the interval just ended.
		if g.since != 0 {
			switch g.state {
			case trace.GoRunnable:
				runnableByClass[g.class] += d
				runnableCount[g.class]++
			case trace.GoRunning:
				runningByClass[g.class] += d
				runs[g.class]++
			}
			if g.inReq {
				g.parts[partName(g.state, g.lastBlock)] += d
			}
		}
		// The transitioning goroutine's own stack: where it blocks, or,
		// at creation, where it starts. (ev.Stack() is the stack of
		// whoever caused the event, e.g. the goroutine that woke it.)
		stk := st.Stack.String()
		if c := classify(stk); c != "" && (g.class == "" || g.class == classHTTPOther || g.class == classTicker || strings.HasPrefix(g.class, "other: ")) {
			g.class = c
		} else if g.class == "" && stk != "" {
			g.class = "other: " + rootFunc(st.Stack)
		}
		if waits && to == trace.GoWaiting && strings.Contains(stk, "net/http.(*conn).serve") {
			httpWaits[stk]++
		}
		switch to {
		case trace.GoWaiting:
			idle := strings.Contains(stk, "net/http.(*conn).serve") &&
				!strings.Contains(stk, "ServeHTTP") &&
				(strings.Contains(stk, "bufio.(*Reader).Peek") || strings.Contains(stk, "net/http.(*conn).readRequest"))
			if g.inReq && idle {
				reqs = append(reqs, request{total: time.Duration(now - g.reqStart), parts: g.parts})
				g.inReq = false
			}
			g.idle = idle
			g.lastBlock = blockClass(stk, st.Reason)
		case trace.GoRunnable:
			if g.idle && from == trace.GoWaiting {
				g.inReq, g.reqStart, g.parts, g.idle = true, now, map[string]time.Duration{}, false
			}
		case trace.GoSyscall:
			g.lastBlock = "syscall"
		}
		g.state, g.since = to, now
	}
	if waits {
		keys := make([]string, 0, len(httpWaits))
		for k := range httpWaits {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return httpWaits[keys[i]] > httpWaits[keys[j]] })
		for _, k := range keys[:min(len(keys), 6)] {
			fmt.Printf("%d times:\n%s\n", httpWaits[k], k)
		}
		return
	}
	span := time.Duration(last - first)
	fmt.Printf("trace span %v, %d API requests completed\n\n", span.Round(time.Millisecond), len(reqs))
	if len(reqs) > 0 {
		report(reqs)
	}
	fmt.Printf("\nRunnable (waiting for a P) and running time by goroutine kind, over the whole trace:\n\n")
	fmt.Printf("| goroutines | running s | runs | mean run µs | runnable s | runnable waits | mean wait µs |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	classes := map[string]bool{}
	for c := range runnableByClass {
		classes[c] = true
	}
	for c := range runningByClass {
		classes[c] = true
	}
	keys := make([]string, 0, len(classes))
	for c := range classes {
		keys = append(keys, c)
	}
	sort.Slice(keys, func(i, j int) bool { return runningByClass[keys[i]] > runningByClass[keys[j]] })
	for _, c := range keys {
		name := c
		if name == "" {
			name = "other"
		}
		mean := 0.0
		if n := runnableCount[c]; n > 0 {
			mean = float64(runnableByClass[c].Microseconds()) / float64(n)
		}
		meanRun := 0.0
		if n := runs[c]; n > 0 {
			meanRun = float64(runningByClass[c].Microseconds()) / float64(n)
		}
		fmt.Printf("| %s | %.3f | %d | %.0f | %.3f | %d | %.0f |\n", name, runningByClass[c].Seconds(), runs[c], meanRun, runnableByClass[c].Seconds(), runnableCount[c], mean)
	}
}

// partName names what a request goroutine was doing in a state.
func partName(s trace.GoState, block string) string {
	switch s {
	case trace.GoRunnable:
		return "runnable (waiting for a P)"
	case trace.GoRunning:
		return "running"
	case trace.GoSyscall:
		return "syscall"
	case trace.GoWaiting:
		return "blocked: " + block
	}
	return "other"
}

// blockClass names what a goroutine blocks on, from its stack.
func blockClass(stk, reason string) string {
	switch {
	case strings.Contains(stk, "rueidis"):
		return "Redis (rueidis answer)"
	case strings.Contains(stk, "net/http") && strings.Contains(stk, "Read"):
		return "reading the request"
	case strings.Contains(stk, "Write"):
		return "writing the answer"
	}
	if reason != "" {
		return reason
	}
	return "other"
}

// rootFunc names the outermost function of the first non-empty stack.
func rootFunc(stacks ...trace.Stack) string {
	for _, s := range stacks {
		last := ""
		for f := range s.Frames() {
			last = f.Func
		}
		if last != "" {
			return last
		}
	}
	return "?"
}

// classTicker is a hub ticker goroutine not yet seen at work.
const classTicker = "hub: ticker"

// classHTTPOther is an HTTP connection goroutine not (yet) seen in an API
// handler.
const classHTTPOther = "HTTP connections (other)"

// classify names a goroutine from a stack it showed.
func classify(stk string) string {
	switch {
	case strings.Contains(stk, "net/http.(*conn).serve") && strings.Contains(stk, "/api."):
		return "HTTP API requests"
	// Names of the hub before the transport rewrite, and of package
	// transport after it.
	case strings.Contains(stk, "hub.(*flusher).work") || strings.Contains(stk, "transport.(*flusher).work"):
		return "flusher workers"
	case strings.Contains(stk, "hub.(*Session).writeLoop") || strings.Contains(stk, "transport.(*Conn).writeLoop"):
		return "session writers"
	case strings.Contains(stk, "broker/redis.(*dispatcher)"):
		return "broker dispatcher"
	case strings.Contains(stk, "rueidis") && strings.Contains(stk, "_backgroundWrite"):
		return "rueidis writer"
	case strings.Contains(stk, "rueidis") && strings.Contains(stk, "_backgroundRead"):
		return "rueidis reader"
	case strings.Contains(stk, "hub.(*Hub).awaitFrames") || strings.Contains(stk, "hub.(*Hub).readFrames") ||
		strings.Contains(stk, "transport.(*Conn).readLoop") || strings.Contains(stk, "transport.(*Conn).park"):
		return "session readers"
	case strings.Contains(stk, "runtime.gcBgMarkWorker"):
		return "GC mark workers"
	case strings.Contains(stk, "hub.(*Hub).saveStates"):
		return "hub: session-state saves"
	case strings.Contains(stk, "hub.(*Hub).register"):
		return "hub: registry heartbeat"
	case strings.Contains(stk, "hub.(*Hub).heartbeat"):
		return "hub: ping heartbeat"
	case strings.Contains(stk, "hub.(*Hub).every"):
		return classTicker
	case strings.Contains(stk, "net/http.(*conn).serve"):
		return classHTTPOther
	// Load generators (bench/indep, switchboard bench):
	case strings.Contains(stk, "net/http.(*persistConn).readLoop"):
		return "client: HTTP transport readers"
	case strings.Contains(stk, "net/http.(*persistConn).writeLoop"):
		return "client: HTTP transport writers"
	case strings.Contains(stk, "main.publish") || strings.Contains(stk, "bench.(*apiPublisher)"):
		return "client: API publish workers"
	case strings.Contains(stk, "main.read") || strings.Contains(stk, "bench.(*conn).readLoop"):
		return "client: WebSocket receivers"
	}
	return ""
}

func report(reqs []request) {
	totals := make([]time.Duration, len(reqs))
	sums := map[string]time.Duration{}
	var all time.Duration
	for i, q := range reqs {
		totals[i] = q.total
		all += q.total
		for k, v := range q.parts {
			sums[k] += v
		}
	}
	slices.Sort(totals)
	pct := func(p float64) time.Duration { return totals[min(int(p*float64(len(totals))), len(totals)-1)] }
	fmt.Printf("server-side request time: mean %v, p50 %v, p90 %v, p99 %v, max %v\n\n",
		(all / time.Duration(len(reqs))).Round(time.Microsecond), pct(0.5).Round(time.Microsecond), pct(0.9).Round(time.Microsecond),
		pct(0.99).Round(time.Microsecond), totals[len(totals)-1].Round(time.Microsecond))
	keys := make([]string, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return sums[keys[i]] > sums[keys[j]] })
	fmt.Printf("| part of a request | mean µs | share |\n| --- | ---: | ---: |\n")
	for _, k := range keys {
		fmt.Printf("| %s | %.0f | %.1f %% |\n", k, float64(sums[k].Microseconds())/float64(len(reqs)), 100*float64(sums[k])/float64(all))
	}
	// The slowest tenth: where does their time go?
	slow := slices.Clone(reqs)
	sort.Slice(slow, func(i, j int) bool { return slow[i].total > slow[j].total })
	slow = slow[:max(len(slow)/10, 1)]
	ssum := map[string]time.Duration{}
	var sall time.Duration
	for _, q := range slow {
		sall += q.total
		for k, v := range q.parts {
			ssum[k] += v
		}
	}
	fmt.Printf("\nslowest 10 %% (%d requests, mean %v):\n\n| part | mean µs | share |\n| --- | ---: | ---: |\n", len(slow), (sall / time.Duration(len(slow))).Round(time.Microsecond))
	for _, k := range keys {
		fmt.Printf("| %s | %.0f | %.1f %% |\n", k, float64(ssum[k].Microseconds())/float64(len(slow)), 100*float64(ssum[k])/float64(sall))
	}
}

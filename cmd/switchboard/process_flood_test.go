package main

// Floods (issue 12): thousands of connections that never say hello, and
// thousands of connect/hello/disconnect cycles of every shape, against a
// real instance process. What they must leave behind is nothing: the
// file descriptors, goroutines and memory the instance had before.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

const (
	// floodFDSlack is how many more open file descriptors than before a
	// flood an instance may hold once the flood is over: the test's own
	// HTTP requests (/metrics, /readyz) may leave a keep-alive connection
	// or two open, and the runtime may have opened an epoll or timer
	// descriptor since. A leak of the flood's sockets would be thousands.
	floodFDSlack = 8
	// floodGoroutineSlack is how many more goroutines than before a flood
	// an instance may run once its sessions are gone: the same few
	// connections of the test's own HTTP requests, and the broker's
	// background work caught at a different moment. A leak of one per
	// session would be thousands.
	floodGoroutineSlack = 12
	// floodHeapSlack is how much more live heap (go_memstats_heap_inuse_bytes
	// right after a forced GC) an instance may hold after the cycles than
	// before them. The embedded broker keeps the state of every ended
	// session for hello.session for the session TTL (5 minutes), about
	// 700 bytes each: ~1.8 MiB for the ~2,500 sessions the cycles welcome,
	// measured. 5,000 leaked connections of even 2 KiB more each would be
	// 10 MiB.
	floodHeapSlack = 6 << 20
	// floodRSSSlack is how much more resident memory an instance may hold
	// after the cycles: the Go runtime returns freed pages to the system
	// only gradually (the background scavenger), so RSS lags the heap; the
	// heap check above is the tight one.
	floodRSSSlack = 48 << 20
	// floodGhostSlack is how many sessions switchboard_sessions may still
	// count once every cycle's connection is gone: none. (This test found
	// connections that never ended: a socket closed while its reader went
	// idle could be armed in the poller after its descriptor number was
	// given to a new socket, so its end was never heard of.)
	floodGhostSlack = 0
)

// openFDs returns the number of open file descriptors of process pid (the
// entries of /proc/<pid>/fd).
func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, fmt.Errorf("count open files: %w", err)
	}
	return len(ents), nil
}

// residentBytes returns the resident memory (VmRSS) of process pid.
func residentBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read memory status: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc/<pid>/status")
}

// metric returns the value of the unlabelled sample called name on the
// instance's /metrics page.
func (in *instance) metric(name string) (float64, error) {
	code, body, err := in.request(http.MethodGet, "/metrics", nil)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics on %s = %d", in.name, code)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s on %s: %w", name, in.name, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("metric %s: not on the /metrics page of %s", name, in.name)
}

// mustMetric is metric failing the test on an error.
func (in *instance) mustMetric(t testing.TB, name string) float64 {
	t.Helper()
	v, err := in.metric(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// liveHeap forces a garbage collection in the instance (GET
// /debug/pprof/heap?gc=1, served in --dev mode) and returns
// go_memstats_heap_inuse_bytes right after it: the memory the instance
// still holds, without the garbage it has not collected yet.
func (in *instance) liveHeap(t testing.TB) float64 {
	t.Helper()
	code, _, err := in.request(http.MethodGet, "/debug/pprof/heap?gc=1", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("force a GC on %s through /debug/pprof/heap?gc=1: %d %v", in.name, code, err)
	}
	return in.mustMetric(t, "go_memstats_heap_inuse_bytes")
}

// quietFDs returns the instance's open descriptors after the test's own
// idle HTTP connections to it are closed and the instance noticed.
func quietFDs(t testing.TB, in *instance) int {
	t.Helper()
	httpClient.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	n, err := openFDs(in.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// upgradeRequest is a WebSocket upgrade request for GET /ws on addr.
func upgradeRequest(addr string) string {
	return "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// rawUpgrade dials addr and completes a WebSocket handshake by hand,
// sending nothing after it. It returns the connection and the reader that
// holds what the server sent after its answer.
func rawUpgrade(addr string, timeout time.Duration) (net.Conn, *bufio.Reader, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, upgradeRequest(addr)); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("write upgrade: %w", err)
	}
	br := bufio.NewReaderSize(conn, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("read upgrade answer: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, nil, fmt.Errorf("upgrade answered %s", resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, nil
}

// readCloseFrame reads server frames (unmasked) from br until a close
// frame and returns its code (1005 if it carries none).
func readCloseFrame(br *bufio.Reader) (int, error) {
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return 0, fmt.Errorf("read frame header: %w", err)
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return 0, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return 0, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > 1<<20 {
			return 0, fmt.Errorf("frame of %d bytes before the close frame", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return 0, fmt.Errorf("read frame payload: %w", err)
		}
		if h[0]&0x0f == 0x8 {
			if len(payload) < 2 {
				return 1005, nil
			}
			return int(binary.BigEndian.Uint16(payload)), nil
		}
	}
}

// TestProcess_FloodSilentConnections: 5,000 connections upgrade to
// WebSocket and never send hello. Each is closed with 4003 once
// --hello-timeout (4s here) has passed since its upgrade, not much later,
// and the instance's open file descriptors (/proc/<pid>/fd) come back to
// what they were before, within floodFDSlack.
func TestProcess_FloodSilentConnections(t *testing.T) {
	skipIfShort(t)
	const (
		conns        = 5000
		helloTimeout = 4 * time.Second
		dialers      = 64
	)
	in := startInstance(t, "silent", "--hello-timeout", helloTimeout.String())
	pid := in.cmd.Process.Pid
	before := quietFDs(t, in)

	// The peak: sampled while the flood runs.
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n, err := openFDs(pid); err == nil && int64(n) > peak.Load() {
				peak.Store(int64(n))
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	type outcome struct {
		code     int
		after    time.Duration // from the upgrade answer to the close frame
		err      error
		upgraded bool
	}
	results := make([]outcome, conns)
	sem := make(chan struct{}, dialers)
	var wg sync.WaitGroup
	began := time.Now()
	for i := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, br, err := rawUpgrade(in.addr, 20*time.Second)
			<-sem
			if err != nil {
				results[i].err = err
				return
			}
			defer conn.Close()
			upgraded := time.Now()
			results[i].upgraded = true
			_ = conn.SetReadDeadline(upgraded.Add(helloTimeout + 30*time.Second))
			code, err := readCloseFrame(br)
			results[i] = outcome{code: code, after: time.Since(upgraded), err: err, upgraded: true}
			if err == nil {
				// The server closes the TCP connection after its close
				// frame; wait for that, as a client would.
				_, _ = io.Copy(io.Discard, br)
			}
		}()
	}
	dialled := time.Since(began)
	wg.Wait()
	close(stopSampling)
	<-sampled

	var failures []string
	var shortest, longest time.Duration
	for i, r := range results {
		switch {
		case r.err != nil:
			failures = append(failures, fmt.Sprintf("conn %d (upgraded %v): %v", i, r.upgraded, r.err))
		case r.code != 4003:
			failures = append(failures, fmt.Sprintf("conn %d closed with %d, want 4003", i, r.code))
		default:
			if shortest == 0 || r.after < shortest {
				shortest = r.after
			}
			longest = max(longest, r.after)
		}
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d connections did not get 4003; the first: %s", len(failures), conns, strings.Join(failures[:min(5, len(failures))], "; "))
	}
	// The server's timer starts before the client reads the 101 (on a
	// loaded machine, a good while before), so a close may come earlier
	// than helloTimeout after it; but never right away.
	if shortest < helloTimeout/2 {
		t.Errorf("a silent connection was closed %v after its upgrade, before --hello-timeout %v", shortest, helloTimeout)
	}
	if longest > helloTimeout+20*time.Second {
		t.Errorf("a silent connection was closed only %v after its upgrade (--hello-timeout %v)", longest, helloTimeout)
	}

	var after int
	deadline := time.Now().Add(15 * time.Second)
	for {
		after = quietFDs(t, in)
		if after <= before+floodFDSlack || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%d silent connections (dialled in %v): closed with 4003 after %v to %v; instance fds %d before, %d at peak, %d after",
		conns, dialled.Round(time.Millisecond), shortest.Round(time.Millisecond), longest.Round(time.Millisecond), before, peak.Load(), after)
	if after > before+floodFDSlack {
		t.Errorf("the instance holds %d open files after the flood, %d before (slack %d)", after, before, floodFDSlack)
	}
	// The sampler must have seen the flood, or the check above proves
	// nothing: at least a fifth of it open at once.
	if peak.Load() < int64(before+conns/5) {
		t.Errorf("peak of %d open files with %d before: the flood never held %d connections at once", peak.Load(), before, conns/5)
	}
	if in.hasExited() {
		t.Fatalf("the instance exited during the flood: %v", in.state)
	}
}

// cycleKinds are the ways TestProcess_FloodCycles ends a connection.
var cycleKinds = []string{
	"clean close after welcome",
	"reset (RST) after welcome and a join",
	"TCP close after welcome, no close frame",
	"TCP close in the middle of the upgrade request",
	"TCP close after the upgrade, inside a half-sent hello",
	"TCP close after the upgrade, before hello",
}

// floodCycle runs one connect/…/disconnect cycle of the given kind
// against the instance.
func floodCycle(in *instance, kind, i int) error {
	const timeout = 20 * time.Second
	hello := wstest.Frame("hello", "user", "cycler-"+strconv.Itoa(i%50))
	switch kind {
	case 0, 1, 2:
		d := *wstest.Dialer()
		d.HandshakeTimeout = timeout
		ws, _, err := d.Dial(in.ws, nil)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(timeout))
		if err := ws.WriteMessage(websocket.TextMessage, []byte(hello)); err != nil {
			return fmt.Errorf("hello: %w", err)
		}
		if err := expectType(ws, protocol.TypeWelcome); err != nil {
			return err
		}
		switch kind {
		case 0:
			msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
			if err := ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(timeout)); err != nil {
				return fmt.Errorf("close: %w", err)
			}
			// Read until the server's close frame answers ours.
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
						return nil
					}
					return fmt.Errorf("after the close frame: %w", err)
				}
			}
		case 1:
			if err := ws.WriteMessage(websocket.TextMessage, []byte(wstest.Frame("join", "id", 1, "room", "cycles-"+strconv.Itoa(i%20)))); err != nil {
				return fmt.Errorf("join: %w", err)
			}
			if err := expectType(ws, protocol.TypeJoined); err != nil {
				return err
			}
			_ = ws.NetConn().(*net.TCPConn).SetLinger(0)
		}
		return nil
	case 3:
		conn, err := net.DialTimeout("tcp", in.addr, timeout)
		if err != nil {
			return err
		}
		req := upgradeRequest(in.addr)
		_, err = io.WriteString(conn, req[:len(req)/2])
		conn.Close()
		return err
	default:
		conn, _, err := rawUpgrade(in.addr, timeout)
		if err != nil {
			return err
		}
		defer conn.Close()
		if kind == 4 {
			f := wstest.MaskedFrame(0x81, []byte(hello))
			_, err = conn.Write(f[:len(f)/2])
		}
		return err
	}
}

// expectType reads one frame and wants a server frame of type typ.
func expectType(ws *websocket.Conn, typ string) error {
	_, b, err := ws.ReadMessage()
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", typ, err)
	}
	fs, err := protocol.DecodeServer(b)
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", typ, err)
	}
	if len(fs) != 1 || fs[0].Type != typ {
		return fmt.Errorf("got %s, want %s", b, typ)
	}
	return nil
}

// TestProcess_FloodCycles: 5,000 connect/disconnect cycles of six kinds
// (clean closes, resets, plain TCP closes after welcome, closes in the
// middle of the upgrade request, inside a half-sent hello and before
// hello) leave the instance's goroutines (go_goroutines), live heap
// (go_memstats_heap_inuse_bytes after a forced GC) and resident memory
// where they were before, within the slacks documented above.
func TestProcess_FloodCycles(t *testing.T) {
	skipIfShort(t)
	const (
		cycles  = 5000
		workers = 24
	)
	in := startInstance(t, "cycles", "--hello-timeout", "2s")
	pid := in.cmd.Process.Pid
	run := func(from, to int) []string {
		var next atomic.Int64
		next.Store(int64(from))
		var mu sync.Mutex
		var errs []string
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= to {
						return
					}
					kind := i % len(cycleKinds)
					if err := floodCycle(in, kind, i); err != nil {
						mu.Lock()
						errs = append(errs, fmt.Sprintf("cycle %d (%s): %v", i, cycleKinds[kind], err))
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		return errs
	}
	// settled waits until no session is left and the instance runs at
	// most want goroutines (any number if want is 0), or 10s passed, and
	// returns how many it runs.
	settled := func(want float64) float64 {
		var g float64
		deadline := time.Now().Add(10 * time.Second)
		for {
			httpClient.CloseIdleConnections()
			g = in.mustMetric(t, "go_goroutines")
			if in.mustMetric(t, "switchboard_sessions") == 0 && (want == 0 || g <= want) || time.Now().After(deadline) {
				return g
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// A warm-up, so that what is made once (pools, the broker's rooms,
	// the runtime's arenas) is made before the baseline.
	if errs := run(0, 300); len(errs) > 0 {
		t.Fatalf("warm-up: %d cycles failed; the first: %s", len(errs), errs[0])
	}
	// The half-sent hellos and silent upgrades wait for --hello-timeout.
	time.Sleep(2500 * time.Millisecond)
	goroutines := settled(0)
	heap := in.liveHeap(t)
	rss, err := residentBytes(pid)
	if err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	errs := run(300, 300+cycles)
	took := time.Since(began)
	if len(errs) > 0 {
		t.Errorf("%d of %d cycles failed; the first: %s", len(errs), cycles, strings.Join(errs[:min(5, len(errs))], "; "))
	}
	time.Sleep(2500 * time.Millisecond)
	settling := time.Now()
	goroutinesAfter := settled(goroutines + floodGoroutineSlack)
	settle := time.Since(settling)
	heapAfter := in.liveHeap(t)
	rssAfter, err := residentBytes(pid)
	if err != nil {
		t.Fatal(err)
	}
	opened := in.mustMetric(t, "switchboard_sessions_opened_total")
	ghosts := in.mustMetric(t, "switchboard_sessions")
	t.Logf("%d cycles in %v (%d sessions welcomed in all, %.0f still counted): goroutines %.0f → %.0f (settled in %v), live heap %.1f → %.1f MiB, RSS %.1f → %.1f MiB",
		cycles, took.Round(time.Millisecond), int(opened), ghosts, goroutines, goroutinesAfter, settle.Round(time.Millisecond),
		heap/(1<<20), heapAfter/(1<<20), float64(rss)/(1<<20), float64(rssAfter)/(1<<20))
	if goroutinesAfter > goroutines+floodGoroutineSlack {
		t.Errorf("the instance runs %.0f goroutines after the cycles, %.0f before (slack %d)", goroutinesAfter, goroutines, floodGoroutineSlack)
	}
	if heapAfter > heap+floodHeapSlack {
		t.Errorf("the instance's live heap is %.1f MiB after the cycles, %.1f MiB before (slack %d MiB)", heapAfter/(1<<20), heap/(1<<20), floodHeapSlack>>20)
	}
	if rssAfter > rss+floodRSSSlack {
		t.Errorf("the instance's RSS is %d MiB after the cycles, %d MiB before (slack %d MiB)", rssAfter>>20, rss>>20, floodRSSSlack>>20)
	}
	if ghosts > floodGhostSlack {
		t.Errorf("switchboard_sessions counts %.0f sessions after every connection closed (slack %d)", ghosts, floodGhostSlack)
	}
	// Half of the kinds reach welcome: the cycles must have made sessions.
	if opened < cycles/2 {
		t.Errorf("only %.0f sessions were welcomed in %d cycles", opened, cycles)
	}
}

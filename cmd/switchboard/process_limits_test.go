package main

// The HTTP limits and the admin listener of the real binary
// (docs/operations.md, "HTTP limits" and "The admin listener").

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// headerFloodBound is what 120 sockets sending endless header blocks may
// add to the RSS of a `switchboard serve` process (docs/operations.md,
// "Memory bounds"): each holds at most --max-header-bytes (8 KiB) of head,
// a 4 KiB read buffer and a goroutine until it is cut off, about 2.5 MiB
// for all of them; the rest is the garbage collector's headroom and the
// goroutines of the trickling sockets. Before the
// bound, the same flood added about 135 MiB.
const headerFloodBound = 16 << 20

// TestProcess_HeaderFloodIsBounded: 120 sockets each send an unfinished
// 1 MB header block at full speed, and 120 more trickle one that stays under
// the size bound; the first are answered 431 at --max-header-bytes, the
// others are cut off unanswered at --header-timeout, and the server's RSS
// and open descriptors stay bounded and come back.
func TestProcess_HeaderFloodIsBounded(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	const (
		sockets       = 120
		block         = 1000000 // just under net/http's default bound of 1 MiB
		headerTimeout = 2 * time.Second
	)
	in := startInstance(t, "headers", "--header-timeout", headerTimeout.String())
	baseline := peakRSS(t, in, 500*time.Millisecond)
	fdsBefore := instanceFDs(t, in)

	type outcome struct {
		status  string // first line of the answer; "" when none came
		elapsed time.Duration
		err     error
	}
	fast := make(chan outcome, sockets)
	slow := make(chan outcome, sockets)
	start := time.Now()
	for i := range 2 * sockets {
		conn, err := net.Dial("tcp", in.addr)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		trickle := i%2 == 1
		go func() {
			// The writer: a head that never ends. It stops at the
			// server's reset, or when the test closes the socket.
			if _, err := conn.Write([]byte("GET /ws HTTP/1.1\r\nHost: " + in.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")); err != nil {
				return
			}
			line := []byte("X-Flood: " + strings.Repeat("f", 1014) + "\r\n") // 1 KiB
			if trickle {
				// 64 bytes every 100ms: 1.3 KiB by the header timeout,
				// far below the size bound.
				for {
					time.Sleep(100 * time.Millisecond)
					if _, err := conn.Write(line[:64]); err != nil {
						return
					}
				}
			}
			for sent := 0; sent+len(line) <= block; sent += len(line) {
				if _, err := conn.Write(line); err != nil {
					return
				}
			}
			// Then hold the socket, the head unfinished.
		}()
		out := fast
		if trickle {
			out = slow
		}
		go func() {
			// The reader: what the server answers, and when it hangs up.
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			rd := bufio.NewReader(conn)
			status, _ := rd.ReadString('\n')
			_, err := io.Copy(io.Discard, rd)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				out <- outcome{status: strings.TrimSpace(status), err: fmt.Errorf("still open after 30s")}
				return
			}
			out <- outcome{status: strings.TrimSpace(status), elapsed: time.Since(start)}
		}()
	}
	fdsPeak := 0 // the trickling sockets at least are open for a while
	for end := time.Now().Add(time.Second); time.Now().Before(end) && fdsPeak < fdsBefore+sockets; time.Sleep(20 * time.Millisecond) {
		fdsPeak = max(fdsPeak, instanceFDs(t, in))
	}
	peak := max(peakRSS(t, in, headerTimeout+time.Second), baseline)

	var answered431, cutSilently int
	var lastCut time.Duration
	for range sockets {
		o := <-fast
		switch {
		case o.err != nil:
			t.Errorf("a socket sending a 1 MB head: %v", o.err)
		case strings.Contains(o.status, " 431 "):
			answered431++
		default:
			t.Errorf("a socket sending a 1 MB head got %q, want 431", o.status)
		}
	}
	for range sockets {
		o := <-slow
		switch {
		case o.err != nil:
			t.Errorf("a socket trickling its head: %v", o.err)
		case o.status != "":
			t.Errorf("a socket trickling its head got %q, want the connection closed unanswered", o.status)
		case o.elapsed < headerTimeout/2:
			t.Errorf("a socket trickling its head was cut off after %v, long before --header-timeout %v", o.elapsed, headerTimeout)
		default:
			cutSilently++
			lastCut = max(lastCut, o.elapsed)
		}
	}
	growth := peak - baseline
	t.Logf("%d sockets sending 1 MB heads: %d answered 431; %d trickling: %d cut off unanswered, the last after %v (--header-timeout %v)",
		sockets, answered431, sockets, cutSilently, lastCut.Round(time.Millisecond), headerTimeout)
	if fdsPeak < fdsBefore+sockets {
		t.Errorf("the server held %d descriptors during the flood, %d before; the sockets did not reach it", fdsPeak, fdsBefore)
	}
	t.Logf("RSS %d MiB before, at most %d MiB during the flood: +%.1f MiB (bound %d MiB); open fds %d before, %d during",
		baseline>>20, peak>>20, float64(growth)/(1<<20), headerFloodBound>>20, fdsBefore, fdsPeak)
	if growth > headerFloodBound {
		t.Errorf("RSS grew by %.1f MiB during the flood, want at most %d MiB", float64(growth)/(1<<20), headerFloodBound>>20)
	}
	eventually(t, 10*time.Second, func() string {
		if n := instanceFDs(t, in); n > fdsBefore+5 {
			return fmt.Sprintf("the server holds %d open descriptors, %d before the flood", n, fdsBefore)
		}
		return ""
	})
	if code := in.readyz(); code != http.StatusOK {
		t.Errorf("/readyz after the flood: %d, want 200", code)
	}
}

// instanceFDs counts the descriptors the instance has open.
func instanceFDs(t *testing.T, in *instance) int {
	t.Helper()
	n, err := openFDs(in.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("count the instance's descriptors: %v", err)
	}
	return n
}

// TestProcess_AdminListen: with --admin-listen the binary serves the API,
// /metrics and pprof there and not on --listen, which keeps /ws and the
// health checks; SIGTERM closes both.
func TestProcess_AdminListen(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	in := startInstance(t, "admin", "--admin-listen", "127.0.0.1:0")
	admin := adminAddr(t, in)
	status := func(base, path string) int {
		t.Helper()
		res, err := httpClient.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", base, path, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	for _, tt := range []struct {
		base, path string
		want       int
	}{
		{in.url, "/healthz", http.StatusOK},
		{in.url, "/metrics", http.StatusNotFound},
		{in.url, "/debug/pprof/", http.StatusNotFound},
		{in.url, "/api/instances", http.StatusNotFound},
		{"http://" + admin, "/healthz", http.StatusOK},
		{"http://" + admin, "/metrics", http.StatusOK},
		{"http://" + admin, "/debug/pprof/", http.StatusOK},
		{"http://" + admin, "/debug/pprof/cmdline", http.StatusNotFound},
		{"http://" + admin, "/api/instances", http.StatusOK},
		{"http://" + admin, "/ws", http.StatusNotFound},
	} {
		if got := status(tt.base, tt.path); got != tt.want {
			t.Errorf("GET %s on %s: %d, want %d", tt.path, tt.base, got, tt.want)
		}
	}
	session := in.dial(t, wstest.Hello{User: "alice"})

	in.signal(t, syscall.SIGTERM)
	if code, err := session.WaitClosed(20 * time.Second); err != nil || code != 4001 {
		t.Errorf("the session ended with %d, %v; want 4001 from the drain", code, err)
	}
	if code, err := in.waitExit(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d, %v; want 0 after the drain", code, err)
	}
	if conn, err := net.DialTimeout("tcp", admin, time.Second); err == nil {
		conn.Close()
		t.Errorf("the admin address still accepts connections after the process exited")
	}
}

// adminAddr reads the admin listener's address from the "serving" line of
// the instance's log.
func adminAddr(t *testing.T, in *instance) string {
	t.Helper()
	for line := range strings.SplitSeq(in.logs.tail(1<<20), "\n") {
		var rec struct {
			Msg   string `json:"msg"`
			Admin string `json:"admin"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" && rec.Admin != "" {
			return rec.Admin
		}
	}
	t.Fatalf("instance %s logged no admin address", in.name)
	return ""
}

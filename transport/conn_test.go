package transport

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestConn_NothingAfterClose: once the server closed a connection (as the
// hub does for an API disconnect, 4004), Send refuses and not one more
// frame reaches the socket, though the client keeps the connection open
// and sends messages.
func TestConn_NothingAfterClose(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{})
		c := ts.dial(t, "noecho")
		c.rec.c.Send(Frame{Data: []byte("before")})
		c.rec.c.Close(4004, "disconnected")
		for i := range 10 {
			if c.rec.c.Send(Frame{Data: []byte(fmt.Sprint("after ", i))}) {
				t.Fatal("Send queued a frame after Close")
			}
			c.send(rawFrame(finText, []byte("from client"), false))
		}
		c.expect(opText, "before")
		f, err := c.next()
		if err != nil || f.op != opClose || f.String() != `close 4004 "disconnected"` {
			t.Fatalf("got %v (%v), want close 4004", f, err)
		}
		c.send(closeFrame(4004, ""))
		c.expectEOF()
		c.rec.mu.Lock()
		defer c.rec.mu.Unlock()
		if len(c.rec.messages) != 0 || c.rec.closing != 1 {
			t.Errorf("after Close the handler got %d messages and %d Closing calls, want 0 and 1", len(c.rec.messages), c.rec.closing)
		}
	})
}

// TestConn_ClosedComesAfterTheLastWritten: a client reads a frame and
// closes before the server's writer reported the frame written (Written).
// The handler hears Closed only after that report, never during it: the hub
// saves a session's positions when it hears Closed, and a frame reported
// after that save would be sent again to the session that resumes it.
func TestConn_ClosedComesAfterTheLastWritten(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{})
		c := ts.dial(t, "noecho&holdwritten")
		c.rec.c.Send(Frame{Data: []byte("last"), Ref: "last"})
		select {
		case <-c.rec.inWritten:
		case <-time.After(testTimeout):
			t.Fatal("the frame was not reported written")
		}
		c.expect(opText, "last")
		_ = c.conn.Close()
		select {
		case <-c.rec.closed:
			t.Error("Closed came while the last frame was being reported")
		case <-time.After(300 * time.Millisecond):
		}
		close(c.rec.holdWritten)
		select {
		case <-c.rec.closed:
		case <-time.After(testTimeout):
			t.Fatal("Closed never came after the writer reported its frame")
		}
		if c.rec.closedReporting.Load() {
			t.Error("Closed came during Written")
		}
		if got := ts.srv.conns.Load(); got != 0 {
			t.Errorf("the server counts %d connections after Closed, want 0", got)
		}
	})
}

// TestConn_DirectWritesResumeAfterABlockingOne: a client that stops reading
// makes a write block (the connection's own writer finishes it with a
// deadline); once it reads again, and long after that deadline passed,
// writes take the direct path again.
func TestConn_DirectWritesResumeAfterABlockingOne(t *testing.T) {
	forModes(t, []mode{tcpMode, tcpWriteMode, netMode}, testDirectWritesResume)
}

func testDirectWritesResume(t *testing.T, m mode) {
	const writeTimeout = time.Second
	ts := startServer(t, m, Config{WriteTimeout: writeTimeout, SendQueueBytes: 16 << 20})
	c := ts.dial(t, "noecho")
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(64 << 10) // small, but not so small that loopback TCP crawls
	}
	direct := func() float64 { return testutil.ToFloat64(ts.metrics.writesByPath[pathDirect]) }
	blocking := func() float64 { return testutil.ToFloat64(ts.metrics.writesByPath[pathBlocking]) }

	big := strings.Repeat("b", 64<<10)
	for range 20 { // more than the socket buffers take
		c.rec.c.Send(Frame{Data: []byte(big)})
	}
	deadline := time.Now().Add(testTimeout)
	for blocking() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no write blocked")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 20 {
		c.expect(opText, big)
	}
	// Wait past the blocking write's deadline: a deadline left set would
	// now refuse every direct write.
	time.Sleep(writeTimeout + 200*time.Millisecond)
	before := direct()
	for i := range 5 {
		c.rec.c.Send(Frame{Data: []byte(fmt.Sprint("small ", i))})
		c.expect(opText, fmt.Sprint("small ", i))
	}
	// The counter moves right after write(2) returns, which may be after
	// the client read the bytes.
	deadline = time.Now().Add(testTimeout)
	for direct()-before < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := direct() - before; got != 5 {
		t.Errorf("%v direct writes after the blocking one, want 5 (blocking writes: %v)", got, blocking())
	}
}

// TestConn_SlowConsumer: a client that stops reading is closed with 4008
// when its queue overflows; a Send after that is refused.
func TestConn_SlowConsumer(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{SendQueueBytes: 64 << 10, WriteTimeout: time.Second})
		c := ts.dial(t, "noecho")
		if tc, ok := c.conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		payload := []byte(strings.Repeat("s", 4000))
		sent := 0
		for c.rec.c.Send(Frame{Data: payload}) {
			sent++
			if sent > 10000 {
				t.Fatal("the queue never overflowed")
			}
		}
		got := 0
		for {
			f, err := c.next()
			if err != nil {
				t.Fatalf("after %d messages: %v", got, err)
			}
			if f.op == opClose {
				if f.String() != `close 4008 "slow consumer"` {
					t.Fatalf("got %v, want close 4008", f)
				}
				break
			}
			got++
		}
		if got >= sent {
			t.Errorf("the slow client got all %d messages, want it cut short", sent)
		}
		if n := testutil.ToFloat64(ts.metrics.overflows); n != 1 {
			t.Errorf("overflows = %v, want 1", n)
		}
	})
}

// TestConn_SendWait: an answer larger than the whole send queue still goes
// out to a client that reads; a client that does not read is closed with
// 4008 once the queue made no room for the write timeout.
func TestConn_SendWait(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{SendQueueBytes: 16 << 10, WriteTimeout: 500 * time.Millisecond})
		c := ts.dial(t, "noecho")
		huge := strings.Repeat("h", 200<<10)
		done := make(chan bool)
		go func() {
			ok := true
			for range 3 {
				ok = ok && c.rec.c.SendWait(Frame{Data: []byte(huge)})
			}
			done <- ok
		}()
		for range 3 {
			c.expect(opText, huge)
		}
		if !<-done {
			t.Fatal("SendWait refused a frame for a client that reads")
		}

		idle := ts.dial(t, "noecho")
		if tc, ok := idle.conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		start := time.Now()
		for idle.rec.c.SendWait(Frame{Data: []byte(huge)}) {
			if time.Since(start) > testTimeout {
				t.Fatal("SendWait never gave up on a client that does not read")
			}
		}
		// A writer whose write timed out (writeFailed) makes the
		// connection not open, which ends SendWait, before it counts the
		// close: the count may come a moment after SendWait returns.
		closes := func() float64 { return testutil.ToFloat64(ts.metrics.closes.WithLabelValues("4008")) }
		for deadline := time.Now().Add(testTimeout); closes() == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if n := closes(); n != 1 {
			t.Errorf("closes{4008} = %v, want 1", n)
		}
	})
}

// TestConn_HeartbeatReleasesQueueArrays: a connection keeps its queue's
// arrays while it is written to and lets go of them at the heartbeat, so
// that an idle connection holds none; it queues and writes as before
// afterwards.
func TestConn_HeartbeatReleasesQueueArrays(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{})
		c := ts.dial(t, "noecho")
		conn := c.rec.c
		arrays := func() (queue, spare int) {
			conn.mu.Lock()
			defer conn.mu.Unlock()
			return cap(conn.queue), cap(conn.spare)
		}
		for i := range 3 {
			conn.Send(Frame{Data: fmt.Appendf(nil, "m%d", i)})
			c.expect(opText, fmt.Sprintf("m%d", i))
		}
		deadline := time.Now().Add(testTimeout)
		for q, s := arrays(); q+s == 0; q, s = arrays() {
			if time.Now().After(deadline) {
				t.Fatal("a connection that was written to kept no queue array")
			}
			time.Sleep(time.Millisecond)
		}
		conn.Ping()
		c.expect(opPing, "")
		for q, s := arrays(); q+s != 0; q, s = arrays() {
			if time.Now().After(deadline) {
				t.Fatalf("after the heartbeat the idle connection still holds arrays of %d and %d frames", q, s)
			}
			time.Sleep(time.Millisecond)
		}
		conn.Send(Frame{Data: []byte("after")})
		c.expect(opText, "after")
	})
}

// TestConn_InstanceCeiling: past the instance's ceiling on queued bytes, the
// connection that holds the most is closed with 4008; others go on.
func TestConn_InstanceCeiling(t *testing.T) {
	ts := startServer(t, tcpMode, Config{SendQueueBytes: 1 << 20, MaxQueuedBytes: 256 << 10})
	hog := ts.dial(t, "noecho")
	if tc, ok := hog.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	small := ts.dial(t, "noecho")
	payload := []byte(strings.Repeat("c", 8<<10))
	for hog.rec.c.Send(Frame{Data: payload}) {
	}
	if n := testutil.ToFloat64(ts.metrics.instanceOverflows); n != 1 {
		t.Fatalf("ceiling overflows = %v, want 1", n)
	}
	small.rec.c.Send(Frame{Data: []byte("still here")})
	small.expect(opText, "still here")
}

// TestConn_BytesBeingWrittenCount: on a plain socket, the bytes of a write
// the socket did not take whole (a client that stopped reading) still
// count against the send queue and the instance's queued bytes until
// written: otherwise the queue could fill up again behind them, and a
// connection would hold up to twice --send-queue, with the ceiling blind
// to half of it. (TLS connections count bytes until their writer takes
// them: a TLS write does not say whether it waited.)
func TestConn_BytesBeingWrittenCount(t *testing.T) {
	forModes(t, []mode{tcpMode, tcpWriteMode, netMode}, testBytesBeingWrittenCount)
}

func testBytesBeingWrittenCount(t *testing.T, m mode) {
	const budget = 256 << 10
	ts := startServer(t, m, Config{SendQueueBytes: budget, WriteTimeout: time.Minute})
	c := ts.dial(t, "noecho")
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	conn := c.rec.c
	payload := []byte(strings.Repeat("w", 4000))
	// Fill until a writer is stuck with a batch and more waits behind it,
	// and then read the counts, which change only under conn.mu (this is
	// the only connection), all at once.
	deadline := time.Now().Add(testTimeout)
	var waiting, queued, inflight int
	var instance int64
	for {
		if !conn.Send(Frame{Data: payload}) {
			t.Fatal("closed before a write blocked")
		}
		conn.mu.Lock()
		stuck := conn.inflight > 0 && len(conn.queue) > 0
		if stuck {
			for _, f := range conn.queue {
				waiting += f.size()
			}
			queued, inflight, instance = conn.queued, conn.inflight, ts.srv.QueuedBytes()
		}
		conn.mu.Unlock()
		if stuck {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no write ever blocked")
		}
		// Keep pace with the writer until the socket stops taking.
		for behind := true; behind; {
			conn.mu.Lock()
			behind = len(conn.queue) > 0 && conn.inflight == 0
			conn.mu.Unlock()
			runtime.Gosched()
		}
	}
	if queued != waiting+inflight || inflight <= 0 {
		t.Errorf("connection counts %d bytes, want %d waiting + %d being written", queued, waiting, inflight)
	}
	if instance != int64(queued) {
		t.Errorf("instance counts %d queued bytes, want the %d the connection holds", instance, queued)
	}
	// Overflowing now closes it with no more than the budget held.
	for conn.Send(Frame{Data: payload}) {
		if q := ts.srv.QueuedBytes(); q > budget {
			t.Fatalf("%d bytes held for one connection, send queue %d", q, budget)
		}
	}
	// The queue is dropped; the writer keeps what it holds counted until
	// its write ends (here, when the client goes away).
	conn.mu.Lock()
	queued, inflight, instance = conn.queued, conn.inflight, ts.srv.QueuedBytes()
	conn.mu.Unlock()
	if queued != inflight || instance != int64(queued) {
		t.Errorf("after the overflow the connection counts %d bytes (%d being written), the instance %d; want only those being written",
			queued, inflight, instance)
	}
	c.conn.Close()
	for q := ts.srv.QueuedBytes(); q != 0; q = ts.srv.QueuedBytes() {
		if time.Now().After(deadline) {
			t.Fatalf("after the close %d bytes are still counted", q)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestConn_PingFlood: pings count against the rate limit; a client that
// keeps flooding past its burst is closed with 4029 after a bounded number
// of pongs.
func TestConn_PingFlood(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{Rate: 10, Burst: 20})
		c := ts.dial(t, "")
		c.send(rawFrame(finText, []byte("hello"), false)) // the first message is free
		flood := make([]byte, 0, 1000*8)
		for range 1000 {
			flood = append(flood, rawFrame(finPing, nil, false)...)
		}
		go func() { _, _ = c.conn.Write(flood) }()
		pongs, hello := 0, false
		for {
			f, err := c.next()
			if err != nil {
				t.Fatalf("after %d pongs: %v", pongs, err)
			}
			switch {
			case f.op == opPong:
				pongs++
				continue
			case f.op == opText && string(f.payload) == "hello" && !hello:
				hello = true
				continue
			}
			if f.op != opClose || f.String() != `close 4029 "rate limited too long"` {
				t.Fatalf("got %v, want close 4029", f)
			}
			break
		}
		if !hello {
			t.Error("the message before the flood was not answered")
		}
		if pongs > 21 {
			t.Errorf("%d pongs for a flood, want at most the burst (20) and a refill", pongs)
		}
	})
}

// TestConn_EmptyFragmentFlood: a message that never ends, made of empty
// continuation frames, is cut off (1008) after a bounded number of them.
func TestConn_EmptyFragmentFlood(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{MaxMessageBytes: 64 << 10})
		c := ts.dial(t, "")
		flood := rawFrame(text, []byte("a"), false)
		for range 1000 {
			flood = append(flood, rawFrame(cont, nil, false)...)
		}
		c.send(flood)
		c.expectClose(ClosePolicy)
	})
}

// TestConn_Unfinished: a client that starts a message and never finishes it
// is seen by Unfinished (the hub closes such a client by its age).
func TestConn_Unfinished(t *testing.T) {
	ts := startServer(t, tcpMode, Config{})
	c := ts.dial(t, "")
	if !c.rec.c.Unfinished().IsZero() {
		t.Fatal("Unfinished set before any frame")
	}
	c.send(rawFrame(finText, []byte("done"), false))
	c.expect(opText, "done")
	if !c.rec.c.Unfinished().IsZero() {
		t.Fatal("Unfinished set after a whole message")
	}
	start := time.Now()
	c.send(rawFrame(finText, repeat("u", 1000), false)[:500])
	deadline := time.Now().Add(testTimeout)
	for c.rec.c.Unfinished().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("Unfinished not set for half a frame")
		}
		time.Sleep(time.Millisecond)
	}
	if u := c.rec.c.Unfinished(); u.Before(start.Add(-time.Second)) || u.After(time.Now()) {
		t.Errorf("Unfinished = %v, want about %v", u, start)
	}
}

// TestConn_CloseAfter: CloseAfter writes what was queued, then the last
// frame, then the close frame.
func TestConn_CloseAfter(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{})
		c := ts.dial(t, "noecho")
		c.rec.c.Send(Frame{Data: []byte("queued")})
		c.rec.c.CloseAfter(4001, "restarting", func() []byte { return []byte("farewell") })
		c.expect(opText, "queued")
		c.expect(opText, "farewell")
		c.expectClose(4001)
	})
}

// TestConn_EarlyBytes: frames a client sends in the same write as its
// handshake are not lost.
func TestConn_EarlyBytes(t *testing.T) {
	ts := startServer(t, tcpMode, Config{})
	addr := ts.http.Listener.Addr().String()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := conn.Write(append([]byte(req), rawFrame(finText, []byte("eager"), false)...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v", err)
	}
	c := &client{t: t, conn: conn, br: br, rec: <-ts.conns}
	c.expect(opText, "eager")
}

// TestConn_IdleHoldsNoReaderOrBuffer: connections that have exchanged
// messages and gone idle hold no pooled read buffer and no reading
// goroutine, on plain TCP and over TLS (on Linux both wait in the poller).
// Not parallel: it counts the buffers and goroutines of the whole package.
func TestConn_IdleHoldsNoReaderOrBuffer(t *testing.T) {
	for _, m := range []mode{tcpMode, netMode, tlsMode} {
		ts := startServer(t, m, Config{})
		base := readBuffersOut.Load()
		const n = 20
		clients := make([]*client, n)
		for i := range clients {
			clients[i] = ts.dial(t, "")
			// A message of more than a record's plaintext, and one cut
			// into single bytes, each answered.
			big := strings.Repeat("b", 40<<10)
			clients[i].send(rawFrame(finText, []byte(big), false))
			clients[i].expect(opText, big)
			for _, b := range rawFrame(finText, []byte("split"), false) {
				clients[i].send([]byte{b})
			}
			clients[i].expect(opText, "split")
		}
		deadline := time.Now().Add(testTimeout)
		for readBuffersOut.Load() > base {
			if time.Now().After(deadline) {
				t.Fatalf("%v: %d idle connections hold %d read buffers", m, n, readBuffersOut.Load()-base)
			}
			time.Sleep(time.Millisecond)
		}
		if runtime.GOOS == "linux" {
			for readers := readingGoroutines(); readers > 0; readers = readingGoroutines() {
				if time.Now().After(deadline) {
					t.Fatalf("%v: %d idle connections keep %d reading goroutines", m, n, readers)
				}
				time.Sleep(time.Millisecond)
			}
		}
		for _, c := range clients {
			_ = c.conn.Close()
		}
	}
}

// readingGoroutines counts the goroutines inside a connection's reader.
func readingGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("transport.(*Conn).readLoop("))
}

// TestUpgrade_Refusals: requests that are not a WebSocket handshake get an
// HTTP error, not an upgrade.
func TestUpgrade_Refusals(t *testing.T) {
	ts := startServer(t, tcpMode, Config{})
	ok := http.Header{"Upgrade": {"websocket"}, "Connection": {"keep-alive, Upgrade"}, "Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	tests := []struct {
		name   string
		method string
		edit   func(h http.Header)
		want   int
	}{
		{"POST", http.MethodPost, func(http.Header) {}, http.StatusMethodNotAllowed},
		{"no Upgrade header", http.MethodGet, func(h http.Header) { h.Del("Upgrade") }, http.StatusUpgradeRequired},
		{"no Connection: upgrade", http.MethodGet, func(h http.Header) { h.Set("Connection", "keep-alive") }, http.StatusUpgradeRequired},
		{"version 8", http.MethodGet, func(h http.Header) { h.Set("Sec-Websocket-Version", "8") }, http.StatusUpgradeRequired},
		{"no key", http.MethodGet, func(h http.Header) { h.Del("Sec-Websocket-Key") }, http.StatusBadRequest},
		{"short key", http.MethodGet, func(h http.Header) { h.Set("Sec-Websocket-Key", "c2hvcnQ=") }, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, ts.http.URL+"/ws", nil)
			req.Header = ok.Clone()
			tt.edit(req.Header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

// TestConn_CloseFrameNeverInsideAFrame: a protocol error of the client
// while the server is in the middle of writing large frames to it (the
// rest of a write the socket did not take is pending) fails the
// connection with a close frame that comes after whole frames: everything
// the client reads parses, and the last frame is the close.
func TestConn_CloseFrameNeverInsideAFrame(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{SendQueueBytes: 16 << 20})
		c := ts.dial(t, "noecho")
		if tc, ok := c.conn.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(64 << 10)
		}
		big := []byte(strings.Repeat("w", 200<<10))
		for range 10 {
			c.rec.c.Send(Frame{Data: big})
		}
		// The writes are under way (they cannot all fit in the socket);
		// now the client breaks the protocol.
		c.send(rawFrame(finText|0x40, []byte("reserved bit"), false))
		texts := 0
		for {
			f, err := c.next()
			if err != nil {
				t.Fatalf("after %d whole frames: %v (a close frame cut into a frame breaks the stream)", texts, err)
			}
			if f.op == opClose {
				if f.String() != `close 1002 "reserved bits set without an extension"` {
					t.Fatalf("got %v, want close 1002", f)
				}
				break
			}
			if f.op != opText || len(f.payload) != len(big) {
				t.Fatalf("frame %d: op %d with %d bytes, want a whole %d-byte text frame", texts, f.op, len(f.payload), len(big))
			}
			texts++
		}
		c.send(closeFrame(1002, ""))
		c.expectEOF()
	})
}

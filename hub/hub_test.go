package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestMain fails the run if goroutines of the hub or of its connections
// (package transport: readers, writers, the flusher, the epoll poller)
// outlive the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := hubGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines of the hub leaked:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// hubGoroutines waits up to timeout for every goroutine running code of
// the hub to end, and returns the stacks of those that did not.
func hubGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			ours := strings.Contains(g, "switchboard/hub.") || strings.Contains(g, "switchboard/transport.")
			if ours && !strings.Contains(g, "hubGoroutines") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startHub runs a dev-mode hub on the memory broker behind an httptest
// server until the test ends, and returns it with its WebSocket URL.
func startHub(t testing.TB, cfg hub.Config) (*hub.Hub, string) {
	t.Helper()
	b := memory.New(memory.Config{})
	if cfg.Broker == nil {
		cfg.Broker = b
	}
	cfg.Dev = true
	h, err := hub.New(cfg)
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	srv := wstest.NewServer(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- h.Run(ctx) }()
	// Registered first, so it runs after the clients' cleanups closed them.
	t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		if err := h.Drain(dctx); err != nil {
			t.Errorf("Drain: %v", err)
		}
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
		cancel()
		srv.Close()
		_ = b.Close(context.Background())
	})
	return h, wstest.WSURL(srv.URL, "/ws")
}

// dialJoined opens n sessions (odd ones in batch mode) joined to room, a
// few at a time, and returns them with the room's epoch.
func dialJoined(t testing.TB, url, room string, n int) ([]*wstest.Conn, string) {
	t.Helper()
	conns := make([]*wstest.Conn, n)
	epochs := make([]string, n)
	errs := make(chan error, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range work {
				c, err := wstest.TryDial(t, nil, url, wstest.Hello{User: fmt.Sprintf("u%04d", i), Batch: i%2 == 1})
				if err == nil {
					err = c.TrySend(wstest.Frame("join", "id", i, "room", room))
				}
				var f protocol.ServerFrame
				if err == nil {
					f, err = c.NextErr(wstest.Timeout)
				}
				if err == nil && (f.Type != protocol.TypeJoined || f.Room != room) {
					err = fmt.Errorf("got %s, want joined %s", wstest.Describe(f), room)
				}
				if err != nil {
					errs <- fmt.Errorf("session %d: %w", i, err)
					continue
				}
				conns[i], epochs[i] = c, f.Epoch
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, e := range epochs {
		if e != epochs[0] {
			t.Fatalf("session %d joined epoch %q, session 0 %q", i, e, epochs[0])
		}
	}
	return conns, epochs[0]
}

// readMessages reads n room messages from each session, as the exact bytes
// that came in (batch frames split into their lines).
func readMessages(t *testing.T, conns []*wstest.Conn, n int) [][][]byte {
	t.Helper()
	got := make([][][]byte, len(conns))
	errs := make(chan error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			ws := c.WS()
			for len(got[i]) < n {
				// A thousand readers under -race on a loaded machine may
				// wait their turn for seconds: patience, not latency, is
				// what this checks.
				_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, b, err := ws.ReadMessage()
				if err != nil {
					errs <- fmt.Errorf("session %d after %d messages: %w", i, len(got[i]), err)
					return
				}
				got[i] = append(got[i], bytes.Split(b, []byte("\n"))...)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range got {
		if len(got[i]) != n {
			t.Fatalf("session %d got %d frames, want %d: %.300q", i, len(got[i]), n, got[i])
		}
	}
	return got
}

// checkSame checks that every session got message k as the same bytes as
// session 0 and returns them.
func checkSame(t *testing.T, got [][][]byte, k int) []byte {
	t.Helper()
	ref := got[0][k]
	for i := range got {
		if !bytes.Equal(got[i][k], ref) {
			t.Fatalf("session %d got message %d as %.300q, session 0 as %.300q", i, k, got[i][k], ref)
		}
	}
	return ref
}

// TestHub_DeliverEncodesOnce fans messages out to 1,000 local sessions, half
// of them in batch mode: every session gets every message once, in order,
// as the very same bytes, with the publisher's data relayed verbatim; and a
// 32 KiB message costs the instance kilobytes of allocation, not the 32 MB
// that encoding it once per recipient would. Not parallel: it measures the
// process's allocations.
func TestHub_DeliverEncodesOnce(t *testing.T) {
	const (
		room     = "fanout"
		sessions = 1000
		bigSize  = 32 << 10
	)
	h, url := startHub(t, hub.Config{})
	conns, epoch := dialJoined(t, url, room, sessions)
	var offset uint64
	publish := func(data string) {
		t.Helper()
		offset++
		pos, err := h.Publish(t.Context(), room, broker.Publication{From: "backend", Data: json.RawMessage(data)})
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if pos.Epoch != epoch || pos.Offset != offset {
			t.Fatalf("Publish = %v, want %s offset %d", pos, epoch, offset)
		}
	}
	check := func(ref []byte, off uint64, data string) {
		t.Helper()
		var f struct {
			Type   string          `json:"type"`
			Room   string          `json:"room"`
			Epoch  string          `json:"epoch"`
			Offset uint64          `json:"offset"`
			From   string          `json:"from"`
			Data   json.RawMessage `json:"data"`
			TS     int64           `json:"ts"`
		}
		if err := json.Unmarshal(ref, &f); err != nil {
			t.Fatalf("message %d: %.300q: %v", off, ref, err)
		}
		if f.Type != protocol.TypeMessage || f.Room != room || f.Epoch != epoch || f.Offset != off ||
			f.From != "backend" || string(f.Data) != data || f.TS == 0 {
			t.Fatalf("message = %.300s, want %s/%s offset %d from backend with data %.100s", ref, room, epoch, off, data)
		}
	}

	datas := []string{
		`{"text":"h\u00e9llo \"w\" \\ \u2028","n":[1,2.5,-3e7],"nested":{"ok":true,"none":null}}`,
		`"just a string"`,
		`12345`,
		`[]`,
	}
	for _, d := range datas {
		publish(d)
	}
	got := readMessages(t, conns, len(datas))
	for k, d := range datas {
		check(checkSame(t, got, k), uint64(k+1), d)
	}

	// One big message warms the writers' buffer pool up; the next two are
	// measured while nobody reads.
	big := `"` + strings.Repeat("x", bigSize) + `"`
	publish(big)
	check(checkSame(t, readMessages(t, conns, 1), 0), offset, big)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	publish(big)
	publish(big)
	runtime.ReadMemStats(&after)
	perMessage := (after.TotalAlloc - before.TotalAlloc) / 2
	t.Logf("a %d-byte message to %d sessions allocated %d bytes", len(big), sessions, perMessage)
	// Over TLS the connections' writers encrypt each copy as it goes out
	// (crypto/tls allocates per record), which says nothing about the
	// hub's encoding: the bound is checked on plain TCP.
	if limit := uint64(sessions * bigSize / 4); perMessage > limit && !wstest.UseTLS() {
		t.Fatalf("a %d-byte message to %d sessions allocated %d bytes, want at most %d: is the frame encoded per recipient?",
			len(big), sessions, perMessage, limit)
	}
	got = readMessages(t, conns, 2)
	check(checkSame(t, got, 0), offset-1, big)
	check(checkSame(t, got, 1), offset, big)
}

// TestHub_PublisherGetsAck checks the echo rule of guarantee 1: the
// publishing session gets an ack instead of its message, unless it asked for
// echo (then the message comes first, as the ack follows the store), and the
// user's other tabs get the message.
func TestHub_PublisherGetsAck(t *testing.T) {
	t.Parallel()
	const room = "echo"
	_, url := startHub(t, hub.Config{})
	quiet := wstest.Dial(t, url, wstest.Hello{User: "ann"})
	loud := wstest.Dial(t, url, wstest.Hello{User: "ann", Echo: true})
	other := wstest.Dial(t, url, wstest.Hello{User: "ann"})
	for _, c := range []*wstest.Conn{quiet, loud, other} {
		c.Send(wstest.Frame("join", "id", 1, "room", room))
		c.Expect(protocol.TypeJoined)
	}
	ping := func(c *wstest.Conn) {
		t.Helper()
		c.Send(wstest.Frame("ping", "id", "p"))
		if f := c.Next(); f.Type != protocol.TypePong {
			t.Fatalf("got %s, want only the pong", wstest.Describe(f))
		}
	}

	quiet.Send(wstest.Frame("publish", "id", "q", "room", room, "data", "from quiet"))
	if f := quiet.Expect(protocol.TypeAck); string(f.ID) != `"q"` || f.Offset != 1 {
		t.Fatalf("ack = %s, want id q offset 1", wstest.Describe(f))
	}
	ping(quiet)
	loud.Send(wstest.Frame("publish", "id", "l", "room", room, "data", "from loud"))
	if f := loud.Expect(protocol.TypeMessage); f.Offset != 1 {
		t.Fatalf("loud got %s, want the message of quiet at offset 1", wstest.Describe(f))
	}
	if f := loud.Expect(protocol.TypeMessage); f.Offset != 2 || string(f.Data) != `"from loud"` {
		t.Fatalf("loud got %s, want its own message at offset 2 (echo)", wstest.Describe(f))
	}
	if f := loud.Expect(protocol.TypeAck); string(f.ID) != `"l"` || f.Offset != 2 {
		t.Fatalf("ack = %s, want id l offset 2", wstest.Describe(f))
	}
	ping(loud)
	for off := uint64(1); off <= 2; off++ {
		if f := other.Expect(protocol.TypeMessage); f.Offset != off || f.From != "ann" {
			t.Fatalf("other tab got %s, want offset %d from ann", wstest.Describe(f), off)
		}
	}
	ping(other)
	if f := quiet.Expect(protocol.TypeMessage); f.Offset != 2 {
		t.Fatalf("quiet got %s, want loud's message at offset 2", wstest.Describe(f))
	}
	ping(quiet)
}

// TestHub_HeartbeatIsSpread: the sessions are pinged in slices spread over
// the heartbeat interval, each once an interval, rather than all at once:
// their first pings span most of an interval.
func TestHub_HeartbeatIsSpread(t *testing.T) {
	const beat = time.Second
	const n = 50
	_, url := startHub(t, hub.Config{Heartbeat: beat})
	var mu sync.Mutex
	var start time.Time // zero until every session is in: pings before it are not counted
	first := make([]time.Time, n)
	pings := make([]int, n)
	var readers sync.WaitGroup
	conns := make([]*wstest.Conn, n)
	for i := range n {
		// Each connection reads from its dial on, so that no ping waits
		// unread in its socket to be counted later than it was sent.
		c := wstest.Dial(t, url, wstest.Hello{User: fmt.Sprintf("u%d", i)})
		conns[i] = c
		ws := c.WS()
		ws.SetPingHandler(func(data string) error {
			mu.Lock()
			if !start.IsZero() {
				if pings[i] == 0 {
					first[i] = time.Now()
				}
				pings[i]++
			}
			mu.Unlock()
			return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		readers.Go(func() {
			for {
				if _, err := c.NextErr(time.Minute); err != nil {
					return
				}
			}
		})
	}
	mu.Lock()
	start = time.Now()
	mu.Unlock()
	time.Sleep(beat + beat/2)
	for _, c := range conns {
		_ = c.WS().Close() // ends its reader
	}
	readers.Wait()
	mu.Lock()
	defer mu.Unlock()
	lo, hi := first[0], first[0]
	for i, p := range pings {
		if p == 0 {
			t.Fatalf("session %d was not pinged within %v", i, time.Since(start))
		}
		if first[i].Before(lo) {
			lo = first[i]
		}
		if first[i].After(hi) {
			hi = first[i]
		}
		if p > 2 {
			t.Errorf("session %d pinged %d times in one and a half intervals", i, p)
		}
	}
	if hi.Sub(lo) < beat/2 {
		t.Errorf("the %d sessions' first pings came within %v of each other: not spread over the %v interval", n, hi.Sub(lo), beat)
	}
}

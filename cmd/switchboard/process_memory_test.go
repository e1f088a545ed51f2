package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
)

// replayBoundSlack is the constant of the bound TestProcess_ReplaysAreBounded
// checks (docs/operations.md): the server's RSS may grow by the send queues
// of the sessions plus this much, for goroutine stacks, one message being
// encoded per session, and the garbage collector's headroom (GOGC 50 lets
// the heap grow to 1.5 times what is live before it collects).
const replayBoundSlack = 48 << 20

// TestProcess_ReplaysAreBounded: sessions that resume full rooms of large
// messages and never read cost the server at most their send queues plus a
// constant, however much history they asked for: replays are read page by
// page, each sized to the room left in the session's queue.
func TestProcess_ReplaysAreBounded(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	const (
		sessions  = 20
		rooms     = 5
		perRoom   = 100
		size      = 60 << 10
		sendQueue = 256 << 10
	)
	in := startInstance(t, "bounded", "--send-queue", "256KiB", "--max-frame", "64KiB", "--history-size", strconv.Itoa(perRoom))
	payload := strings.Repeat("x", size)
	resume := map[string]map[string]any{}
	for r := range rooms {
		room := fmt.Sprintf("full-%d", r)
		var epoch string
		for range perRoom {
			epoch = in.mustPublish(t, room, payload, "", "").Epoch
		}
		resume[room] = map[string]any{"epoch": epoch, "offset": 0}
	}
	// Each session resumes 5 rooms of 100 messages of 60 KB: 30 MB of
	// replay each, 600 MB for all of them if the server took it whole.
	hello := wstest.Frame("hello", "user", "reader", "resume", resume)
	baseline := peakRSS(t, in, 500*time.Millisecond)
	for i := range sessions {
		conn, err := net.Dial("tcp", in.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		_ = conn.(*net.TCPConn).SetReadBuffer(4096)
		req := "GET /ws HTTP/1.1\r\nHost: " + in.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		// Read the handshake answer only; never a frame.
		resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 16), nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("session %d: handshake: %v", i, err)
		}
		if _, err := conn.Write(wstest.MaskedFrame(0x81, []byte(hello))); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	// The replays fill the queues within moments; the write timeout (10s)
	// would close the sessions later.
	peak := peakRSS(t, in, 4*time.Second)
	growth := peak - baseline
	limit := int64(sessions*sendQueue + replayBoundSlack)
	t.Logf("RSS %d MiB before, %d MiB at most with %d sessions resuming %d MB each and reading nothing: +%d MiB (bound %d MiB)",
		baseline>>20, peak>>20, sessions, rooms*perRoom*size/1000000, growth>>20, limit>>20)
	if growth > limit {
		t.Errorf("RSS grew by %d MiB, want at most %d × %d KiB + %d MiB = %d MiB",
			growth>>20, sessions, sendQueue>>10, replayBoundSlack>>20, limit>>20)
	}
}

// peakRSS samples the instance's resident memory for d and returns the
// largest value.
func peakRSS(t *testing.T, in *instance, d time.Duration) int64 {
	t.Helper()
	var peak int64
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", in.cmd.Process.Pid))
		if err != nil {
			t.Fatalf("read the instance's memory: %v", err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err != nil {
					t.Fatalf("VmRSS %q: %v", rest, err)
				}
				peak = max(peak, kb<<10)
			}
		}
	}
	return peak
}

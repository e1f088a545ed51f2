//go:build linux

package transport

import (
	"bytes"
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// needRing fails the test where io_uring is unavailable and the run asks
// for it (SWITCHBOARD_TEST_IO_URING=required, as `make test` does), and
// skips it otherwise.
func needRing(t *testing.T) {
	t.Helper()
	if err := IOUring(); err != nil {
		if os.Getenv("SWITCHBOARD_TEST_IO_URING") == "required" {
			t.Fatalf("io_uring is required here: %v", err)
		}
		t.Skipf("no io_uring here: %v", err)
	}
}

// socketPair returns a connected pair of non-blocking stream sockets whose
// sending side has a send buffer of about size bytes.
func socketPair(t *testing.T, size int) (send, recv int) {
	t.Helper()
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(pair[0]); syscall.Close(pair[1]) })
	if err := syscall.SetsockoptInt(pair[0], syscall.SOL_SOCKET, syscall.SO_SNDBUF, size); err != nil {
		t.Fatal(err)
	}
	return pair[0], pair[1]
}

// fill writes to fd until it takes no more.
func fill(t *testing.T, fd int) {
	t.Helper()
	b := make([]byte, 64<<10)
	for {
		if _, err := syscall.Write(fd, b); err == syscall.EAGAIN {
			return
		} else if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSendRing_EachSocketItsOwnOutcome: one submission of sends to real
// sockets in every state a flusher meets, TCP included. Each send comes
// back with its own outcome at once (none waits for its socket): whole, in
// part, EAGAIN, the peer's hang-up, a descriptor that is not open; and
// the ring goes on working after the failures.
func TestSendRing_EachSocketItsOwnOutcome(t *testing.T) {
	needRing(t)
	r := getRing()
	if r == nil {
		t.Fatal("no ring to be had")
	}
	defer putRing(r, false)

	// A TCP connection, as the server's sockets are.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	var tcpFD int32
	raw, _ := server.(*net.TCPConn).SyscallConn()
	_ = raw.Control(func(fd uintptr) { tcpFD = int32(fd) })
	// And one whose client reads nothing, filled until it takes no more.
	stalled, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalledServer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer stalledServer.Close()
	var fullTCP int32
	raw, _ = stalledServer.(*net.TCPConn).SyscallConn()
	_ = raw.Control(func(fd uintptr) { fullTCP = int32(fd) })
	fill(t, int(fullTCP))

	whole, wholePeer := socketPair(t, 64<<10)
	full, _ := socketPair(t, 4<<10)
	fill(t, full)
	partial, _ := socketPair(t, 4<<10) // room for less than big
	hungUp, hungUpPeer := socketPair(t, 64<<10)
	syscall.Close(hungUpPeer)
	notOpen, _ := socketPair(t, 64<<10)
	syscall.Close(notOpen) // the cleanup's second close fails harmlessly

	big := bytes.Repeat([]byte("x"), 256<<10)
	msg := []byte("hello, ring")
	fds := []int32{tcpFD, int32(whole), int32(full), int32(partial), int32(hungUp), int32(notOpen), fullTCP}
	bufs := [][]byte{msg, msg, msg, big, msg, msg, msg}
	res := make([]int32, len(fds))
	start := time.Now()
	complete, err := r.send(fds, bufs, res, true)
	if err != nil || !complete {
		t.Fatalf("send: complete %v, %v", complete, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the submission took %v: a send waited for its socket", d)
	}
	if res[0] != int32(len(msg)) {
		t.Errorf("TCP socket: %d, want %d", res[0], len(msg))
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("TCP peer read %q, %v", got, err)
	}
	if res[1] != int32(len(msg)) {
		t.Errorf("socket with room: %d, want %d", res[1], len(msg))
	}
	if n, _ := syscall.Read(wholePeer, got); n != len(msg) || !bytes.Equal(got, msg) {
		t.Errorf("its peer read %q", got[:max(n, 0)])
	}
	if res[2] != -int32(syscall.EAGAIN) {
		t.Errorf("full socket: %d, want -EAGAIN", res[2])
	}
	if res[3] <= 0 || res[3] >= int32(len(big)) {
		t.Errorf("socket with less room than %d bytes: %d, want part of them", len(big), res[3])
	}
	if res[4] != -int32(syscall.EPIPE) {
		t.Errorf("hung-up peer: %d, want -EPIPE", res[4])
	}
	if res[5] != -int32(syscall.EBADF) {
		t.Errorf("closed descriptor: %d, want -EBADF", res[5])
	}
	if res[6] != -int32(syscall.EAGAIN) {
		t.Errorf("TCP socket whose client reads nothing: %d, want -EAGAIN", res[6])
	}

	// The ring still works.
	res = res[:1]
	if complete, err := r.send(fds[1:2], bufs[1:2], res, true); err != nil || !complete || res[0] != int32(len(msg)) {
		t.Fatalf("after the failures: complete %v, %v, result %d", complete, err, res[0])
	}
}

// TestSendRing_SelfTestAndReuse: a ring passes the self-test the package
// runs before it uses io_uring, and rings given back are handed out again
// rather than made anew.
func TestSendRing_SelfTestAndReuse(t *testing.T) {
	needRing(t)
	r, err := newSendRing(ringEntries)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if err := r.selfTest(); err != nil {
		t.Fatal(err)
	}
	a := getRing()
	putRing(a, false)
	if b := getRing(); b != a {
		t.Errorf("got a new ring %p, want the one given back %p", b, a)
	} else {
		putRing(b, false)
	}
}

// TestSendBatch_FailedSubmissionFailsItsConnections: a submission the
// kernel refuses leaves its sends' fate unknown, so the connections in it
// are closed (their clients resume; a frame sent twice would be worse),
// not written again; io_uring is then off for the process, and the next
// connection is written with write(2). Not parallel: it breaks the
// process's rings (and mends them after).
func TestSendBatch_FailedSubmissionFailsItsConnections(t *testing.T) {
	needRing(t)
	ts := startServer(t, tcpMode, Config{})
	clients := make([]*client, 3)
	for i := range clients {
		clients[i] = ts.dial(t, "noecho")
	}

	// Every free ring now refuses its submissions (EBADF). The rings keep
	// their real descriptors here, to mend them after.
	real := map[*sendRing]int{}
	rings.mu.Lock()
	for _, r := range rings.free {
		real[r] = r.fd
		r.fd = -1
	}
	rings.mu.Unlock()
	t.Cleanup(func() {
		rings.mu.Lock()
		for r, fd := range real {
			if slices.Contains(rings.free, r) {
				r.fd = fd
			} else {
				syscall.Close(fd) // the broken one, closed as fd -1
			}
		}
		rings.kept = nil
		rings.mu.Unlock()
		rings.failed.Store(false)
	})
	if len(real) == 0 {
		t.Fatal("no free ring to break")
	}

	fan := ts.srv.Fanout()
	for _, c := range clients {
		fan.Send(c.rec.c, Frame{Data: []byte("lost or not")})
	}
	fan.Flush()
	for i, c := range clients {
		if f, err := c.next(); err == nil {
			t.Errorf("client %d got %v, want its connection closed", i, f)
		}
		select {
		case <-c.rec.closed:
		case <-time.After(testTimeout):
			t.Fatalf("client %d: Handler.Closed was not called", i)
		}
	}
	if err := IOUring(); err == nil {
		t.Error("IOUring() = nil after a failed submission")
	}
	before := testutil.ToFloat64(ts.metrics.submissions)
	c := ts.dial(t, "noecho")
	fan = ts.srv.Fanout()
	fan.Send(c.rec.c, Frame{Data: []byte("by write(2)")})
	fan.Flush()
	c.expect(opText, "by write(2)")
	if after := testutil.ToFloat64(ts.metrics.submissions); after != before {
		t.Errorf("%v submissions after io_uring went off", after-before)
	}
}

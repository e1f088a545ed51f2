// Package redistest starts throwaway redis-server processes for tests: each
// on a free loopback port, without persistence, stopped when the test ends.
// Tests can stop, restart and cluster them.
//
// When redis-server is not installed the test is skipped, unless the
// environment sets SWITCHBOARD_TEST_REDIS=required (as `make test` does),
// which turns the skip into a failure.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/freeport"
)

// Server is a redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	args []string
	// Addr is host:port of the server.
	Addr string

	mu   sync.Mutex
	proc *process
}

// process is a started redis-server; exited is closed once it has ended.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs a redis-server on a free loopback port until the test ends.
// Extra arguments are passed to redis-server (for example "--cluster-enabled", "yes").
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return startWith(t, func(s *Server) []string {
		return append([]string{
			"--port", s.port(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", s.dir, "--logfile", "", "--protected-mode", "no",
		}, extra...)
	})
}

// startWith starts a server of t on a free loopback port with the
// arguments args returns for it, and stops it when the test ends. A port
// is free only until someone takes it: when the server exits at once
// (another process took its port meanwhile), it tries again with another
// port, and args is called again.
func startWith(t testing.TB, args func(s *Server) []string) *Server {
	t.Helper()
	bin := lookPath(t, "redis-server")
	var err error
	for range 5 {
		// A port below the ephemeral range, so that no outgoing
		// connection takes it while the server is down for Restart.
		var port int
		if port, err = freeport.Port(); err != nil {
			t.Fatal(err)
		}
		s := &Server{t: t, bin: bin, dir: t.TempDir(), Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		s.args = args(s)
		if err = s.launch(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("start redis-server: %v", err)
	return nil
}

// lookPath finds a Redis program, skipping the test (or failing it, with
// SWITCHBOARD_TEST_REDIS=required) when it is not installed.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("SWITCHBOARD_TEST_REDIS") == "required" {
			t.Fatalf("%s not found and SWITCHBOARD_TEST_REDIS=required: %v", name, err)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return bin
}

func (s *Server) port() string {
	_, port, _ := net.SplitHostPort(s.Addr)
	return port
}

// URL returns redis://Addr.
func (s *Server) URL() string { return "redis://" + s.Addr }

// errExited says that a server ended before it answered.
var errExited = errors.New("redis-server exited at once (its port taken?)")

// launch starts the process and waits until it answers on Addr. It checks
// the process id the server reports, so that another process that holds
// the port is not taken for it.
func (s *Server) launch() error {
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	want := strconv.Itoa(cmd.Process.Pid)
	deadline := time.Now().Add(10 * time.Second)
	for s.Info("server", "process_id") != want {
		select {
		case <-p.exited:
			s.Stop()
			return fmt.Errorf("%s on %s: %w", s.bin, s.Addr, errExited)
		default:
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redis-server on %s did not answer within 10s", s.Addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Stop kills the server (SIGKILL: nothing is saved, as in a crash) and
// waits for it. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Running reports whether the server was started and not stopped since.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// Restart starts the server again on the same port, empty.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.launch(); err != nil {
		s.t.Fatalf("restart: %v", err)
	}
}

// Ping sends PING and checks for PONG.
func (s *Server) Ping() error {
	_, err := s.Do("PING")
	return err
}

// Do sends one command over a fresh connection and returns the first line
// of the reply (bulk replies: their content; arrays: "*<count>"). It is for
// test setup and checks, not speed.
func (s *Server) Do(args ...string) (string, error) {
	var first string
	err := s.roundTrip(args, func(r *bufio.Reader) error {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "$") {
			first, err = readBulk(r, line)
			return err
		}
		first = strings.TrimLeft(line, "+:")
		return nil
	})
	return first, err
}

// Strings sends one command over a fresh connection and returns its reply
// flattened to strings: an array's elements (nested arrays inlined, nil as
// ""), or the one value of any other reply.
func (s *Server) Strings(args ...string) ([]string, error) {
	var out []string
	err := s.roundTrip(args, func(r *bufio.Reader) error {
		var err error
		out, err = readFlat(r, out)
		return err
	})
	return out, err
}

// roundTrip sends a command and hands the reply to read; an error reply
// becomes the error.
func (s *Server) roundTrip(args []string, read func(r *bufio.Reader) error) error {
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var sb strings.Builder
	fmt.Fprintf(&sb, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&sb, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(sb.String())); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	b, err := r.Peek(1)
	if err != nil {
		return err
	}
	if b[0] == '-' {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		return fmt.Errorf("redis: %s", line[1:])
	}
	return read(r)
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// readBulk reads the content of a bulk string whose header line is line.
func readBulk(r *bufio.Reader, line string) (string, error) {
	n, _ := strconv.Atoi(line[1:])
	if n < 0 {
		return "", nil
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// readFlat reads one reply and appends its values to out.
func readFlat(r *bufio.Reader, out []string) ([]string, error) {
	line, err := readLine(r)
	if err != nil {
		return out, err
	}
	if line == "" {
		return out, errors.New("empty reply line")
	}
	switch line[0] {
	case '$':
		v, err := readBulk(r, line)
		return append(out, v), err
	case '*':
		n, _ := strconv.Atoi(line[1:])
		for range max(n, 0) {
			if out, err = readFlat(r, out); err != nil {
				return out, err
			}
		}
		return out, nil
	case '-':
		return append(out, line), nil
	}
	return append(out, line[1:]), nil
}

// WaitReplicated waits until every replica connected to the server has
// acknowledged the replication stream up to where it was when the call
// started (writes may go on meanwhile).
func (s *Server) WaitReplicated() {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	target := int64(-1)
	for {
		info, err := s.Do("INFO", "replication")
		if err == nil {
			offset, acked := replication(info)
			if target < 0 {
				target = offset
			}
			if len(acked) > 0 && slices.Min(acked) >= target {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("replicas of %s did not catch up within 10s: %v\n%s", s.Addr, err, info)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// replication returns the master's replication offset and the offsets its
// replicas acknowledged, from INFO replication text.
func replication(info string) (offset int64, acked []int64) {
	for line := range strings.Lines(info) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
			offset, _ = strconv.ParseInt(v, 10, 64)
		}
		if strings.HasPrefix(line, "slave") && strings.Contains(line, "offset=") {
			_, rest, _ := strings.Cut(line, "offset=")
			v, _, _ := strings.Cut(rest, ",")
			n, _ := strconv.ParseInt(v, 10, 64)
			acked = append(acked, n)
		}
	}
	return offset, acked
}

// Info returns field of the server's INFO section, or "" if it has none
// or does not answer.
func (s *Server) Info(section, field string) string {
	return s.field(field, "INFO", section)
}

// field returns field of the "name:value" lines a command answers with
// (INFO, CLUSTER INFO), or "".
func (s *Server) field(field string, cmd ...string) string {
	text, err := s.Do(cmd...)
	if err != nil {
		return ""
	}
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

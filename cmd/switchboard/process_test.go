package main

// The process tests run the built switchboard binary as separate processes
// (PROTOCOL.md's instances), each on its own loopback port, with their own
// redis-server from internal/redistest, and talk to them over real
// WebSocket connections and the HTTP API. This file holds the harness: it
// builds the binary once, starts and stops instances, sends them signals,
// and shows their logs when a test fails.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

var (
	buildOnce sync.Once
	buildDir  string
	builtBin  string
	buildErr  error
)

// TestMain removes the binary built for the process tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// switchboardBinary builds this command once per test run, static as
// `make build` builds it, and returns the path of the binary.
// SWITCHBOARD_PROCESS_RACE=1 builds it with -race instead, so that the
// instances themselves report data races (slower).
func switchboardBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "switchboard-process-test-")
		if buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "switchboard")
		args := []string{"build", "-o", bin}
		env := os.Environ()
		if os.Getenv("SWITCHBOARD_PROCESS_RACE") != "" {
			args = append(args, "-race")
		} else {
			// As `make build` does, so that TestMakeBuild_StaticWithVersion
			// finds the packages compiled and only links.
			args = append(args, "-trimpath")
			env = append(env, "CGO_ENABLED=0")
		}
		cmd := exec.Command(goTool(), append(args, ".")...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		builtBin = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// goTool returns the go command: the one of $GOROOT when go test set it,
// else the one on $PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// skipIfShort skips a process test under -short: each one starts several
// processes and runs for seconds.
func skipIfShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("process test: starts the built binary; skipped with -short")
	}
}

// instance is one `switchboard serve` process of a test.
type instance struct {
	name string
	// id is the instance id (--instance-id).
	id string
	// addr is the listener's host:port; url and ws are the base URL and the
	// WebSocket URL.
	addr, url, ws string
	args          []string

	cmd    *exec.Cmd
	logs   *logSink
	exited chan struct{}
	// state is set before exited is closed.
	state *os.ProcessState
}

// startInstance starts `switchboard serve --dev` on a free loopback port
// (the process listens on 127.0.0.1:0 and logs the address) with the given
// extra flags, and waits until /readyz answers 200. The process is killed
// when the test ends; its log is shown if the test failed.
func startInstance(t testing.TB, name string, args ...string) *instance {
	t.Helper()
	return startInstanceAt(t, name, "127.0.0.1:0", args...)
}

// startInstanceAt is startInstance on a given listen address, so that a
// restarted instance keeps its URL.
func startInstanceAt(t testing.TB, name, listen string, args ...string) *instance {
	t.Helper()
	in := &instance{
		name: name, id: "i_" + name,
		logs:   newLogSink(),
		exited: make(chan struct{}),
	}
	in.args = append([]string{"serve", "--dev", "--listen", listen, "--instance-id", in.id, "--log-format", "json"}, args...)
	in.cmd = exec.Command(switchboardBinary(t), in.args...)
	// Only the flags count: no SWITCHBOARD_* or REDIS_URL from the
	// environment of whoever runs the tests.
	in.cmd.Env = cleanEnv()
	in.cmd.Stdout = in.logs
	in.cmd.Stderr = in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = in.cmd.Wait()
		in.state = in.cmd.ProcessState
		close(in.exited)
	}()
	t.Cleanup(func() {
		in.kill()
		if in.logs.contains("WARNING: DATA RACE") {
			t.Errorf("instance %s reported a data race (built with SWITCHBOARD_PROCESS_RACE)", in.name)
		}
		if t.Failed() {
			t.Logf("log of instance %s (%s):\n%s", in.name, strings.Join(in.args, " "), in.logs.tail(64<<10))
		}
	})

	select {
	case in.addr = <-in.logs.listening:
	case <-in.exited:
		t.Fatalf("instance %s exited at start (%v):\n%s", name, in.state, in.logs.tail(16<<10))
	case <-time.After(20 * time.Second):
		t.Fatalf("instance %s did not log its listen address within 20s:\n%s", name, in.logs.tail(16<<10))
	}
	if host, port, err := net.SplitHostPort(in.addr); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
			// A wildcard listener (--listen :0) is reached on loopback.
			in.addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	in.url, in.ws = "http://"+in.addr, "ws://"+in.addr+"/ws"
	if slices.Contains(args, "--tls-cert") {
		in.url, in.ws = "https://"+in.addr, "wss://"+in.addr+"/ws"
	}
	in.waitReady(t, 20*time.Second)
	return in
}

// cleanEnv is the environment without Switchboard's own variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SWITCHBOARD_") || strings.HasPrefix(kv, "REDIS_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// waitReady polls /readyz until it answers 200.
func (in *instance) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code := in.readyz()
		if code == http.StatusOK {
			return
		}
		if in.hasExited() {
			t.Fatalf("instance %s exited (%v) before it was ready", in.name, in.state)
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s: /readyz answers %d after %v, want 200", in.name, code, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readyz returns the status of GET /readyz, or 0 if the request failed.
func (in *instance) readyz() int {
	code, _, err := in.request(http.MethodGet, "/readyz", nil)
	if err != nil {
		return 0
	}
	return code
}

func (in *instance) hasExited() bool {
	select {
	case <-in.exited:
		return true
	default:
		return false
	}
}

// signal sends sig to the process.
func (in *instance) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := in.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, in.name, err)
	}
}

// kill kills the process (SIGKILL) and waits for it; killing an exited
// process does nothing.
func (in *instance) kill() {
	if in.hasExited() {
		return
	}
	_ = in.cmd.Process.Kill()
	<-in.exited
}

// waitExit waits for the process to exit and returns its exit code (-1 if
// a signal killed it), or an error after timeout.
func (in *instance) waitExit(timeout time.Duration) (int, error) {
	select {
	case <-in.exited:
		return in.state.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("instance %s still running after %v", in.name, timeout)
	}
}

// httpClient talks to the instances: loopback only, never through a proxy;
// over TLS it trusts wstest's test certificate (instances started with
// --tls-cert serve that one).
var httpClient = &http.Client{
	Timeout: 15 * time.Second,
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 32,
		IdleConnTimeout:     30 * time.Second,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, _, pool, err := wstest.TestCertificate()
			if err != nil {
				return nil, err
			}
			d := tls.Dialer{Config: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
			return d.DialContext(ctx, network, addr)
		},
	},
}

// request sends an HTTP request with body encoded as JSON (nil: no body)
// and returns the status and body of the answer.
func (in *instance) request(method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, in.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// getJSON GETs path, wants 200 and decodes the answer into v.
func (in *instance) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	code, body, err := in.request(http.MethodGet, path, nil)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, in.name, err)
	}
	if code != http.StatusOK {
		t.Fatalf("GET %s on %s = %d %s, want 200", path, in.name, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s on %s: decode %s: %v", path, in.name, body, err)
	}
}

// apiError is the error body of the HTTP API.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// errorCode returns the API error code in body, or "" if there is none.
func errorCode(body []byte) string {
	var e apiError
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// publishResult is the outcome of one API publish or send.
type publishResult struct {
	Status int
	// Pos is the answer of a 200; Code the error code of anything else.
	Pos  protocol.RoomPosition
	Code string
}

// apiPublish sends POST /api/publish (room) or, when room starts with '@',
// POST /api/send to that user. data is any JSON value; from and key may be
// empty.
func (in *instance) apiPublish(room string, data any, from, key string) (publishResult, error) {
	body := map[string]any{"data": data}
	path := "/api/publish"
	if user, ok := strings.CutPrefix(room, "@"); ok {
		path, body["to"] = "/api/send", user
	} else {
		body["room"] = room
	}
	if from != "" {
		body["from"] = from
	}
	if key != "" {
		body["key"] = key
	}
	code, b, err := in.request(http.MethodPost, path, body)
	if err != nil {
		return publishResult{}, fmt.Errorf("POST %s on %s: %w", path, in.name, err)
	}
	res := publishResult{Status: code}
	if code != http.StatusOK {
		res.Code = errorCode(b)
		return res, nil
	}
	if err := json.Unmarshal(b, &res.Pos); err != nil {
		return res, fmt.Errorf("POST %s on %s: decode %s: %w", path, in.name, b, err)
	}
	return res, nil
}

// mustPublish publishes through the API and fails the test unless it
// answered 200.
func (in *instance) mustPublish(t testing.TB, room string, data any, from, key string) protocol.RoomPosition {
	t.Helper()
	res, err := in.apiPublish(room, data, from, key)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("publish to %s on %s = %d %s, want 200", room, in.name, res.Status, res.Code)
	}
	return res.Pos
}

// instanceList is the answer of GET /api/instances.
type instanceList struct {
	Instances []struct {
		ID            string    `json:"id"`
		Address       string    `json:"address"`
		Sessions      int       `json:"sessions"`
		Started       time.Time `json:"started"`
		LastHeartbeat time.Time `json:"lastHeartbeat"`
	} `json:"instances"`
}

// instanceIDs returns the ids GET /api/instances lists, in its order.
func (in *instance) instanceIDs(t testing.TB) []string {
	t.Helper()
	var l instanceList
	in.getJSON(t, "/api/instances", &l)
	ids := make([]string, len(l.Instances))
	for i, e := range l.Instances {
		ids[i] = e.ID
	}
	return ids
}

// userStatus is the answer of GET /api/users/{user}.
type userStatus struct {
	User      string   `json:"user"`
	Online    bool     `json:"online"`
	Sessions  int      `json:"sessions"`
	Instances []string `json:"instances"`
}

func (in *instance) userStatus(t testing.TB, user string) userStatus {
	t.Helper()
	var st userStatus
	in.getJSON(t, "/api/users/"+url.PathEscape(user), &st)
	return st
}

// roomPresence is the answer of GET /api/rooms/{room}/presence.
type roomPresence struct {
	Room   string                  `json:"room"`
	Total  int                     `json:"total"`
	Users  []protocol.UserSessions `json:"users"`
	Cursor string                  `json:"cursor"`
}

func (in *instance) presence(t testing.TB, room string) roomPresence {
	t.Helper()
	var p roomPresence
	in.getJSON(t, "/api/rooms/"+url.PathEscape(room)+"/presence?limit=1000", &p)
	return p
}

// dial connects a session to the instance and starts collecting its
// frames. It must be called from the test's goroutine.
func (in *instance) dial(t testing.TB, hello wstest.Hello) *wstest.Collector {
	t.Helper()
	c := wstest.Dial(t, in.ws, hello)
	if c.Welcome.Instance != in.id {
		t.Fatalf("welcome from %q on %s, want instance %q", c.Welcome.Instance, in.name, in.id)
	}
	return c.Collect()
}

// eventually polls f until it returns "" (done) or timeout passes, and
// then fails with f's last answer, which says what is still wrong.
func eventually(t testing.TB, timeout time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := f()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logSink keeps an instance's output and reports the listen address of
// its "serving" log line on listening.
type logSink struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	partial   []byte
	listening chan string
	announced bool
}

func newLogSink() *logSink { return &logSink{listening: make(chan string, 1)} }

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if l.announced {
		return len(p), nil
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := l.partial[:i]
		l.partial = l.partial[i+1:]
		var rec struct {
			Msg    string `json:"msg"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == "serving" && rec.Listen != "" {
			l.announced = true
			l.partial = nil
			l.listening <- rec.Listen
			break
		}
	}
	return len(p), nil
}

// tail returns the last n bytes of the output, from a line start.
func (l *logSink) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// contains reports whether the output so far holds s.
func (l *logSink) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Contains(l.buf.Bytes(), []byte(s))
}

// times returns the times of the log records whose msg is msg, in order.
func (l *logSink) times(msg string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Time
	for line := range bytes.Lines(l.buf.Bytes()) {
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Msg == msg {
			out = append(out, rec.Time)
		}
	}
	return out
}

// errorsOf joins the errors sent on ch after it is closed.
func errorsOf(ch <-chan error) error {
	var errs []error
	for err := range ch {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

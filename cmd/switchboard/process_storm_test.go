package main

// The reconnect-storm measurement (issue 12): an instance holding N
// sessions is killed, and every one of them comes back at once on the
// survivor, alone and with M cold connections competing for it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// stormPlan is the size of TestProcess_Storm.
type stormPlan struct {
	name string
	// sessions is N, the sessions on the instance that is killed; cold
	// is M, the new sessions that hammer the survivor at the same time in
	// the second scenario; rooms the rooms the sessions are spread over
	// (each joins roomsEach of them).
	sessions, cold, rooms, roomsEach int
	// coldWorkers is how many cold connections are in the making at once.
	coldWorkers int
	// flags are added to both instances' flags (STORM_FLAGS).
	flags []string
	// timeout bounds each scenario from the kill on.
	timeout time.Duration
}

// stormPlanFromEnv returns the tiny plan that runs in make test (60
// sessions, 150 cold ones), or with SWITCHBOARD_STORM=full (make storm)
// the measurement: STORM_SESSIONS (default 2000), STORM_COLD (5000),
// STORM_ROOMS (20), STORM_TIMEOUT (2m). STORM_FLAGS (split at spaces)
// adds flags to the instances in both modes, e.g. "--accept-rate 500".
func stormPlanFromEnv(t *testing.T) stormPlan {
	p := stormPlan{name: "tiny", sessions: 60, cold: 150, rooms: 6, roomsEach: 2, coldWorkers: 32, timeout: time.Minute}
	switch mode := os.Getenv("SWITCHBOARD_STORM"); mode {
	case "", "tiny":
	case "full":
		p = stormPlan{name: "full", sessions: 2000, cold: 5000, rooms: 20, roomsEach: 2, coldWorkers: 256, timeout: 2 * time.Minute}
		num := func(name string, v *int) {
			if s := os.Getenv(name); s != "" {
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					t.Fatalf("%s=%q: want a count", name, s)
				}
				*v = n
			}
		}
		num("STORM_SESSIONS", &p.sessions)
		num("STORM_COLD", &p.cold)
		num("STORM_ROOMS", &p.rooms)
		if s := os.Getenv("STORM_TIMEOUT"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				t.Fatalf("STORM_TIMEOUT=%q: want a duration", s)
			}
			p.timeout = d
		}
		p.roomsEach = min(p.roomsEach, p.rooms)
	default:
		t.Fatalf("SWITCHBOARD_STORM=%q: want tiny or full", mode)
	}
	if p.sessions == 0 || p.rooms == 0 {
		t.Fatalf("a storm needs sessions and rooms: %+v", p)
	}
	p.flags = strings.Fields(os.Getenv("STORM_FLAGS"))
	return p
}

// TestProcess_Storm is the reconnect-storm measurement: two instances on
// one redis-server; N sessions connect to A and join rooms; A is killed
// with SIGKILL, and every session reconnects to B at once, half of them
// with hello.session alone (the state A saved in Redis), half with
// hello.resume (their own positions). A session is back when B welcomed
// it and answered joined with recovered: true for each of its rooms; its
// reconnect time is from the kill to that moment. A refused attempt (an
// HTTP error such as 503, or a close before welcome) is retried after its
// Retry-After or 100 ms. The first scenario runs the storm alone, the
// second with M cold sessions (no session, no resume) connecting to B at
// the same time, coldWorkers at once, each retried until welcomed. Each
// scenario prints one summary line. The tiny plan runs in make test (so
// that the harness cannot rot); make storm runs the full one.
func TestProcess_Storm(t *testing.T) {
	skipIfShort(t)
	plan := stormPlanFromEnv(t)
	rs := redistest.Start(t)
	for i, cold := range []int{0, plan.cold} {
		if i == 1 && cold == 0 {
			break
		}
		name := "alone"
		if cold > 0 {
			name = fmt.Sprintf("with %d cold", cold)
		}
		r := runStorm(t, rs, plan, fmt.Sprintf("s%d", i), cold)
		line := fmt.Sprintf("storm: %s, %s", name, r)
		t.Log(line)
		if os.Getenv("SWITCHBOARD_STORM") != "" {
			fmt.Println(line)
		}
		if r.back != plan.sessions {
			t.Errorf("%s: %d of %d sessions came back within %v; the first problems: %s",
				name, r.back, plan.sessions, plan.timeout, strings.Join(r.problems[:min(5, len(r.problems))], "; "))
		}
		if r.coldIn != cold {
			t.Errorf("%s: %d of %d cold sessions were welcomed within %v", name, r.coldIn, cold, plan.timeout)
		}
	}
}

// stormResult is what one scenario measured.
type stormResult struct {
	sessions, back, notRecovered int
	// times are the per-session reconnect times of those back, sorted.
	times []time.Duration
	// noticed is the longest time from the kill until a session's read
	// failed.
	noticed time.Duration
	// last is the time from the kill until the last session was back.
	last time.Duration
	// refused counts refused attempts of resuming and of cold sessions.
	refused, coldRefused int
	cold, coldIn         int
	coldLast             time.Duration
	flags                []string
	problems             []string
}

func (r stormResult) String() string {
	pct := func(p float64) time.Duration {
		if len(r.times) == 0 {
			return 0
		}
		return r.times[min(len(r.times)-1, int(p*float64(len(r.times))))]
	}
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	s := fmt.Sprintf("%d/%d sessions back (%d not recovered) in %s: p50 %s, p99 %s, max %s (all noticed the kill within %s); %d resume attempts refused",
		r.back, r.sessions, r.notRecovered, ms(r.last), ms(pct(0.50)), ms(pct(0.99)), ms(pct(1)), ms(r.noticed), r.refused)
	if r.cold > 0 {
		s += fmt.Sprintf("; cold %d/%d welcomed in %s, %d refused", r.coldIn, r.cold, ms(r.coldLast), r.coldRefused)
	}
	flags := strings.Join(r.flags, " ")
	if flags == "" {
		flags = "none"
	}
	return s + "; STORM_FLAGS " + flags
}

// stormSession is one of the N sessions of a storm.
type stormSession struct {
	user    string
	session string
	rooms   map[string]protocol.Position
	ws      *websocket.Conn
}

// runStorm runs one scenario with its own two instances (A is killed, B
// survives) on rs, prefix keeping its users and rooms apart from the
// other scenario's.
func runStorm(t *testing.T, rs *redistest.Server, plan stormPlan, prefix string, cold int) stormResult {
	flags := append(redisFlags(rs, "--heartbeat", "25s"), plan.flags...)
	a := startInstance(t, prefix+"-A", flags...)
	b := startInstance(t, prefix+"-B", flags...)
	res := stormResult{sessions: plan.sessions, cold: cold, flags: plan.flags}

	// The N sessions connect to A and join their rooms, 32 at a time.
	sessions := make([]*stormSession, plan.sessions)
	var wg sync.WaitGroup
	errs := make(chan error, plan.sessions)
	sem := make(chan struct{}, 32)
	for i := range sessions {
		s := &stormSession{user: fmt.Sprintf("%s-u%d", prefix, i), rooms: map[string]protocol.Position{}}
		sessions[i] = s
		for k := range plan.roomsEach {
			s.rooms[fmt.Sprintf("%s-room%d", prefix, (i+k)%plan.rooms)] = protocol.Position{}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.connect(a); err != nil {
				errs <- fmt.Errorf("session %d on A: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := errorsOf(errs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range sessions {
			if s.ws != nil {
				s.ws.Close()
			}
		}
	})
	// hello.session resumes from what A saved in Redis: wait until it
	// holds every session's rooms.
	eventually(t, 30*time.Second, func() string {
		for _, s := range sessions {
			rooms, ok, err := savedSession(rs, s.session)
			if err != nil {
				return err.Error()
			}
			for room := range s.rooms {
				if _, saved := rooms[room]; !ok || !saved {
					return fmt.Sprintf("session %s of %s: saved %v (found %v), joined %v", s.session, s.user, rooms, ok, s.rooms)
				}
			}
		}
		return ""
	})

	// The storm: each session notices A's death by its read failing and
	// reconnects to B at once.
	killed := make(chan time.Time, 1)
	deadline := make(chan struct{})
	type back struct {
		at, noticed time.Duration
		recovered   bool
		refused     int
		err         error
	}
	backs := make([]back, len(sessions))
	var done sync.WaitGroup
	for i, s := range sessions {
		done.Go(func() {
			for {
				if _, _, err := s.ws.ReadMessage(); err != nil {
					break
				}
			}
			lost := time.Now()
			s.ws.Close()
			at := <-killed
			killed <- at
			recovered, refused, err := s.resume(b, i%2 == 0, deadline, at.Add(plan.timeout))
			backs[i] = back{at: time.Since(at), noticed: lost.Sub(at), recovered: recovered, refused: refused, err: err}
		})
	}

	// The cold connections start with the kill.
	var coldIn, coldRefused atomic.Int64
	var coldLast atomic.Int64
	coldConns := make(chan *websocket.Conn, cold)
	var coldDone sync.WaitGroup
	startCold := func(at time.Time) {
		var next atomic.Int64
		for range min(plan.coldWorkers, cold) {
			coldDone.Go(func() {
				for {
					j := int(next.Add(1) - 1)
					if j >= cold {
						return
					}
					user := fmt.Sprintf("%s-cold%d", prefix, j)
					room := fmt.Sprintf("%s-room%d", prefix, j%plan.rooms)
					for {
						ws, err := helloAndJoin(b, wstest.Hello{User: user}, room)
						if err == nil {
							coldConns <- ws
							coldIn.Add(1)
							coldLast.Store(int64(time.Since(at)))
							break
						}
						coldRefused.Add(1)
						if !waitRetry(err, deadline) {
							return
						}
					}
				}
			})
		}
	}

	at := time.Now()
	a.kill()
	killed <- at
	if cold > 0 {
		startCold(at)
	}
	timer := time.AfterFunc(plan.timeout, func() { close(deadline) })
	done.Wait()
	coldDone.Wait()
	timer.Stop()
	close(coldConns)
	for ws := range coldConns {
		ws.Close()
	}

	for i, bk := range backs {
		switch {
		case bk.err != nil:
			res.problems = append(res.problems, fmt.Sprintf("session %d: %v", i, bk.err))
		default:
			res.back++
			res.times = append(res.times, bk.at)
			res.last = max(res.last, bk.at)
			if !bk.recovered {
				res.notRecovered++
				res.problems = append(res.problems, fmt.Sprintf("session %d: joined with recovered false", i))
			}
		}
		res.refused += bk.refused
		res.noticed = max(res.noticed, bk.noticed)
	}
	slices.Sort(res.times)
	res.coldIn, res.coldRefused, res.coldLast = int(coldIn.Load()), int(coldRefused.Load()), time.Duration(coldLast.Load())
	for _, s := range sessions {
		if s.ws != nil {
			s.ws.Close()
		}
	}
	b.kill()
	return res
}

// connect dials in, says hello and joins the session's rooms, keeping
// their positions.
func (s *stormSession) connect(in *instance) error {
	ws, welcome, err := dialHello(in, wstest.Hello{User: s.user})
	if err != nil {
		return err
	}
	s.ws, s.session = ws, welcome.Session
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	defer func() { _ = ws.SetReadDeadline(time.Time{}) }()
	id := 0
	for room := range s.rooms {
		id++
		if err := ws.WriteMessage(websocket.TextMessage, []byte(wstest.Frame("join", "id", id, "room", room))); err != nil {
			return fmt.Errorf("join %s: %w", room, err)
		}
		f, err := readFrame(ws)
		if err != nil {
			return err
		}
		if f.Type != protocol.TypeJoined {
			return fmt.Errorf("join %s: got %s", room, f.Type)
		}
		s.rooms[room] = protocol.Position{Epoch: f.Epoch, Offset: f.Offset}
	}
	return nil
}

// resume reconnects the session to in with hello.session (bySession) or
// hello.resume, retrying refused attempts until deadline is closed, and
// waits until each of its rooms is joined again, at the latest until
// until. It reports whether every room was recovered and how many
// attempts were refused.
func (s *stormSession) resume(in *instance, bySession bool, deadline <-chan struct{}, until time.Time) (recovered bool, refused int, err error) {
	hello := wstest.Hello{User: s.user}
	if bySession {
		hello.Session = s.session
	} else {
		hello.Resume = s.rooms
	}
	for {
		ws, _, err := dialHello(in, hello)
		if err != nil {
			refused++
			if !waitRetry(err, deadline) {
				return false, refused, fmt.Errorf("not welcomed before the deadline: %w", err)
			}
			continue
		}
		s.ws = ws
		_ = ws.SetReadDeadline(until)
		recovered = true
		for pending := len(s.rooms); pending > 0; {
			f, err := readFrame(ws)
			if err != nil {
				return false, refused, fmt.Errorf("after welcome: %w", err)
			}
			if f.Type == protocol.TypeError {
				return false, refused, fmt.Errorf("after welcome: error %s: %s", f.Code, f.Message)
			}
			if f.Type == protocol.TypeJoined {
				if _, ok := s.rooms[f.Room]; ok {
					pending--
					recovered = recovered && f.Recovered
				}
			}
		}
		return recovered, refused, nil
	}
}

// refusal is an attempt the server turned away: an HTTP error answer to
// the upgrade (with its Retry-After), or a close before welcome.
type refusal struct {
	status     int
	retryAfter time.Duration
	err        error
}

func (r *refusal) Error() string {
	if r.status != 0 {
		return fmt.Sprintf("upgrade answered %d (Retry-After %v)", r.status, r.retryAfter)
	}
	return r.err.Error()
}

// waitRetry waits before the next attempt after err: the refusal's
// Retry-After, else 100 ms. It returns false if deadline came first.
func waitRetry(err error, deadline <-chan struct{}) bool {
	wait := 100 * time.Millisecond
	var r *refusal
	if errors.As(err, &r) && r.retryAfter > 0 {
		wait = r.retryAfter
	}
	select {
	case <-deadline:
		return false
	case <-time.After(wait):
		return true
	}
}

// dialHello connects to in, sends hello and waits for welcome (20s at
// most).
func dialHello(in *instance, hello wstest.Hello) (*websocket.Conn, protocol.ServerFrame, error) {
	d := *wstest.Dialer()
	d.HandshakeTimeout = 20 * time.Second
	ws, resp, err := d.Dial(in.ws, nil)
	if err != nil {
		if resp != nil {
			r := &refusal{status: resp.StatusCode, err: err}
			if secs, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil {
				r.retryAfter = time.Duration(secs) * time.Second
			}
			return nil, protocol.ServerFrame{}, r
		}
		return nil, protocol.ServerFrame{}, &refusal{err: fmt.Errorf("dial: %w", err)}
	}
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	msg, err := jsonFrame("hello", hello)
	if err == nil {
		err = ws.WriteMessage(websocket.TextMessage, msg)
	}
	if err != nil {
		ws.Close()
		return nil, protocol.ServerFrame{}, &refusal{err: fmt.Errorf("hello: %w", err)}
	}
	f, err := readFrame(ws)
	if err != nil {
		ws.Close()
		return nil, protocol.ServerFrame{}, &refusal{err: fmt.Errorf("waiting for welcome: %w", err)}
	}
	if f.Type != protocol.TypeWelcome {
		ws.Close()
		return nil, protocol.ServerFrame{}, &refusal{err: fmt.Errorf("got %s instead of welcome", wstest.Describe(f))}
	}
	_ = ws.SetReadDeadline(time.Time{})
	return ws, f, nil
}

// helloAndJoin is dialHello followed by a join of room.
func helloAndJoin(in *instance, hello wstest.Hello, room string) (*websocket.Conn, error) {
	ws, _, err := dialHello(in, hello)
	if err != nil {
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(wstest.Frame("join", "id", 1, "room", room))); err != nil {
		ws.Close()
		return nil, &refusal{err: fmt.Errorf("join: %w", err)}
	}
	for {
		f, err := readFrame(ws)
		if err != nil {
			ws.Close()
			return nil, &refusal{err: fmt.Errorf("waiting for joined: %w", err)}
		}
		if f.Type == protocol.TypeJoined {
			_ = ws.SetReadDeadline(time.Time{})
			return ws, nil
		}
		if f.Type == protocol.TypeError {
			ws.Close()
			return nil, &refusal{err: fmt.Errorf("join: %s", wstest.Describe(f))}
		}
	}
}

// readFrame reads one WebSocket message holding one server frame (the
// storm's sessions do not ask for batches).
func readFrame(ws *websocket.Conn) (protocol.ServerFrame, error) {
	_, b, err := ws.ReadMessage()
	if err != nil {
		return protocol.ServerFrame{}, err
	}
	fs, err := protocol.DecodeServer(b)
	if err != nil {
		return protocol.ServerFrame{}, err
	}
	if len(fs) != 1 {
		return protocol.ServerFrame{}, fmt.Errorf("%d frames in one message without batch", len(fs))
	}
	return fs[0], nil
}

// jsonFrame encodes hello as a client frame of type typ.
func jsonFrame(typ string, hello wstest.Hello) ([]byte, error) {
	b, err := json.Marshal(struct {
		Type string `json:"type"`
		wstest.Hello
	}{typ, hello})
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", typ, err)
	}
	return b, nil
}

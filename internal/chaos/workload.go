package chaos

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Config shapes a Workload. The zero value of each field means its
// documented default; WS and API are required.
type Config struct {
	// WS are the WebSocket URLs (ws://host:port/ws) of the instances. Every
	// client gets all of them, in an order of its own, and starts at a
	// random one, so the clients spread over the instances.
	WS []string
	// API are the base URLs (http://host:port) of the same instances, for
	// the HTTP API publishers.
	API []string
	// Users is the number of users, each with one client. Default: 80.
	Users int
	// TwoSessions is how many of the users hold a second client. Default:
	// Users/4.
	TwoSessions int
	// Rooms is the number of rooms. Default: 5.
	Rooms int
	// RoomsPerUser is how many rooms each user's clients join. Default: 2.
	RoomsPerUser int
	// ClientPublishers is how many clients publish. Default: Users/5.
	ClientPublishers int
	// APIPublishers is how many publishers use the HTTP API. Default: 4.
	APIPublishers int
	// Interval is the time between two publishes of one publisher.
	// Default: 250ms.
	Interval time.Duration
	// DirectEvery makes every n-th publish of a publisher a direct message
	// to a random user (client.Send, POST /api/send). Default: 4.
	DirectEvery int
	// InFlight bounds the unanswered publishes of one publisher; while it
	// is reached, the publisher skips its turns. Default: 8.
	InFlight int
	// Backoff is the clients' reconnect back-off. Default: 100ms to 2s.
	Backoff client.Backoff
	// Prefix starts every room and user name. Default: "chaos".
	Prefix string
}

func (c *Config) defaults() error {
	if len(c.WS) == 0 || len(c.API) == 0 {
		return errors.New("chaos: Config.WS and Config.API are required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Users, 80)
	def(&c.TwoSessions, c.Users/4)
	def(&c.Rooms, 5)
	def(&c.RoomsPerUser, 2)
	def(&c.ClientPublishers, max(c.Users/5, 1))
	def(&c.APIPublishers, 4)
	def(&c.DirectEvery, 4)
	def(&c.InFlight, 8)
	c.TwoSessions = min(c.TwoSessions, c.Users)
	c.RoomsPerUser = min(c.RoomsPerUser, c.Rooms)
	if c.Interval <= 0 {
		c.Interval = 250 * time.Millisecond
	}
	if c.Backoff == (client.Backoff{}) {
		c.Backoff = client.Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	}
	if c.Prefix == "" {
		c.Prefix = "chaos"
	}
	return nil
}

// Workload is the clients and publishers of a chaos run. Its methods are
// meant to be called in order: Start, Publish, Stop, WaitCaughtUp, Close,
// Report.
type Workload struct {
	cfg     Config
	ledger  *Ledger
	http    *http.Client
	users   []string
	rooms   []string
	members []*member

	// stop is closed when the publishers must start no more publishes;
	// flush ends the publishes in flight.
	stop     chan struct{}
	stopOnce sync.Once
	flush    context.Context
	giveUp   context.CancelFunc
	wg       sync.WaitGroup
}

// member is one client of the workload.
type member struct {
	name  string
	user  string
	rooms []string
	c     *client.Client
	tr    *Tracker
}

// Start dials every client and joins it to its rooms; ctx bounds the
// dialling and joining. Nothing is published yet: see Publish.
func Start(ctx context.Context, cfg Config) (*Workload, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	flush, giveUp := context.WithCancel(context.Background())
	w := &Workload{
		cfg:    cfg,
		ledger: NewLedger(),
		http: &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				Proxy:               nil,
				MaxIdleConnsPerHost: 2 * cfg.APIPublishers * cfg.InFlight,
				IdleConnTimeout:     30 * time.Second,
			},
		},
		stop:   make(chan struct{}),
		flush:  flush,
		giveUp: giveUp,
	}
	for i := range cfg.Rooms {
		w.rooms = append(w.rooms, fmt.Sprintf("%s-room-%d", cfg.Prefix, i))
	}
	for u := range cfg.Users {
		user := fmt.Sprintf("%s-u%03d", cfg.Prefix, u)
		w.users = append(w.users, user)
		var rooms []string
		for k := range cfg.RoomsPerUser {
			rooms = append(rooms, w.rooms[(u+k)%cfg.Rooms])
		}
		sessions := 1
		if u < cfg.TwoSessions {
			sessions = 2
		}
		for s := range sessions {
			name := fmt.Sprintf("%s/%d", user, s+1)
			w.members = append(w.members, &member{name: name, user: user, rooms: rooms, tr: w.ledger.Track(name, user)})
		}
	}

	const dialers = 8
	errs := make(chan error, len(w.members))
	next := make(chan *member)
	var dialing sync.WaitGroup
	for range dialers {
		dialing.Go(func() {
			for m := range next {
				if err := w.dial(ctx, m); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, m := range w.members {
		next <- m
	}
	close(next)
	dialing.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if err := errors.Join(all...); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// dial connects m and joins its rooms.
func (w *Workload) dial(ctx context.Context, m *member) error {
	// The client starts at a random URL and moves to the next one on every
	// attempt. With one order for everybody, the clients of an instance
	// that goes down would all move to the same next one, and a rolling
	// restart would gather every client on one instance; an order of its
	// own per client keeps them spread, as a load balancer would.
	urls := slices.Clone(w.cfg.WS)
	rand.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	c, err := client.Dial(ctx, client.Config{
		URLs:          urls,
		User:          m.user,
		Backoff:       w.cfg.Backoff,
		Handler:       m.tr.Handle,
		OnStateChange: m.tr.OnStateChange,
	})
	if err != nil {
		return fmt.Errorf("dial %s: %w", m.name, err)
	}
	m.c = c
	inbox := c.Inbox()
	pos, _ := c.Position(inbox)
	m.tr.Joined(inbox, pos)
	for _, room := range m.rooms {
		pos, err := c.Join(ctx, room)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		m.tr.Joined(room, pos)
	}
	return nil
}

// Clients returns the number of clients.
func (w *Workload) Clients() int { return len(w.members) }

// Connected returns the number of clients connected now.
func (w *Workload) Connected() int {
	n := 0
	for _, m := range w.members {
		if m.tr.connected() {
			n++
		}
	}
	return n
}

// On returns how many clients are connected to the instance with id now.
func (w *Workload) On(id string) int {
	n := 0
	for _, m := range w.members {
		if m.tr.connected() && m.c.Instance() == id {
			n++
		}
	}
	return n
}

// Publish starts the publishers. They run until Stop.
func (w *Workload) Publish() {
	step := max(len(w.members)/w.cfg.ClientPublishers, 1)
	for i := 0; i < w.cfg.ClientPublishers && i*step < len(w.members); i++ {
		m := w.members[i*step]
		w.wg.Go(func() { w.publisher(func(n int) { w.clientPublish(m, n) }) })
	}
	for i := range w.cfg.APIPublishers {
		name := fmt.Sprintf("%s-api%d", w.cfg.Prefix, i)
		w.wg.Go(func() { w.publisher(func(n int) { w.apiPublish(name, n) }) })
	}
}

// publisher calls publish with 1, 2, 3 … every Interval, each call on its
// own goroutine, at most InFlight at a time, until Stop; it returns when
// the calls made have returned.
func (w *Workload) publisher(publish func(n int)) {
	// A random phase, so that the publishers do not tick together.
	phase := time.NewTimer(rand.N(w.cfg.Interval))
	select {
	case <-phase.C:
	case <-w.stop:
		phase.Stop()
		return
	}
	slots := make(chan struct{}, w.cfg.InFlight)
	var calls sync.WaitGroup
	defer calls.Wait()
	tick := time.NewTicker(w.cfg.Interval)
	defer tick.Stop()
	for n := 1; ; {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // InFlight publishes wait for answers: skip this turn
		}
		k := n
		n++
		calls.Go(func() {
			defer func() { <-slots }()
			publish(k)
		})
	}
}

// clientPublish makes publish n of client m: a direct message to a random
// user every DirectEvery-th time, else a publish to one of its rooms.
func (w *Workload) clientPublish(m *member, n int) {
	p := Payload{P: m.name, N: n}
	var (
		room string
		pos  client.Position
		err  error
	)
	if n%w.cfg.DirectEvery == 0 {
		to := w.users[rand.IntN(len(w.users))]
		room = protocol.Inbox(to)
		pos, err = m.c.Send(w.flush, to, p)
	} else {
		room = m.rooms[n%len(m.rooms)]
		pos, err = m.c.Publish(w.flush, room, p)
	}
	switch {
	case err == nil:
		w.ledger.Acked(room, pos, p.ID(), m.tr)
	case w.flush.Err() != nil:
		w.ledger.GaveUp(room, p.ID(), err)
	default:
		w.ledger.Refused(room, p.ID(), err)
	}
}

// apiPublish makes publish n of the API publisher name, with a key of its
// own, to a random room or (every DirectEvery-th time) a random user's
// inbox; a third of them name a random user as from. A network error or a
// 5xx answer (503: not stored) is retried with the same key on the next
// instance until it is acknowledged or Stop gives up.
func (w *Workload) apiPublish(name string, n int) {
	p := Payload{P: name, N: n}
	body := map[string]any{"data": p, "key": newKey()}
	path, room := "/api/publish", w.rooms[rand.IntN(len(w.rooms))]
	if n%w.cfg.DirectEvery == 0 {
		to := w.users[rand.IntN(len(w.users))]
		path, room, body["to"] = "/api/send", protocol.Inbox(to), to
	} else {
		body["room"] = room
	}
	if rand.IntN(3) == 0 {
		body["from"] = w.users[rand.IntN(len(w.users))]
	}
	b, err := json.Marshal(body)
	if err != nil {
		panic("chaos: encode a publish: " + err.Error())
	}
	first := rand.IntN(len(w.cfg.API))
	for attempt := 0; ; attempt++ {
		base := w.cfg.API[(first+attempt)%len(w.cfg.API)]
		status, answer, err := w.post(base+path, b)
		switch {
		case err == nil && status == http.StatusOK:
			var rp protocol.RoomPosition
			if err := json.Unmarshal(answer, &rp); err != nil || rp.Room != room {
				w.ledger.Refused(room, p.ID(), fmt.Errorf("POST %s answered 200 %s", path, answer))
				return
			}
			w.ledger.Acked(room, protocol.Position{Epoch: rp.Epoch, Offset: rp.Offset}, p.ID(), nil)
			return
		case err == nil && status < 500:
			w.ledger.Refused(room, p.ID(), fmt.Errorf("POST %s%s answered %d %s", base, path, status, bytes.TrimSpace(answer)))
			return
		case err == nil:
			err = fmt.Errorf("POST %s%s answered %d %s", base, path, status, bytes.TrimSpace(answer))
		}
		t := time.NewTimer(50*time.Millisecond + rand.N(100*time.Millisecond))
		select {
		case <-t.C:
		case <-w.flush.Done():
			t.Stop()
			w.ledger.GaveUp(room, p.ID(), err)
			return
		}
	}
}

// post sends one API request and returns the status and body of the
// answer.
func (w *Workload) post(url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(w.flush, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, answer, nil
}

// Stop makes the publishers start no more publishes and waits for the ones
// in flight to be acknowledged; when ctx ends first, those still waiting
// are given up (and reported). It returns how long the wait took.
func (w *Workload) Stop(ctx context.Context) time.Duration {
	start := time.Now()
	w.stopOnce.Do(func() { close(w.stop) })
	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		w.giveUp()
		<-done
	}
	return time.Since(start)
}

// WaitCaughtUp waits until every client has delivered (or, for its own
// publishes, been acknowledged) every offset of its rooms up to the
// highest acknowledged one, and its position in each room has reached it,
// or until ctx ends, and then says who is still behind.
func (w *Workload) WaitCaughtUp(ctx context.Context) error {
	for {
		why := w.ledger.behind()
		if why == "" {
			why = w.positionsBehind()
		}
		if why == "" {
			return nil
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("chaos: clients not caught up: %s", why)
		}
	}
}

// positionsBehind returns a description of the first client whose position
// in a room (client.Position) is short of the room's highest acknowledged
// offset, or "".
func (w *Workload) positionsBehind() string {
	w.ledger.mu.Lock()
	high := make(map[string]protocol.Position, len(w.ledger.acks))
	for room, m := range w.ledger.acks {
		for pos := range m {
			if h := high[room]; pos.Offset > h.Offset {
				high[room] = pos
			}
		}
	}
	w.ledger.mu.Unlock()
	var behind []string
	for _, m := range w.members {
		for _, room := range append([]string{protocol.Inbox(m.user)}, m.rooms...) {
			h, ok := high[room]
			if !ok {
				continue
			}
			pos, joined := m.c.Position(room)
			if !joined || pos.Epoch != h.Epoch || pos.Offset < h.Offset {
				behind = append(behind, fmt.Sprintf("%s in %s at %s (joined %v), want %s", m.name, room, posString(pos), joined, posString(h)))
			}
		}
	}
	if len(behind) == 0 {
		return ""
	}
	return fmt.Sprintf("%d positions behind, first: %s", len(behind), strings.Join(behind[:min(len(behind), 3)], "; "))
}

// Report checks what the clients delivered against what was acknowledged.
func (w *Workload) Report() Report { return w.ledger.Check() }

// Close stops the publishers, giving up what they wait for, and closes
// every client. A client that stopped by itself before is reported by
// Report.
func (w *Workload) Close() {
	w.stopOnce.Do(func() { close(w.stop) })
	w.giveUp()
	w.wg.Wait()
	var closing sync.WaitGroup
	for _, m := range w.members {
		if m.c == nil {
			continue
		}
		m.tr.Closing()
		closing.Go(func() { _ = m.c.Close() })
	}
	closing.Wait()
	w.http.CloseIdleConnections()
}

// newKey returns a random idempotency key.
func newKey() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

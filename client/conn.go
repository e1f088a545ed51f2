package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/switchboard-rt/switchboard/protocol"
)

// closeGrace is how long Close waits for the server to answer the close
// frame before dropping the connection.
const closeGrace = time.Second

// errUserChanged stops a client whose token names another user than the
// first session's.
var errUserChanged = errors.New("client: the server welcomed another user than before")

// maxRetryAfter caps the server's Retry-After: a misconfigured server (or
// a clock far off, for an HTTP date) must not park the client for hours.
const maxRetryAfter = 5 * time.Minute

// newUpgradeError describes resp, the answer to an upgrade request that
// did not upgrade.
func newUpgradeError(url string, resp *http.Response, now time.Time) *UpgradeError {
	ue := &UpgradeError{
		URL: url, StatusCode: resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), now),
		location:   resp.Header.Get("Location"),
	}
	if resp.Body != nil {
		// The dialer keeps the first KiB of the body for us; no more.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		ue.Body = string(b)
	}
	return ue
}

// parseRetryAfter reads a Retry-After header, delay-seconds or an HTTP
// date (RFC 9110, section 10.2.3), capped at maxRetryAfter; 0 when absent
// or malformed.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(min(max(n, 0), int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

var pingFrame = []byte(`{"type":"ping"}`)

// conn is one WebSocket connection. Its reader, writer and watchdog
// goroutines end when done is closed; the run goroutine waits for them.
type conn struct {
	c   *Client
	ws  *websocket.Conn
	url string
	wg  sync.WaitGroup

	done     chan struct{}
	failOnce sync.Once
	// err is why the connection ended; set before done is closed.
	err      error
	welcomed chan struct{}
	wake     chan struct{}
	// lastRead is when bytes last arrived, in Unix nanoseconds.
	lastRead atomic.Int64
	// blocked is set while the reader waits for room in the queue.
	blocked atomic.Bool

	// Guarded by Client.mu.
	out            [][]byte
	welcome        bool
	heartbeat      time.Duration
	resumed        map[string]bool
	barrier        uint64
	reconnectAfter *time.Duration
}

// connect makes one connection attempt to url and serves the connection
// until it ends.
func (c *Client) connect(url string) outcome {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	var token string
	if c.cfg.Token != nil {
		t, err := c.cfg.Token(ctx)
		if err != nil {
			return outcome{err: &TokenError{Err: err}}
		}
		token = t
	}
	cn := &conn{
		c: c, url: url,
		done: make(chan struct{}), welcomed: make(chan struct{}), wake: make(chan struct{}, 1),
	}
	ws, resp, err := c.dialer(&cn.lastRead).DialContext(ctx, url, c.cfg.Header)
	if err != nil {
		if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
			return outcome{err: newUpgradeError(url, resp, time.Now())}
		}
		return outcome{err: fmt.Errorf("dial %s: %w", url, err)}
	}
	cn.ws = ws
	cn.touch()
	ws.SetPingHandler(func(data string) error {
		cn.touch()
		_ = ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.cfg.WriteTimeout))
		return nil
	})
	ws.SetPongHandler(func(string) error { cn.touch(); return nil })
	_ = ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	if err := ws.WriteMessage(websocket.TextMessage, c.hello(cn, token)); err != nil {
		_ = ws.Close()
		return outcome{err: fmt.Errorf("write hello: %w", err)}
	}
	cn.wg.Add(2)
	go cn.readLoop()
	go cn.writeLoop()

	select {
	case <-cn.welcomed:
	case <-cn.done:
	case <-ctx.Done():
		if c.ctx.Err() == nil {
			cn.fail(errHandshakeTimeout)
		}
	}
	out := outcome{}
	select {
	case <-cn.welcomed:
		out.welcomed = true
		c.connected(cn)
	default:
	}
	select {
	case <-cn.done:
	case <-c.ctx.Done():
		cn.shutdown()
	}
	cn.wg.Wait()
	c.detach(cn)
	out.err = cn.err
	out.reconnectAfter = cn.reconnectAfter
	return out
}

// dialer returns a WebSocket dialer made from Config, whose connections
// touch lastRead with every byte read: a large frame that arrives slowly
// keeps its connection alive.
func (c *Client) dialer(lastRead *atomic.Int64) *websocket.Dialer {
	dial := c.cfg.NetDial
	if dial == nil {
		var nd net.Dialer
		dial = nd.DialContext
	}
	proxy := c.cfg.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	return &websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &liveConn{Conn: nc, lastRead: lastRead}, nil
		},
		Proxy:           proxy,
		TLSClientConfig: c.cfg.TLSConfig,
	}
}

// liveConn records when bytes last arrived.
type liveConn struct {
	net.Conn
	lastRead *atomic.Int64
}

func (l *liveConn) Read(b []byte) (int, error) {
	n, err := l.Conn.Read(b)
	if n > 0 {
		l.lastRead.Store(time.Now().UnixNano())
	}
	return n, err
}

// connected runs in the run goroutine once cn got welcome.
func (c *Client) connected(cn *conn) {
	c.mu.Lock()
	timeout := c.cfg.HeartbeatTimeout
	if timeout == 0 {
		timeout = max(cn.heartbeat, MinHeartbeatTimeout)
	}
	c.log.Info("connected", "url", cn.url, "session", c.session, "instance", c.instance, "user", c.user, "resumed", len(cn.resumed))
	c.mu.Unlock()
	cn.wg.Add(1)
	go cn.watch(timeout)
	c.setState(StateConnected, nil)
	c.mu.Lock()
	if !c.firstDone {
		c.firstDone = true
		c.first <- nil
	}
	c.mu.Unlock()
}

// hello returns the hello frame for cn: it resumes every joined room and
// the inbox from the last position received, and names the last session.
func (c *Client) hello(cn *conn, token string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := protocol.ClientFrame{
		Type: protocol.TypeHello, Token: token, Session: c.session,
		Batch: !c.cfg.NoBatch, Echo: c.cfg.Echo,
	}
	if c.cfg.Token == nil {
		f.User = c.cfg.User
	}
	cn.resumed = make(map[string]bool)
	for name, rm := range c.rooms {
		if !rm.joined {
			continue
		}
		cn.resumed[name] = true
		if rm.hasPos && rm.pos.Epoch != "" {
			if f.Resume == nil {
				f.Resume = make(map[string]Position)
			}
			f.Resume[name] = rm.pos
		}
	}
	b, err := json.Marshal(&f)
	if err != nil {
		panic("client: encode hello: " + err.Error())
	}
	return b
}

// onWelcome makes cn the active connection: the resume barrier and every
// pending request are written, in order. c.mu must be held.
func (c *Client) onWelcome(cn *conn, f *protocol.ServerFrame) {
	if cn.welcome {
		return
	}
	if c.user != "" && f.User != c.user {
		cn.fail(fmt.Errorf("%w: %q, was %q", errUserChanged, f.User, c.user))
		return
	}
	cn.welcome = true
	c.user, c.session, c.instance = f.User, f.Session, f.Instance
	cn.heartbeat = time.Duration(f.Heartbeat) * time.Millisecond
	inbox := c.roomFor(protocol.Inbox(f.User))
	inbox.joined = true
	if !cn.resumed[inbox.name] && f.Inbox != nil {
		inbox.setPos(Position{Epoch: f.Inbox.Epoch, Offset: f.Inbox.Offset})
	}
	c.active = cn
	// The server handles frames after hello only once the resumed rooms are
	// joined, so the pong of this ping ends the resume.
	barrier := &request{frame: protocol.ClientFrame{Type: protocol.TypePing}}
	c.add(barrier)
	cn.barrier = barrier.id
	c.recountHolds()
	for _, id := range slices.Sorted(maps.Keys(c.pending)) {
		if r := c.pending[id]; r.conn == nil && !r.abandoned {
			cn.write(r)
		}
	}
	close(cn.welcomed)
}

// detach forgets cn after it ended: what was written on it and not
// answered is written again on the next connection, except the client's
// own requests and abandoned ones.
func (c *Client) detach(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active == cn {
		c.active = nil
	}
	for id, r := range c.pending {
		if r.conn != cn {
			continue
		}
		r.conn = nil
		switch {
		case r.internal() || r.abandoned:
			delete(c.pending, id)
			c.release(r)
		case r.publishes():
			r.everSent = true
		}
	}
}

// write queues r's frame on cn. c.mu must be held.
func (cn *conn) write(r *request) {
	r.conn = cn
	cn.send(cn.c.encode(r))
}

// send queues a frame for the writer. c.mu must be held.
func (cn *conn) send(b []byte) {
	cn.out = append(cn.out, b)
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

func (cn *conn) touch() { cn.lastRead.Store(time.Now().UnixNano()) }

// fail ends cn with err, the first reason given.
func (cn *conn) fail(err error) {
	cn.failOnce.Do(func() {
		cn.err = err
		close(cn.done)
		_ = cn.ws.Close()
	})
}

// shutdown ends cn with close code 1000, for Close.
func (cn *conn) shutdown() {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "client closed")
	_ = cn.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-cn.done:
	case <-t.C:
	}
	cn.fail(ErrClosed)
}

// readLoop reads and handles the server's frames until the connection
// ends.
func (cn *conn) readLoop() {
	defer cn.wg.Done()
	c := cn.c
	for {
		_, data, err := cn.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				err = &CloseError{Code: ce.Code, Reason: ce.Text}
			}
			cn.fail(err)
			return
		}
		cn.touch()
		frames, err := protocol.DecodeServer(data)
		c.mu.Lock()
		select {
		case <-cn.done:
			c.mu.Unlock()
			return
		default:
		}
		for i := range frames {
			c.handle(cn, &frames[i])
		}
		full := len(c.queue) >= c.cfg.QueueLength
		c.mu.Unlock()
		if err != nil {
			cn.fail(fmt.Errorf("client: bad frame from the server: %w", err))
			return
		}
		if full && !cn.waitForRoom() {
			return
		}
	}
}

// waitForRoom blocks the reader while the message queue is full. It
// returns false if the connection ended meanwhile.
func (cn *conn) waitForRoom() bool {
	c := cn.c
	cn.blocked.Store(true)
	defer func() {
		cn.touch()
		cn.blocked.Store(false)
	}()
	for {
		c.mu.Lock()
		full := len(c.queue) >= c.cfg.QueueLength && !c.stopped
		c.mu.Unlock()
		if !full {
			return true
		}
		select {
		case <-c.space:
		case <-cn.done:
			return false
		}
	}
}

// writeLoop writes queued frames in order until the connection ends.
func (cn *conn) writeLoop() {
	defer cn.wg.Done()
	c := cn.c
	for {
		select {
		case <-cn.wake:
		case <-cn.done:
			return
		}
		c.mu.Lock()
		out := cn.out
		cn.out = nil
		c.mu.Unlock()
		for _, b := range out {
			_ = cn.ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
			if err := cn.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				cn.fail(fmt.Errorf("write: %w", err))
				return
			}
		}
	}
}

// watch drops the connection when nothing arrived for timeout, and sends a
// ping frame after half of it, so that a live connection always has an
// answer in time.
func (cn *conn) watch(timeout time.Duration) {
	defer cn.wg.Done()
	half := timeout / 2
	t := time.NewTimer(half)
	defer t.Stop()
	var pinged int64 // the lastRead a ping was sent after
	for {
		select {
		case <-cn.done:
			return
		case <-t.C:
		}
		if cn.blocked.Load() {
			t.Reset(half)
			continue
		}
		last := cn.lastRead.Load()
		silent := time.Since(time.Unix(0, last))
		if silent >= timeout {
			cn.fail(errDeadConnection)
			return
		}
		next := half - silent
		if silent >= half {
			if pinged != last {
				pinged = last
				cn.c.mu.Lock()
				cn.send(pingFrame)
				cn.c.mu.Unlock()
			}
			next = timeout - silent
		}
		t.Reset(next)
	}
}

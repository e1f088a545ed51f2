package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/internal/backoff"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Client is a connection to a Switchboard deployment that survives restarts
// and network faults: it reconnects, resumes its rooms and retries what was
// not answered. It is safe for concurrent use. Create it with Dial; call
// Close when done, also after it stopped on its own.
type Client struct {
	cfg  Config
	log  *slog.Logger
	bo   backoff.Backoff
	urls []string
	// url is the index of the URL of the current (or next) attempt.
	url int

	// ctx is the client's lifetime; Close cancels it.
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	runDone   chan struct{}
	// done is closed when the client has stopped.
	done chan struct{}
	// first receives the outcome of the first connection: nil on welcome.
	first chan error

	msgs         chan Message
	wakeDispatch chan struct{}
	// space tells a reader waiting on a full queue that it shrank.
	space        chan struct{}
	quit         chan struct{}
	dispatchDone chan struct{}

	mu      sync.Mutex
	state   State
	stopped bool
	err     error
	// firstDone is set once first has been sent to.
	firstDone bool
	lastErr   error
	user      string
	session   string
	instance  string
	active    *conn
	nextID    uint64
	pending   map[uint64]*request
	rooms     map[string]*room
	queue     []Message
}

// Dial connects to one of cfg.URLs and returns once the server welcomed the
// client. Until then it retries with back-off after network errors, HTTP
// answers that may change (5xx, 408, 429; see UpgradeError) and resumable
// close codes, until ctx ends; the error then wraps ctx's and the last
// attempt's. It fails at once, without retrying, when the server answers
// the upgrade with any other HTTP status (an *UpgradeError: the URL is not
// a WebSocket endpoint, or a gateway refused the request), refuses the
// credentials (a *CloseError with code 4003), closes with a code that means
// stop, when Config.Token fails (a *TokenError), or when the TLS handshake
// cannot succeed (an untrusted certificate, a wss:// URL of a server
// without TLS; the error wraps crypto/tls's). ctx bounds only Dial: the
// client then lives until Close.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:          cfg,
		log:          cfg.Logger,
		bo:           cfg.Backoff.internal(),
		urls:         append([]string(nil), cfg.URLs...),
		url:          rand.IntN(len(cfg.URLs)),
		runDone:      make(chan struct{}),
		done:         make(chan struct{}),
		first:        make(chan error, 1),
		wakeDispatch: make(chan struct{}, 1),
		space:        make(chan struct{}, 1),
		quit:         make(chan struct{}),
		dispatchDone: make(chan struct{}),
		pending:      make(map[uint64]*request),
		rooms:        make(map[string]*room),
	}
	if cfg.Handler == nil {
		c.msgs = make(chan Message)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run()
	go c.dispatch()
	select {
	case err := <-c.first:
		if err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	case <-ctx.Done():
		c.mu.Lock()
		last := c.lastErr
		c.mu.Unlock()
		c.Close()
		if last != nil {
			return nil, fmt.Errorf("client: dial: %w (last attempt: %w)", ctx.Err(), last)
		}
		return nil, fmt.Errorf("client: dial: %w", ctx.Err())
	}
}

// Close ends the session with close code 1000 and stops the client. Pending
// requests fail with ErrClosed; messages not yet received from Messages are
// dropped and the channel is closed. After Close returns, Handler and
// OnStateChange are not called any more. Close is idempotent and returns
// nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		<-c.runDone
		close(c.quit)
		<-c.dispatchDone
	})
	return nil
}

// Messages returns the channel of the joined rooms' messages, including the
// inbox, or nil when Config.Handler is set. It is closed when the client has
// stopped and every message before was received, or at Close.
func (c *Client) Messages() <-chan Message { return c.msgs }

// Done is closed when the client has stopped: after Close, or when the
// server closed with a code that means stop. Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped (ErrClosed after Close, a *CloseError
// after a final close code), or nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// State returns the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// User returns the user id the server welcomed the client as.
func (c *Client) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// Session returns the id of the current (or last) session.
func (c *Client) Session() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.session
}

// Instance returns the id of the instance of the current (or last) session.
func (c *Client) Instance() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.instance
}

// Inbox returns the client's inbox room, "@" and its user id.
func (c *Client) Inbox() string { return protocol.Inbox(c.User()) }

// Position returns the position of the last message of room the client
// received (or where its stream started), and whether it is joined to room.
func (c *Client) Position(room string) (Position, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rooms[room]
	if r == nil || !r.joined {
		return Position{}, false
	}
	return r.pos, true
}

// setState records s and tells OnStateChange. Only the run goroutine calls
// it.
func (c *Client) setState(s State, err error) {
	c.mu.Lock()
	changed := c.state != s
	c.state = s
	c.mu.Unlock()
	if changed && c.cfg.OnStateChange != nil {
		c.cfg.OnStateChange(s, err)
	}
}

// run connects and reconnects until the client stops.
func (c *Client) run() {
	defer close(c.runDone)
	var (
		attempt  int
		wait     time.Duration
		welcomed bool
	)
	for n := 0; ; n++ {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
			}
		}
		if c.ctx.Err() != nil {
			c.stop(ErrClosed)
			return
		}
		c.setState(StateConnecting, nil)
		if n > 0 {
			c.url = nextURL(c.url, len(c.urls))
		}
		out := c.connect(c.urls[c.url])
		if c.ctx.Err() != nil {
			c.stop(ErrClosed)
			return
		}
		if out.welcomed {
			welcomed, attempt = true, 0
		}
		d := decide(out, welcomed, c.cfg.ReconnectOnDisconnect)
		if d.stop != nil {
			c.log.Info("stopped", "code", CloseCode(d.stop), "err", d.stop)
			c.stop(d.stop)
			return
		}
		c.mu.Lock()
		c.lastErr = out.err
		c.mu.Unlock()
		wait = d.wait
		switch d.delay {
		case delayBackoff:
			// After a Retry-After, the jitter still spreads the clients
			// that were all told the same delay.
			wait = d.wait + c.bo.Delay(attempt)
			attempt++
		case delayLong:
			// Rate limited for too long: wait at least half of Backoff.Max.
			wait = max(c.bo.Delay(attempt), c.bo.Ceiling(math.MaxInt)/2)
			attempt++
		case delayExact:
			attempt = 0
		}
		c.log.Info("disconnected", "code", CloseCode(out.err), "err", out.err, "retry_in", wait)
		c.setState(StateDisconnected, out.err)
	}
}

// outcome is how a connection attempt ended.
type outcome struct {
	// welcomed is set when the server sent welcome.
	welcomed bool
	// err is why the connection ended: a *CloseError, a *TokenError, an
	// *UpgradeError or a network error.
	err error
	// reconnectAfter is set when the server sent server:reconnect.
	reconnectAfter *time.Duration
}

type delayKind int

const (
	delayBackoff delayKind = iota // back-off with full jitter
	delayLong                     // 4029: at least half of Backoff.Max
	delayExact                    // server:reconnect said how long
)

// decision is what to do after a connection ended.
type decision struct {
	stop  error
	delay delayKind
	// wait is the delay for delayExact, and the part of the delay before
	// the jitter for delayBackoff (a Retry-After).
	wait time.Duration
}

// decide applies PROTOCOL.md's close code table to how a connection ended.
// An HTTP answer that is not an upgrade stops the client unless a later
// attempt may get another one (see UpgradeError). Before the first welcome
// (everWelcomed false), credentials that the server refuses and a TLS
// handshake that cannot succeed stop the client too: Dial fails fast on
// them, while a client that once connected keeps trying, since the
// deployment evidently can serve it.
func decide(out outcome, everWelcomed, reconnectOnDisconnect bool) decision {
	if out.reconnectAfter != nil {
		return decision{delay: delayExact, wait: *out.reconnectAfter}
	}
	var te *TokenError
	var ue *UpgradeError
	switch code := CloseCode(out.err); {
	case errors.Is(out.err, errUserChanged):
		return decision{stop: out.err}
	case code == protocol.CloseNormal, code == protocol.ClosePolicy, code == protocol.CloseTooLarge:
		return decision{stop: out.err}
	case code == protocol.CloseDisconnected && !reconnectOnDisconnect:
		return decision{stop: out.err}
	case code == protocol.CloseUnauthorized && !everWelcomed && !out.welcomed:
		return decision{stop: out.err}
	case errors.As(out.err, &te) && !everWelcomed:
		return decision{stop: out.err}
	case errors.As(out.err, &ue) && !ue.retryable():
		return decision{stop: out.err}
	case errors.As(out.err, &ue):
		return decision{delay: delayBackoff, wait: ue.RetryAfter}
	case !everWelcomed && tlsRefused(out.err):
		return decision{stop: out.err}
	case code == protocol.CloseRateLimited:
		return decision{delay: delayLong}
	}
	return decision{delay: delayBackoff}
}

// stop ends the client with err: the state becomes closed, pending requests
// fail, the dispatcher finishes the queue, Done is closed; then
// OnStateChange hears of it.
func (c *Client) stop(err error) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped, c.err = true, err
	changed := c.state != StateClosed
	c.state = StateClosed
	for _, r := range c.pending {
		c.resolve(r, nil, err)
	}
	if !c.firstDone {
		c.firstDone = true
		c.first <- err
	}
	close(c.done)
	select {
	case c.wakeDispatch <- struct{}{}:
	default:
	}
	c.mu.Unlock()
	if err == ErrClosed { // Close, not a reason
		err = nil
	}
	if changed && c.cfg.OnStateChange != nil {
		c.cfg.OnStateChange(StateClosed, err)
	}
}

// tlsRefused reports whether err is a TLS handshake that fails the same way
// every time: the server's certificate is not trusted (see
// Config.TLSConfig), or a wss:// URL names a server that does not speak TLS.
func tlsRefused(err error) bool {
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	return errors.As(err, &cv) || errors.As(err, &rh)
}

// nextURL picks the URL of a reconnection: a random one other than the last.
// Rotating in list order would send every client of an instance that went
// away to the same next instance.
func nextURL(last, n int) int {
	if n < 2 {
		return 0
	}
	return (last + 1 + rand.IntN(n-1)) % n
}

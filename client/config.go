package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/internal/backoff"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Defaults of Config fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultQueueLength      = 1024
	// MinHeartbeatTimeout is the smallest default heartbeat timeout; see
	// Config.HeartbeatTimeout.
	MinHeartbeatTimeout = 5 * time.Second
)

// Config configures a Client. The zero value of each field means its
// documented default; URLs and one of Token or User are required.
type Config struct {
	// URLs are WebSocket endpoints (ws:// or wss://, path /ws) of instances
	// of one deployment. The client starts at a random one and moves to
	// another one, chosen at random, on every further connection attempt,
	// so that the clients of an instance that went away spread over the
	// others.
	URLs []string
	// Token returns the JWT for hello. It is called before every connection
	// attempt, so after the server closed with 4003 (token expired) the next
	// connection carries a fresh token. Its ctx ends when the attempt times
	// out (HandshakeTimeout) or the client is closed. Nil means dev mode:
	// hello names User instead.
	Token func(ctx context.Context) (string, error)
	// User is the user id for a server in dev mode, used when Token is nil.
	User string
	// NoBatch turns off batch mode (several server frames per WebSocket
	// frame), which is on by default.
	NoBatch bool
	// Echo asks the server to deliver the client's own publishes back to it
	// as messages, besides the ack. Default: off, own publishes are acked
	// only.
	Echo bool
	// Backoff shapes the delay between connection attempts.
	Backoff Backoff
	// HeartbeatTimeout bounds how long a dead connection goes unnoticed:
	// when nothing (not a byte: no frame, no WebSocket ping) has arrived for
	// half of it, the client sends a ping frame, which the server answers
	// with pong, and when nothing has arrived for all of it the connection
	// is dropped and the client reconnects. Time spent waiting for the
	// Handler or the Messages reader (see QueueLength) does not count.
	// Default: the heartbeat interval the server announces in welcome (25s
	// on a default server), but at least MinHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// HandshakeTimeout bounds one connection attempt, from fetching the
	// token to the welcome frame. Default: 10s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each write to the socket. Default: 10s.
	WriteTimeout time.Duration
	// ReconnectOnDisconnect makes the client reconnect after close code
	// 4004 (disconnected through the server's API) instead of stopping.
	ReconnectOnDisconnect bool
	// Handler, when set, receives every Message, one at a time, from one
	// goroutine of the client, and Messages returns nil. It must not call
	// Close, which waits for it.
	Handler func(Message)
	// QueueLength is how many received messages may wait for Handler or
	// for the reader of Messages. When the queue is full the client stops
	// reading from the connection: a consumer slower than its rooms is in
	// the end closed by the server (4008) and resumes without loss.
	// Default: 1024.
	QueueLength int
	// OnStateChange, when set, is called with each new State, one call at a
	// time, from the client's connection goroutine; err is why the
	// connection ended (nil for StateConnecting and StateConnected, and for
	// StateClosed after Close). It must return quickly and must not call
	// Close, which waits for it. Its calls are not ordered with those of
	// Handler: messages of a new connection may be handled before the
	// connected state is reported.
	OnStateChange func(s State, err error)
	// Header is sent with every upgrade request: an Origin, cookies, or
	// the credentials of a gateway in front of the deployment (the
	// Switchboard token travels in hello; see Token). The headers of the
	// WebSocket handshake itself (Connection, Upgrade, Sec-WebSocket-*)
	// are refused by Dial. Host sets the request's host.
	Header http.Header
	// TLSConfig is used for wss:// URLs: the root CAs to trust, client
	// certificates. Default: the system's roots, and the URL's host as
	// ServerName. The client does not modify it.
	TLSConfig *tls.Config
	// Proxy returns the URL of the proxy for an upgrade request, or nil
	// for none, as http.Transport.Proxy does; http:// (CONNECT) and
	// socks5:// proxies are supported. Default: http.ProxyFromEnvironment
	// (HTTPS_PROXY, HTTP_PROXY, NO_PROXY); set a function that returns
	// nil, nil to connect directly whatever the environment says.
	Proxy func(*http.Request) (*url.URL, error)
	// NetDial opens the network connection to addr (the host:port of the
	// URL, or of the proxy), for example to pick a local address, resolve
	// names another way or tunnel. TLS for wss:// URLs is done on top of
	// the connection it returns. Default: a net.Dialer.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives the client's logs: Info for connections and
	// disconnections, Debug for details. Nil discards them.
	Logger *slog.Logger
}

// Backoff shapes the delays between connection attempts: the delay before
// attempt n is drawn uniformly from [0, min(Max, Min·Factorⁿ)) (exponential
// back-off with full jitter). A connection that reaches welcome starts the
// count again.
type Backoff struct {
	// Min is the ceiling of the first delay. Default: 200ms.
	Min time.Duration
	// Max caps the delays. Default: 10s.
	Max time.Duration
	// Factor is the growth per attempt. Default: 2.
	Factor float64
}

func (c *Config) check() error {
	if len(c.URLs) == 0 {
		return errors.New("client: Config.URLs is empty")
	}
	for i, u := range c.URLs {
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("client: Config.URLs[%d]: %w", i, err)
		}
		if p.Scheme != "ws" && p.Scheme != "wss" {
			return fmt.Errorf("client: Config.URLs[%d] %q: the scheme must be ws or wss", i, u)
		}
		if p.User != nil {
			return fmt.Errorf("client: Config.URLs[%d]: a WebSocket URL holds no user name or password; use Config.Header", i)
		}
		if p.Host == "" {
			return fmt.Errorf("client: Config.URLs[%d] %q: no host", i, u)
		}
	}
	header, err := checkHeader(c.Header)
	if err != nil {
		return err
	}
	c.Header = header
	if c.Token == nil && !protocol.ValidUser(c.User) {
		return errors.New("client: set Config.Token, or Config.User to a valid user id for a server in dev mode")
	}
	switch {
	case c.HeartbeatTimeout < 0, c.HandshakeTimeout < 0, c.WriteTimeout < 0,
		c.Backoff.Min < 0, c.Backoff.Max < 0:
		return errors.New("client: durations in Config must not be negative")
	case c.QueueLength < 0:
		return errors.New("client: Config.QueueLength must not be negative")
	case c.Backoff.Factor != 0 && c.Backoff.Factor < 1:
		return errors.New("client: Config.Backoff.Factor must be at least 1")
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.QueueLength == 0 {
		c.QueueLength = DefaultQueueLength
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// checkHeader returns a copy of h with canonical keys, so that a later
// change by the caller does not race with a dial, or an error for a header
// that the WebSocket handshake sets itself.
func checkHeader(h http.Header) (http.Header, error) {
	if h == nil {
		return nil, nil
	}
	out := make(http.Header, len(h))
	for k, vs := range h {
		ck := http.CanonicalHeaderKey(k)
		if ck == "Connection" || ck == "Upgrade" || strings.HasPrefix(ck, "Sec-Websocket-") {
			return nil, fmt.Errorf("client: Config.Header: %s belongs to the WebSocket handshake and is set by the client", k)
		}
		out[ck] = append(out[ck], vs...)
	}
	return out, nil
}

func (b Backoff) internal() backoff.Backoff {
	return backoff.Backoff{Min: b.Min, Max: b.Max, Factor: b.Factor}
}

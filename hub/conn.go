package hub

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Bounds of the socket send buffer the hub asks the kernel for.
const (
	minSocketBuffer = 32 << 10
	maxSocketBuffer = 256 << 10
)

// readBufferBytes is small on purpose: it is held for the whole life of an
// idle connection. Larger frames are read in several steps. It must stay
// over 256 bytes, or the WebSocket library makes a 4 KiB buffer instead.
const readBufferBytes = 384

// writeBufferPool is never drawn from: the hub writes frames itself (see
// wire.go), and a pool keeps websocket.Conn from allocating a write buffer
// per connection.
var writeBufferPool = &sync.Pool{}

// ServeHTTP upgrades a request to a WebSocket and runs the session on it
// until it ends. It is the handler of GET /ws.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.draining.Load() {
		http.Error(w, "draining: reconnect to another instance", http.StatusServiceUnavailable)
		return
	}
	originOK := h.originAllowed(r)
	up := websocket.Upgrader{
		// The connection reads through hj's buffer (see readerHijacker).
		WriteBufferPool: writeBufferPool,
		// The Origin is checked after the upgrade so that a browser sees
		// close code 1008 rather than an opaque failed handshake.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	hj := &readerHijacker{ResponseWriter: w}
	conn, err := up.Upgrade(hj, r, nil)
	if err != nil {
		h.metrics.authFailure("upgrade")
		return // Upgrade has answered the request.
	}
	// The connection gets a goroutine of its own and the handler returns,
	// so that net/http releases the request's buffers (about 10 KiB) now
	// rather than when the session ends.
	h.conns.Add(1)
	go h.serveConn(conn, hj.br, r.RemoteAddr, originOK, r.Header.Get("Origin"))
}

// readerHijacker gives websocket.Upgrader a read buffer of the hub's own:
// small (readBufferBytes), and one whose Buffered count the reader can
// see, so that it waits for the socket only when no frame is buffered.
type readerHijacker struct {
	http.ResponseWriter
	br *bufio.Reader
}

// Hijack implements http.Hijacker.
func (w *readerHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hub: the response writer cannot be hijacked")
	}
	c, brw, err := hj.Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		return c, brw, err // the Upgrader refuses data sent before the handshake
	}
	w.br = bufio.NewReaderSize(c, readBufferBytes)
	return c, bufio.NewReadWriter(w.br, brw.Writer), nil
}

// serveConn runs one upgraded connection: the Origin verdict and hello, then
// it starts the session (whose read loop then owns the connection).
func (h *Hub) serveConn(conn *websocket.Conn, br *bufio.Reader, remote string, originOK bool, origin string) {
	defer h.conns.Add(-1)
	if !originOK {
		defer conn.Close()
		h.log.Warn("origin refused", "remote", remote, "origin", origin)
		h.metrics.authFailure("origin")
		closeNow(conn, closePolicy, "origin not allowed")
		return
	}
	conn.SetReadLimit(h.cfg.MaxFrameBytes)
	if tc, ok := conn.NetConn().(*net.TCPConn); ok {
		// Bound what the kernel buffers for a client that stops reading,
		// so that the send queue, not megabytes of socket buffer, decides
		// when it is a slow consumer.
		_ = tc.SetWriteBuffer(min(max(h.cfg.SendQueueBytes, minSocketBuffer), maxSocketBuffer))
	}

	s, hello := h.handshake(conn, remote)
	if s == nil {
		_ = conn.Close()
		return
	}
	s.br = br
	h.run(s, hello)
}

// originAllowed applies Config.AllowedOrigins to the request's Origin.
// Requests without Origin (not from a browser) are allowed.
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || h.cfg.Dev {
		return true
	}
	if len(h.cfg.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, allowed := range h.cfg.AllowedOrigins {
		if allowed == "*" || strings.EqualFold(allowed, origin) {
			return true
		}
	}
	return false
}

// closeNow sends a close frame and drops the connection.
func closeNow(conn *websocket.Conn, code int, reason string) {
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	// Give the client a moment to read the close frame before the TCP
	// connection goes away under it.
	_ = conn.SetReadDeadline(time.Now().Add(closeGrace))
	for {
		if _, _, err := conn.NextReader(); err != nil {
			return
		}
	}
}

// handshake reads and checks hello and returns the new session, or nil after
// closing the connection.
func (h *Hub) handshake(conn *websocket.Conn, remote string) (*Session, *protocol.ClientFrame) {
	_ = conn.SetReadDeadline(time.Now().Add(h.cfg.HelloTimeout))
	typ, data, err := conn.ReadMessage()
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			h.metrics.authFailure("hello_timeout")
			closeNow(conn, closeUnauthorized, "no hello in time")
		}
		return nil, nil
	}
	_ = conn.SetReadDeadline(time.Time{})
	h.metrics.frameIn(len(data))
	if typ != websocket.TextMessage {
		h.metrics.authFailure("no_hello")
		closeNow(conn, closeUnauthorized, "hello must be the first frame")
		return nil, nil
	}
	f, derr := protocol.Decode(data)
	if derr != nil || f.Type != protocol.TypeHello {
		h.metrics.authFailure("no_hello")
		closeNow(conn, closeUnauthorized, "hello must be the first frame")
		return nil, nil
	}
	claims, reason := h.authenticate(f)
	if reason != "" {
		h.metrics.authFailure("token")
		h.log.Info("hello refused", "remote", remote, "err", reason)
		closeNow(conn, closeUnauthorized, reason)
		return nil, nil
	}
	if h.draining.Load() {
		closeNow(conn, closeRestarting, "draining")
		return nil, nil
	}
	s := &Session{
		hub:     h,
		conn:    conn,
		raw:     rawConn(conn.NetConn()),
		id:      newID("s_"),
		user:    claims.User,
		batch:   f.Batch,
		echo:    f.Echo,
		claims:  claims,
		limiter: rate.NewLimiter(rate.Limit(h.cfg.Rate), h.cfg.Burst),
	}
	s.flushSlice = s.id[len(s.id)-1] % stateFlushSlices
	s.touch()
	return s, f
}

// badFrameBurst is how many invalid frames in a row (refilled at one per
// second) a session may send before it is closed with 1008.
const badFrameBurst = 10

// authenticate checks hello's token (or, in dev mode, its user). It returns
// the claims, or the reason for refusing.
func (h *Hub) authenticate(f *protocol.ClientFrame) (auth.Claims, string) {
	if f.Token == "" {
		if !h.cfg.Dev {
			return auth.Claims{}, "hello needs a token"
		}
		if !protocol.ValidUser(f.User) {
			return auth.Claims{}, "dev mode: hello.user must be a valid user id"
		}
		return auth.Claims{User: f.User}, ""
	}
	if h.cfg.Verifier == nil {
		return auth.Claims{}, "this server verifies no tokens"
	}
	c, err := h.cfg.Verifier.Verify(f.Token)
	if err != nil {
		if errors.Is(err, auth.ErrExpired) {
			return auth.Claims{}, "token expired"
		}
		return auth.Claims{}, "invalid token"
	}
	return c, ""
}

package transport

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of Config fields.
const (
	DefaultMaxMessageBytes = 64 << 10
	DefaultSendQueueBytes  = 1 << 20
	DefaultWriteTimeout    = 10 * time.Second
	DefaultCloseGrace      = 2 * time.Second
	DefaultMaxWriteDelay   = 64 * time.Millisecond
)

// Bounds of the socket send buffer a connection asks the kernel for.
const (
	minSocketBuffer = 32 << 10
	maxSocketBuffer = 256 << 10
)

// Config configures a Server. The zero value of each field means its
// default.
type Config struct {
	// MaxMessageBytes is the largest message a peer may send, over all its
	// fragments; a larger one closes the connection with 1009. Default:
	// 64 KiB.
	MaxMessageBytes int64
	// SendQueueBytes bounds the bytes of frames queued for one connection;
	// see Conn.Send and Conn.SendWait. Default: 1 MiB.
	SendQueueBytes int
	// MaxQueuedBytes is the instance's ceiling on queued bytes over all
	// connections. Past it, a Send to a connection that holds at least its
	// share of the ceiling closes it with 4008. Default: no ceiling.
	MaxQueuedBytes int64
	// WriteTimeout bounds each blocking write, and how long SendWait waits
	// for room. Default: 10s.
	WriteTimeout time.Duration
	// CloseGrace is how long a connection that sent its close frame waits
	// for the peer's before it closes the socket. Default: 2s.
	CloseGrace time.Duration
	// MaxWriteDelay is the longest a saturated flusher holds back a
	// connection's next write so that more messages go out in it (see
	// pace.go); a server that keeps up never delays a write. Default:
	// 64ms; negative: writes are never held back.
	MaxWriteDelay time.Duration
	// Rate is how many messages and control frames per second a peer may
	// send, with bursts of Burst; a message's continuation frames are not
	// counted, but a message may have at most one fragment per 256 bytes
	// of MaxMessageBytes (and 16 in any case). Zero Rate means no limit.
	Rate  float64
	Burst int
	// NoIOUring makes the flusher write each socket with its own write(2)
	// rather than a chunk of sockets with one io_uring submission (which
	// it does only where the kernel allows; see IOUring).
	NoIOUring bool
	// Metrics receives counters; nil counts nothing.
	Metrics *Metrics
}

// Server holds what the WebSocket connections of one instance share: the
// limits, the flusher workers and the instance-wide count of queued bytes.
// It is safe for concurrent use.
type Server struct {
	cfg     Config
	metrics *Metrics
	flusher *flusher
	wires   sync.Pool
	// queued counts the bytes queued over all connections; queuedConns
	// counts the connections with a non-empty queue.
	queued      atomic.Int64
	queuedConns atomic.Int64
	// conns counts started connections whose reading has not ended.
	conns atomic.Int64
	// keepNetConns keeps plain connections on their net.Conn rather than
	// detaching them (for the tests of that path, which other platforms
	// take).
	keepNetConns bool
}

// NewServer returns a Server for cfg.
func NewServer(cfg Config) (*Server, error) {
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.SendQueueBytes == 0 {
		cfg.SendQueueBytes = DefaultSendQueueBytes
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.CloseGrace == 0 {
		cfg.CloseGrace = DefaultCloseGrace
	}
	if cfg.MaxWriteDelay == 0 {
		cfg.MaxWriteDelay = DefaultMaxWriteDelay
	}
	switch {
	case cfg.MaxMessageBytes < 0:
		return nil, errors.New("transport: Config.MaxMessageBytes must be positive")
	case cfg.SendQueueBytes < 0:
		return nil, errors.New("transport: Config.SendQueueBytes must be positive")
	case cfg.MaxQueuedBytes < 0:
		return nil, errors.New("transport: Config.MaxQueuedBytes must not be negative")
	case cfg.WriteTimeout < 0 || cfg.CloseGrace < 0:
		return nil, errors.New("transport: durations in Config must be positive")
	case cfg.Rate < 0 || cfg.Burst < 0:
		return nil, errors.New("transport: Config.Rate and Config.Burst must not be negative")
	}
	s := &Server{cfg: cfg, metrics: cfg.Metrics}
	s.wires.New = newWire
	s.flusher = newFlusher(&s.wires, cfg.MaxWriteDelay, !cfg.NoIOUring)
	return s, nil
}

// Open makes a Conn of nc, a connection whose WebSocket handshake is done
// (see Upgrade); early holds bytes the peer sent after its handshake. The
// Conn reads nothing until Start.
func (s *Server) Open(nc net.Conn, early []byte, h Handler) *Conn {
	c := &Conn{srv: s, nc: nc, h: h, early: early}
	tcp := nc
	if tc, ok := nc.(*tls.Conn); ok {
		tcp = tc.NetConn()
	}
	if tc, ok := tcp.(*net.TCPConn); ok {
		// Bound what the kernel buffers for a peer that stops reading, so
		// that the send queue, not megabytes of socket buffer, decides
		// when it is a slow consumer.
		_ = tc.SetWriteBuffer(min(max(s.cfg.SendQueueBytes, minSocketBuffer), maxSocketBuffer))
	}
	c.fd = -1
	if tcp == nc {
		c.raw = rawConn(nc)
		if c.raw != nil && !s.keepNetConns && canDetach() {
			if fd, err := detach(c.raw); err == nil {
				_ = nc.Close()
				c.nc, c.raw, c.fd = nil, nil, int32(fd)
			}
		}
		if c.parks() && c.fd < 0 {
			c.fd = int32(fdOf(c.raw))
		}
	} else if shallowWait {
		// TLS: reads go through crypto/tls, but the socket underneath
		// can wait for input in the poller all the same (see readTLS).
		c.fd = int32(fdOf(rawConn(tcp)))
	}
	if s.cfg.Rate > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(s.cfg.Rate), s.cfg.Burst)
	}
	c.touch()
	return c
}

// The poller is the process's: one epoll set for the idle connections of
// every Server, with a goroutine only while some are registered.
var (
	pollerOnce sync.Once
	thePoller  *poller
)

// sharedPoller returns the process's poller, or nil where there is none.
func sharedPoller() *poller {
	pollerOnce.Do(func() {
		if p, err := newPoller(); err == nil {
			thePoller = p
		}
	})
	return thePoller
}

// Conns returns the number of started connections whose reading has not
// ended.
func (s *Server) Conns() int64 { return s.conns.Load() }

// QueuedBytes returns the bytes queued over all connections.
func (s *Server) QueuedBytes() int64 { return s.queued.Load() }

// overCeiling reports whether queueing size more bytes on a connection
// holding queued must close it: the instance is over its ceiling and the
// connection holds at least its share.
func (s *Server) overCeiling(queued, size int) bool {
	ceiling := s.cfg.MaxQueuedBytes
	if ceiling <= 0 || s.queued.Load()+int64(size) <= ceiling {
		return false
	}
	share := ceiling / max(1, s.queuedConns.Load())
	return int64(queued+size) >= share
}

// maxFragments is how many frames one message may have.
func (s *Server) maxFragments() int {
	return max(16, int(s.cfg.MaxMessageBytes/256))
}

func (s *Server) getWire() *wire { return s.wires.Get().(*wire) }

func (s *Server) putWire(w *wire) { putWire(&s.wires, w) }

// Fanout sends frames to many connections and starts their writers in
// chunks, so that writing begins while the caller goes on and the flusher
// is locked once a chunk. The zero value is not usable: make one with
// Server.Fanout. Call Flush when done.
type Fanout struct {
	srv  *Server
	n    int
	next [flushChunk]*Conn
}

// Fanout returns a Fanout for the connections of s.
func (s *Server) Fanout() Fanout { return Fanout{srv: s} }

// Send queues f on c like Conn.Send.
func (b *Fanout) Send(c *Conn, f Frame) bool {
	ok, kick := c.enqueue(f)
	if !kick {
		return ok
	}
	if !c.direct() {
		c.kick()
		return ok
	}
	b.next[b.n] = c
	b.n++
	if b.n == len(b.next) {
		b.Flush()
	}
	return ok
}

// Flush starts the writers still pending.
func (b *Fanout) Flush() {
	b.srv.flusher.schedule(b.next[:b.n]...)
	clear(b.next[:b.n])
	b.n = 0
}

package transport

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// writePath is how a socket write was made: the label of
// switchboard_socket_writes_total.
type writePath uint8

const (
	pathDirect   writePath = iota // a flusher worker's non-blocking write
	pathBlocking                  // a connection's own writer
)

var writePathLabels = [...]string{pathDirect: "direct", pathBlocking: "blocking"}

// Metrics holds the transport's Prometheus collectors. A nil *Metrics
// counts nothing, so every method here is safe on nil.
type Metrics struct {
	framesIn  prometheus.Counter
	bytesIn   prometheus.Counter
	framesOut prometheus.Counter
	bytesOut  prometheus.Counter
	writes    *prometheus.CounterVec
	// writesByPath are the children of writes, looked up once: write runs
	// for every socket write, and a label lookup hashes the label.
	writesByPath      [len(writePathLabels)]prometheus.Counter
	submissions       prometheus.Counter
	closes            *prometheus.CounterVec
	overflows         prometheus.Counter
	instanceOverflows prometheus.Counter
}

// NewMetrics creates the transport's collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		framesIn:  prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_frames_received_total", Help: "WebSocket frames received from clients (data, continuation and control)."}),
		bytesIn:   prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_received_bytes_total", Help: "Bytes of WebSocket frames received from clients, headers included."}),
		framesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_frames_sent_total", Help: "WebSocket frames written to clients (a batched frame counts once)."}),
		bytesOut:  prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_sent_bytes_total", Help: "Payload bytes of WebSocket frames written to clients."}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_socket_writes_total",
			Help: "Socket writes, by path: direct (a non-blocking write from a shared flusher worker) or blocking (a connection's own writer, for what a socket did not take at once, and for TLS)."}, []string{"path"}),
		submissions: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_io_uring_submissions_total",
			Help: "io_uring submissions of flusher workers, each with the direct writes of up to 32 sockets (counted in switchboard_socket_writes_total)."}),
		closes:            prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_session_closes_total", Help: "Connections closed by the server, by close code."}, []string{"code"}),
		overflows:         prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_send_queue_overflows_total", Help: "Connections closed with 4008 because their send queue overflowed."}),
		instanceOverflows: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_send_queue_ceiling_overflows_total", Help: "Connections closed with 4008 because the instance's queued bytes passed --max-queued-bytes."}),
	}
	for p, label := range writePathLabels {
		m.writesByPath[p] = m.writes.WithLabelValues(label)
	}
	reg.MustRegister(m.framesIn, m.bytesIn, m.framesOut, m.bytesOut, m.writes, m.submissions, m.closes, m.overflows, m.instanceOverflows)
	return m
}

// RegisterGauges registers the gauges that read s's state on reg.
func (s *Server) RegisterGauges(reg prometheus.Registerer) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_send_queue_bytes",
		Help: "Bytes of frames queued, or held by a write the client is not taking, over all connections."},
		func() float64 { return float64(s.QueuedBytes()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_write_pacing_seconds",
		Help: "How long a connection waits at least between two writes while the flusher is saturated (0: writes go out at once)."},
		func() float64 { return float64(s.flusher.interval.Load()) / 1000 }))
}

func (c *Conn) countFrame(n int) {
	if m := c.srv.metrics; m != nil {
		m.framesIn.Inc()
		m.bytesIn.Add(float64(n))
	}
}

func (m *Metrics) wrote(frames, bytes int) {
	if m != nil && frames > 0 {
		m.framesOut.Add(float64(frames))
		m.bytesOut.Add(float64(bytes))
	}
}

func (m *Metrics) write(path writePath) {
	if m != nil {
		m.writesByPath[path].Inc()
	}
}

func (m *Metrics) submitted() {
	if m != nil {
		m.submissions.Inc()
	}
}

func (m *Metrics) closed(code int) {
	if m != nil {
		m.closes.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}

func (m *Metrics) overflow(instance bool) {
	if m == nil {
		return
	}
	if instance {
		m.instanceOverflows.Inc()
	} else {
		m.overflows.Inc()
	}
}

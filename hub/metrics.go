package hub

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/admission"
)

// Metrics holds the hub's Prometheus collectors. A nil *Metrics counts
// nothing, so every method here is safe on nil.
type Metrics struct {
	published       *prometheus.CounterVec
	deliveries      prometheus.Counter
	publishSeconds  prometheus.Histogram
	deliverySeconds prometheus.Histogram
	errors          *prometheus.CounterVec
	authFailures    *prometheus.CounterVec
	resets          prometheus.Counter
	sessionsOpened  prometheus.Counter
	draining        prometheus.Gauge
	refusals        *prometheus.CounterVec
	hellos          *prometheus.CounterVec
}

// NewMetrics creates the hub's collectors and registers them, with gauges
// read from h, on reg. Call it before New and put the result in Config;
// then call Observe with the hub.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		published:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_messages_published_total", Help: "Publishes handed to the broker from this instance, by result (ok, error)."}, []string{"result"}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_messages_delivered_total", Help: "Room messages queued to local sessions."}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "switchboard_broker_publish_seconds", Help: "Time for the broker to store and publish a message.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		deliverySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "switchboard_delivery_latency_seconds", Help: "Time from the broker's publish timestamp to the socket write of a message.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		errors:         prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_errors_total", Help: "Error frames sent to clients, by error code."}, []string{"code"}),
		authFailures:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_auth_failures_total", Help: "Refused connections and refreshes, by reason."}, []string{"reason"}),
		resets:         prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_room_resets_total", Help: "Rooms whose continuity the broker could not keep."}),
		sessionsOpened: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_sessions_opened_total", Help: "Sessions that completed hello."}),
		draining:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchboard_draining", Help: "1 while the instance drains."}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_admission_refused_total",
			Help: "Connections refused by admission control, by reason (max_conns, max_conns_per_ip, draining: HTTP 503; max_conns_per_user, accept_queue_full, accept_timeout: close 4029)."}, []string{"reason"}),
		hellos: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchboard_admission_hellos_total",
			Help: "Authenticated hellos by kind (resume: hello.session or hello.resume set; cold) and by the accept-rate gate's answer (admitted, queue_full, timeout, cancelled: the connection went away or the instance drained while it waited)."}, []string{"kind", "result"}),
	}
	reg.MustRegister(m.published, m.deliveries, m.publishSeconds, m.deliverySeconds, m.errors,
		m.authFailures, m.resets, m.sessionsOpened, m.draining, m.refusals, m.hellos)
	return m
}

// RegisterGauges registers the gauges that read h's state on reg, its
// connections' included.
func (h *Hub) RegisterGauges(reg prometheus.Registerer) {
	h.transport.RegisterGauges(reg)
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_sessions", Help: "Connected sessions."},
			func() float64 { return float64(h.SessionCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_users", Help: "Users with at least one connected session."},
			func() float64 { return float64(h.UserCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_rooms", Help: "Rooms with local members (inboxes included)."},
			func() float64 { return float64(h.RoomCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_connections", Help: "Open WebSocket connections, before and after hello (counted against --max-conns)."},
			func() float64 { return float64(h.ConnCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_admission_max_conns", Help: "The --max-conns ceiling in force (0: none)."},
			func() float64 { return float64(h.cfg.MaxConns) }),
	)
	for _, kind := range []admission.Kind{admission.Resume, admission.Cold} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_admission_waiting",
			Help: "Hellos waiting for an accept-rate token, by kind.", ConstLabels: prometheus.Labels{"kind": kind.String()}},
			func() float64 {
				if h.gate == nil {
					return 0
				}
				return float64(h.gate.Waiting(kind))
			}))
	}
}

// refused counts a connection refused by admission control.
func (m *Metrics) refused(reason string) {
	if m != nil {
		m.refusals.WithLabelValues(reason).Inc()
	}
}

// hello counts an authenticated hello of kind and the gate's answer.
func (m *Metrics) hello(kind admission.Kind, res admission.Result) {
	if m != nil {
		m.hellos.WithLabelValues(kind.String(), res.String()).Inc()
	}
}

// publishStarted times one broker publish; call the result with its error.
func (m *Metrics) publishStarted() func(error) {
	if m == nil {
		return func(error) {}
	}
	start := time.Now()
	return func(err error) {
		if err != nil {
			m.published.WithLabelValues("error").Inc()
			return
		}
		m.published.WithLabelValues("ok").Inc()
		m.publishSeconds.Observe(time.Since(start).Seconds())
	}
}

func (m *Metrics) delivered(n int) {
	if m != nil && n > 0 {
		m.deliveries.Add(float64(n))
	}
}

// written observes the publish-to-write latency of a message written now.
func (m *Metrics) written(publishedMS int64, now time.Time) {
	if m != nil {
		m.deliverySeconds.Observe(float64(now.UnixMilli()-publishedMS) / 1000)
	}
}

func (m *Metrics) errorFrame(code string) {
	if m != nil {
		m.errors.WithLabelValues(code).Inc()
	}
}

func (m *Metrics) authFailure(reason string) {
	if m != nil {
		m.authFailures.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) reset() {
	if m != nil {
		m.resets.Inc()
	}
}

func (m *Metrics) sessionOpened() {
	if m != nil {
		m.sessionsOpened.Inc()
	}
}

func (m *Metrics) drainStarted() {
	if m != nil {
		m.draining.Set(1)
	}
}

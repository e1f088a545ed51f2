package redis

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Broker's Prometheus collectors. They count even when
// Config.Registerer is nil; nobody reads them then.
type metrics struct {
	catchUps        prometheus.Counter
	catchUpFailures prometheus.Counter
}

// newMetrics creates the collectors, with q's depth and drops, and
// registers them on reg if it is set.
func newMetrics(reg prometheus.Registerer, q *queue) *metrics {
	m := &metrics{
		catchUps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_redis_catchups_total",
			Help: "Reads of a room's missed messages from history (after a hole, a new epoch, a reconnection or a dropped message).",
		}),
		catchUpFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_redis_catchup_failures_total",
			Help: "Catch-up reads that failed after their retries.",
		}),
	}
	q.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_redis_dispatch_dropped_total",
		Help: "Pub/sub messages dropped because the dispatch queue was full; their rooms are read from history instead.",
	})
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_redis_dispatch_queue",
		Help: "Pub/sub messages and changes waiting for the dispatcher.",
	}, func() float64 { return float64(q.depth()) })
	if reg != nil {
		reg.MustRegister(m.catchUps, m.catchUpFailures, q.dropped, depth)
	}
	return m
}

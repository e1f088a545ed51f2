package hub

import (
	"context"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// stateFlushInterval is how often changed session states are saved for
// hello.session: the most a crashed instance's sessions can be behind.
const stateFlushInterval = time.Second

// stateFlushSlices is how many slices the sessions are saved in: each
// tick saves one slice's changed states, so that the broker gets a steady
// trickle of saves rather than a burst (thousands of writes) every second.
const stateFlushSlices = 10

// heartbeatSlices is how many slices the sessions are pinged in, a slice
// every Heartbeat/heartbeatSlices, so that pings and the pongs they bring
// back come as a steady trickle rather than a burst every interval. A burst
// of pongs from tens of thousands of idle sessions wakes as many readers
// at once, and the runtime keeps a goroutine's structure for good once
// made (about 130 bytes a connection measured with 7,500 of them).
const heartbeatSlices = 25

// pingSlices returns how many slices sessions are pinged in for a
// heartbeat interval: heartbeatSlices, or fewer for an interval too short
// to cut into ticks of a millisecond or more, so that each session is
// still pinged once an interval.
func pingSlices(heartbeat time.Duration) uint32 {
	return uint32(min(heartbeatSlices, max(1, heartbeat/time.Millisecond)))
}

// Run runs the hub's background work until ctx ends or Drain finishes:
// heartbeat pings, the instance registry heartbeat, and saving changed
// session states. It returns nil after a drain, or ctx's error.
func (h *Hub) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { h.subscribeControl(ctx) })
	wg.Go(func() { h.every(ctx, h.cfg.Heartbeat/time.Duration(h.pingSlices), h.heartbeat) })
	wg.Go(func() { h.every(ctx, stateFlushInterval/stateFlushSlices, h.flushStates) })
	wg.Go(func() {
		h.Register(ctx)
		h.every(ctx, h.registryInterval(), h.Register)
	})
	defer wg.Wait()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-h.stopped:
		return nil
	}
}

// registryInterval is how often the instance registry is refreshed.
func (h *Hub) registryInterval() time.Duration {
	return RegistryInterval(h.cfg.Heartbeat)
}

// RegistryInterval is how often a hub with the given heartbeat interval
// (zero: the default) refreshes its instance registry entry and presence.
func RegistryInterval(heartbeat time.Duration) time.Duration {
	if heartbeat <= 0 {
		heartbeat = DefaultHeartbeat
	}
	return min(heartbeat, 5*time.Second)
}

// every calls f every d until ctx ends or the hub stops.
func (h *Hub) every(ctx context.Context, d time.Duration, f func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.stopped:
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// heartbeat pings the sessions of the next slice, closes those silent for
// two intervals with 1001, and those that began a frame or message more
// than two intervals ago and never finished it with 1008. Each session's
// slice comes once an interval.
func (h *Hub) heartbeat(context.Context) {
	slice := uint8(h.pingTick.Add(1) % h.pingSlices)
	sessions := h.sessionsWhere(func(s *Session) bool { return s.pingSlice == slice })
	deadline := time.Now().Add(-2 * h.cfg.Heartbeat)
	for _, s := range sessions {
		if s.conn.LastSeen().Before(deadline) {
			h.log.Info("heartbeat timeout", "session", s.id, "user", s.user)
			s.conn.CloseNow(closeGoingAway, "heartbeat timeout")
			continue
		}
		if u := s.conn.Unfinished(); !u.IsZero() && u.Before(deadline) {
			h.log.Warn("message never finished", "session", s.id, "user", s.user, "code", closePolicy)
			s.conn.CloseNow(closePolicy, "message not finished in time")
			continue
		}
		s.conn.Ping()
	}
}

// Register refreshes this instance in the broker's registry, which also
// keeps its presence entries alive. Run calls it at its start and then
// every registry interval; a server calls it once more before it starts
// accepting connections, so that an instance that says it is serving is
// listed in GET /api/instances.
func (h *Hub) Register(ctx context.Context) {
	if h.draining.Load() {
		return
	}
	ctx, cancel := h.brokerCtx(ctx)
	defer cancel()
	err := h.broker.Heartbeat(ctx, broker.InstanceInfo{
		ID: h.cfg.InstanceID, Address: h.cfg.Address, Sessions: h.SessionCount(),
		Started: h.started, LastHeartbeat: time.Now(),
	})
	if err != nil {
		h.log.Warn("instance heartbeat", "err", err)
	}
}

// flushStates saves the states of the next slice of sessions that changed
// since their last save.
func (h *Hub) flushStates(context.Context) {
	slice := uint8(h.flushTick.Add(1) % stateFlushSlices)
	sessions := h.sessionsWhere(func(s *Session) bool { return s.flushSlice == slice })
	dirty := sessions[:0]
	for _, s := range sessions {
		if s.takeDirty() {
			dirty = append(dirty, s)
		}
	}
	h.saveStates(dirty...)
}

// saveStates saves the current state of sessions. Saves are serialized, and
// each takes its snapshots under the same lock, so an older snapshot never
// lands after a newer one.
func (h *Hub) saveStates(sessions ...*Session) {
	if len(sessions) == 0 {
		return
	}
	h.saveMu.Lock()
	defer h.saveMu.Unlock()
	states := make([]broker.SessionState, len(sessions))
	for i, s := range sessions {
		states[i] = s.state()
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.BrokerTimeout)
	defer cancel()
	if err := h.broker.SaveSessions(ctx, h.cfg.SessionTTL, states...); err != nil {
		h.log.Warn("save session states", "sessions", len(states), "err", err)
	}
}

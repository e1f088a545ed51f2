package hub

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// Drain ends the hub gracefully (PROTOCOL.md, "Graceful drain"): it refuses
// new sessions, tells every session to reconnect after a delay spread with
// jitter over Config.DrainSpread and closes it with 4001, then waits until
// the sessions are gone or ctx ends, saves their state and removes the
// instance from the registry. Run returns when Drain does. Drain returns
// ctx's error if sessions were still open when it ended.
func (h *Hub) Drain(ctx context.Context) error {
	if !h.draining.CompareAndSwap(false, true) {
		<-h.stopped
		return nil
	}
	defer h.stopOnce.Do(func() { close(h.stopped) })
	h.metrics.drainStarted()
	if h.gate != nil {
		h.gate.CancelAll() // waiting hellos are closed with 4001 (see admit)
	}
	sessions := h.snapshot()
	h.log.Info("draining", "sessions", len(sessions), "spread", h.cfg.DrainSpread)
	spread := h.cfg.DrainSpread.Milliseconds()
	for _, s := range sessions {
		after := int64(0)
		if spread > 0 {
			after = rand.Int64N(spread + 1)
		}
		farewell := protocol.Encode(&protocol.Reconnect{Type: protocol.TypeReconnect, ReconnectAfter: after, Server: h.cfg.InstanceID})
		// After the queued frames, the session's state is saved, then
		// server:reconnect and the close are written: a client that
		// reconnects at once finds its state saved.
		s.conn.CloseAfter(closeRestarting, "server restarting", func() []byte {
			h.saveStates(s)
			return farewell
		})
	}

	err := h.waitConns(ctx)
	if err != nil {
		h.log.Warn("drain timed out", "sessions", h.SessionCount())
		for _, s := range h.snapshot() {
			s.conn.Abort()
		}
		// Sessions end promptly once their connections are gone.
		gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = h.waitConns(gctx)
		cancel()
	}
	dctx, cancel := context.WithTimeout(context.Background(), h.cfg.BrokerTimeout)
	defer cancel()
	h.flushStates(dctx)
	if derr := h.broker.Deregister(dctx, h.cfg.InstanceID); derr != nil {
		h.log.Warn("deregister instance", "err", derr)
	}
	h.log.Info("drained")
	return err
}

// waitConns waits until no connection handler is running, or ctx ends.
func (h *Hub) waitConns(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.conns.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

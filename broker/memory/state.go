package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// savedSession is a session state and when it expires.
type savedSession struct {
	state   broker.SessionState
	expires time.Time
}

// instance is a registry entry and when the broker last heard from it.
type instance struct {
	info  broker.InstanceInfo
	heard time.Time
}

// AddPresence records e's session in room, replacing an earlier entry for
// the same session. Entries stay until they are removed or the broker is
// closed.
func (b *Broker) AddPresence(ctx context.Context, room string, e broker.PresenceEntry) error {
	if err := b.check(ctx); err != nil {
		return fmt.Errorf("add presence to %q: %w", room, err)
	}
	if e.Session == "" {
		return fmt.Errorf("add presence to %q: empty session", room)
	}
	b.presenceMu.Lock()
	defer b.presenceMu.Unlock()
	if b.presence == nil {
		return fmt.Errorf("add presence to %q: %w", room, broker.ErrClosed)
	}
	sessions := b.presence[room]
	if sessions == nil {
		sessions = make(map[string]broker.PresenceEntry)
		b.presence[room] = sessions
	}
	sessions[e.Session] = e
	return nil
}

// RemovePresence removes session from room; an absent session is ignored.
func (b *Broker) RemovePresence(ctx context.Context, room, session string) error {
	if err := b.check(ctx); err != nil {
		return fmt.Errorf("remove presence from %q: %w", room, err)
	}
	b.presenceMu.Lock()
	defer b.presenceMu.Unlock()
	if b.presence == nil {
		return fmt.Errorf("remove presence from %q: %w", room, broker.ErrClosed)
	}
	sessions := b.presence[room]
	delete(sessions, session)
	if len(sessions) == 0 {
		delete(b.presence, room)
	}
	return nil
}

// Presence lists the sessions present in room, sorted by user, then session.
func (b *Broker) Presence(ctx context.Context, room string) ([]broker.PresenceEntry, error) {
	if err := b.check(ctx); err != nil {
		return nil, fmt.Errorf("presence of %q: %w", room, err)
	}
	b.presenceMu.Lock()
	if b.presence == nil {
		b.presenceMu.Unlock()
		return nil, fmt.Errorf("presence of %q: %w", room, broker.ErrClosed)
	}
	entries := slices.Collect(maps.Values(b.presence[room]))
	b.presenceMu.Unlock()
	slices.SortFunc(entries, func(x, y broker.PresenceEntry) int {
		return cmp.Or(cmp.Compare(x.User, y.User), cmp.Compare(x.Session, y.Session))
	})
	return entries, nil
}

// SaveSessions stores copies of states, replacing earlier states with the
// same ID; each expires ttl from now. ttl must be positive and every state
// must have an ID.
func (b *Broker) SaveSessions(ctx context.Context, ttl time.Duration, states ...broker.SessionState) error {
	if err := b.check(ctx); err != nil {
		return fmt.Errorf("save sessions: %w", err)
	}
	if ttl <= 0 {
		return fmt.Errorf("save sessions: ttl %v is not positive", ttl)
	}
	for _, s := range states {
		if s.ID == "" {
			return errors.New("save sessions: empty session id")
		}
	}
	now := b.now()
	b.sessionsMu.Lock()
	defer b.sessionsMu.Unlock()
	if b.sessions == nil {
		return fmt.Errorf("save sessions: %w", broker.ErrClosed)
	}
	if !now.Before(b.nextSessionsSweep) {
		// Forget expired states from time to time so that the map stays
		// bounded by what was saved within the longest ttl.
		for id, s := range b.sessions {
			if !now.Before(s.expires) {
				delete(b.sessions, id)
			}
		}
		b.nextSessionsSweep = now.Add(ttl)
	}
	for _, s := range states {
		s.Rooms = maps.Clone(s.Rooms)
		b.sessions[s.ID] = savedSession{state: s, expires: now.Add(ttl)}
	}
	return nil
}

// LoadSession returns a copy of the state saved for session id, or an error
// wrapping broker.ErrNotFound if there is none or it expired.
func (b *Broker) LoadSession(ctx context.Context, id string) (broker.SessionState, error) {
	if err := b.check(ctx); err != nil {
		return broker.SessionState{}, fmt.Errorf("load session %q: %w", id, err)
	}
	now := b.now()
	b.sessionsMu.Lock()
	defer b.sessionsMu.Unlock()
	if b.sessions == nil {
		return broker.SessionState{}, fmt.Errorf("load session %q: %w", id, broker.ErrClosed)
	}
	s, ok := b.sessions[id]
	if ok && !now.Before(s.expires) {
		delete(b.sessions, id)
		ok = false
	}
	if !ok {
		return broker.SessionState{}, fmt.Errorf("load session %q: %w", id, broker.ErrNotFound)
	}
	state := s.state
	state.Rooms = maps.Clone(state.Rooms)
	return state, nil
}

// Heartbeat records info in the registry, replacing the instance's earlier
// entry; a zero LastHeartbeat is set to now. The instance stays in Instances
// for InstanceTTL.
func (b *Broker) Heartbeat(ctx context.Context, info broker.InstanceInfo) error {
	if err := b.check(ctx); err != nil {
		return fmt.Errorf("heartbeat of %q: %w", info.ID, err)
	}
	if info.ID == "" {
		return errors.New("heartbeat: empty instance id")
	}
	now := b.now()
	if info.LastHeartbeat.IsZero() {
		info.LastHeartbeat = now
	}
	b.instancesMu.Lock()
	defer b.instancesMu.Unlock()
	if b.instances == nil {
		return fmt.Errorf("heartbeat of %q: %w", info.ID, broker.ErrClosed)
	}
	b.pruneInstances(now)
	b.instances[info.ID] = instance{info: info, heard: now}
	return nil
}

// Deregister removes instance id from the registry; an unknown id is
// ignored.
func (b *Broker) Deregister(ctx context.Context, id string) error {
	if err := b.check(ctx); err != nil {
		return fmt.Errorf("deregister %q: %w", id, err)
	}
	b.instancesMu.Lock()
	defer b.instancesMu.Unlock()
	if b.instances == nil {
		return fmt.Errorf("deregister %q: %w", id, broker.ErrClosed)
	}
	delete(b.instances, id)
	return nil
}

// Instances lists the instances heard from within InstanceTTL, sorted by ID.
func (b *Broker) Instances(ctx context.Context) ([]broker.InstanceInfo, error) {
	if err := b.check(ctx); err != nil {
		return nil, fmt.Errorf("instances: %w", err)
	}
	now := b.now()
	b.instancesMu.Lock()
	defer b.instancesMu.Unlock()
	if b.instances == nil {
		return nil, fmt.Errorf("instances: %w", broker.ErrClosed)
	}
	b.pruneInstances(now)
	list := make([]broker.InstanceInfo, 0, len(b.instances))
	for _, in := range b.instances {
		list = append(list, in.info)
	}
	slices.SortFunc(list, func(x, y broker.InstanceInfo) int { return cmp.Compare(x.ID, y.ID) })
	return list, nil
}

// pruneInstances removes the instances not heard from within InstanceTTL.
// The caller holds instancesMu.
func (b *Broker) pruneInstances(now time.Time) {
	for id, in := range b.instances {
		if now.Sub(in.heard) >= b.cfg.InstanceTTL {
			delete(b.instances, id)
		}
	}
}

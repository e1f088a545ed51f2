package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// presenceEntry is a presence entry this Broker added, so that Heartbeat
// can refresh it.
type presenceEntry struct {
	value string // "user\x00instance"
}

// presenceBatch bounds the sessions refreshed by one script run.
const presenceBatch = 500

// AddPresence records e's session in room, replacing an earlier entry for
// the same session. The entry expires PresenceTTL from now unless this
// Broker's Heartbeat refreshes it, which it does until RemovePresence.
func (b *Broker) AddPresence(ctx context.Context, room string, e broker.PresenceEntry) error {
	op := "add presence to " + strconv.Quote(room)
	if err := b.check(op, ctx); err != nil {
		return err
	}
	if e.Session == "" {
		return fmt.Errorf("%s: empty session", op)
	}
	value := e.User + "\x00" + e.Instance
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	err := presenceAddScript.Exec(ctx, b.client,
		[]string{b.presenceKey(room), b.expiryKey(room)},
		[]string{b.presenceTTLms, e.Session, value}).Error()
	if err != nil {
		return b.fail(op, ctx, err)
	}
	b.presenceMu.Lock()
	sessions := b.mine[room]
	if sessions == nil {
		sessions = make(map[string]presenceEntry)
		b.mine[room] = sessions
	}
	sessions[e.Session] = presenceEntry{value: value}
	b.presenceMu.Unlock()
	return nil
}

// RemovePresence removes session from room at once; an absent session is
// ignored.
func (b *Broker) RemovePresence(ctx context.Context, room, session string) error {
	op := "remove presence from " + strconv.Quote(room)
	if err := b.check(op, ctx); err != nil {
		return err
	}
	b.presenceMu.Lock()
	if sessions := b.mine[room]; sessions != nil {
		delete(sessions, session)
		if len(sessions) == 0 {
			delete(b.mine, room)
		}
	}
	b.presenceMu.Unlock()
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	return b.removePresence(ctx, op, room, session)
}

func (b *Broker) removePresence(ctx context.Context, op, room, session string) error {
	for _, r := range b.client.DoMulti(ctx,
		b.client.B().Hdel().Key(b.presenceKey(room)).Field(session).Build(),
		b.client.B().Zrem().Key(b.expiryKey(room)).Member(session).Build()) {
		if err := r.Error(); err != nil {
			return b.fail(op, ctx, err)
		}
	}
	return nil
}

// Presence lists the sessions present in room, sorted by user, then
// session, dropping the entries that expired.
func (b *Broker) Presence(ctx context.Context, room string) ([]broker.PresenceEntry, error) {
	op := "presence of " + strconv.Quote(room)
	if err := b.check(op, ctx); err != nil {
		return nil, err
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	kv, err := presenceScript.Exec(ctx, b.client,
		[]string{b.presenceKey(room), b.expiryKey(room)}, nil).AsStrSlice()
	if err != nil {
		return nil, b.fail(op, ctx, err)
	}
	entries := make([]broker.PresenceEntry, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		e := broker.PresenceEntry{Session: kv[i], User: kv[i+1]}
		if j := strings.LastIndexByte(kv[i+1], 0); j >= 0 {
			e.User, e.Instance = kv[i+1][:j], kv[i+1][j+1:]
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(x, y broker.PresenceEntry) int {
		return cmp.Or(cmp.Compare(x.User, y.User), cmp.Compare(x.Session, y.Session))
	})
	return entries, nil
}

// refreshPresence writes again every presence entry this Broker added, with
// a fresh expiry, pipelined; writing (not only extending) them restores
// what a Redis restart lost. Entries removed while it ran are removed again
// afterwards, so a refresh never resurrects one.
func (b *Broker) refreshPresence(ctx context.Context) error {
	type seen struct{ room, session string }
	var execs []rueidis.LuaExec
	var snapshot []seen
	b.presenceMu.Lock()
	for room, sessions := range b.mine {
		args := []string{b.presenceTTLms}
		flush := func() {
			execs = append(execs, rueidis.LuaExec{Keys: []string{b.presenceKey(room), b.expiryKey(room)}, Args: args})
			args = []string{b.presenceTTLms}
		}
		for session, e := range sessions {
			args = append(args, session, e.value)
			snapshot = append(snapshot, seen{room, session})
			if len(args) > 2*presenceBatch {
				flush()
			}
		}
		if len(args) > 1 {
			flush()
		}
	}
	b.presenceMu.Unlock()
	if len(execs) == 0 {
		return nil
	}

	var first error
	for chunk := range slices.Chunk(execs, catchUpBatch) {
		for _, r := range presenceAddScript.ExecMulti(ctx, b.client, chunk...) {
			if err := r.Error(); err != nil && first == nil {
				first = b.fail("refresh presence", ctx, err)
			}
		}
	}

	var gone []seen
	b.presenceMu.Lock()
	for _, s := range snapshot {
		if _, ok := b.mine[s.room][s.session]; !ok {
			gone = append(gone, s)
		}
	}
	b.presenceMu.Unlock()
	for _, s := range gone {
		if err := b.removePresence(ctx, "refresh presence", s.room, s.session); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// sessionJSON is how a session state is stored; its ID is in the key.
type sessionJSON struct {
	User  string                     `json:"user"`
	Rooms map[string]broker.Position `json:"rooms,omitempty"`
}

// SaveSessions stores states, replacing earlier states with the same ID,
// pipelined in one round trip; each expires ttl from now. ttl must be
// positive and every state must have an ID.
func (b *Broker) SaveSessions(ctx context.Context, ttl time.Duration, states ...broker.SessionState) error {
	const op = "save sessions"
	if err := b.check(op, ctx); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%s: ttl %v is not positive", op, ttl)
	}
	if len(states) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, 0, len(states))
	for _, s := range states {
		if s.ID == "" {
			return fmt.Errorf("%s: empty session id", op)
		}
		data, err := json.Marshal(sessionJSON{User: s.User, Rooms: s.Rooms})
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		cmds = append(cmds, b.client.B().Set().Key(b.sessionKey(s.ID)).Value(string(data)).PxMilliseconds(max(ttl.Milliseconds(), 1)).Build())
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	for _, r := range b.client.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return b.fail(op, ctx, err)
		}
	}
	return nil
}

// LoadSession returns the state saved for session id, or an error wrapping
// broker.ErrNotFound if there is none or it expired.
func (b *Broker) LoadSession(ctx context.Context, id string) (broker.SessionState, error) {
	op := "load session " + strconv.Quote(id)
	if err := b.check(op, ctx); err != nil {
		return broker.SessionState{}, err
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	data, err := b.client.Do(ctx, b.client.B().Get().Key(b.sessionKey(id)).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return broker.SessionState{}, fmt.Errorf("%s: %w", op, broker.ErrNotFound)
	}
	if err != nil {
		return broker.SessionState{}, b.fail(op, ctx, err)
	}
	var s sessionJSON
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		return broker.SessionState{}, fmt.Errorf("%s: %w", op, err)
	}
	return broker.SessionState{ID: id, User: s.User, Rooms: s.Rooms}, nil
}

// instanceJSON is how an instance's registry entry is stored.
type instanceJSON struct {
	ID            string    `json:"id"`
	Address       string    `json:"address"`
	Sessions      int       `json:"sessions"`
	Started       time.Time `json:"started"`
	LastHeartbeat time.Time `json:"lastHeartbeat"`
}

// Heartbeat records info in the instance registry, replacing the
// instance's earlier entry (a zero LastHeartbeat is set to now), and writes
// again, with a fresh expiry, every presence entry this Broker added. The
// instance stays in Instances for PresenceTTL.
func (b *Broker) Heartbeat(ctx context.Context, info broker.InstanceInfo) error {
	op := "heartbeat of " + strconv.Quote(info.ID)
	if err := b.check(op, ctx); err != nil {
		return err
	}
	if info.ID == "" {
		return errors.New("heartbeat: empty instance id")
	}
	if info.LastHeartbeat.IsZero() {
		info.LastHeartbeat = time.Now()
	}
	data, err := json.Marshal(instanceJSON(info))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	err = heartbeatScript.Exec(ctx, b.client,
		[]string{b.instancesKey, b.heartbeatsKey},
		[]string{info.ID, string(data), b.presenceTTLms}).Error()
	if err != nil {
		return b.fail(op, ctx, err)
	}
	if err := b.refreshPresence(ctx); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Deregister removes instance id from the registry at once; an unknown id
// is ignored.
func (b *Broker) Deregister(ctx context.Context, id string) error {
	op := "deregister " + strconv.Quote(id)
	if err := b.check(op, ctx); err != nil {
		return err
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	for _, r := range b.client.DoMulti(ctx,
		b.client.B().Hdel().Key(b.instancesKey).Field(id).Build(),
		b.client.B().Zrem().Key(b.heartbeatsKey).Member(id).Build()) {
		if err := r.Error(); err != nil {
			return b.fail(op, ctx, err)
		}
	}
	return nil
}

// Instances lists the instances heard from within PresenceTTL (by Redis's
// clock), sorted by ID.
func (b *Broker) Instances(ctx context.Context) ([]broker.InstanceInfo, error) {
	const op = "instances"
	if err := b.check(op, ctx); err != nil {
		return nil, err
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	kv, err := instancesScript.Exec(ctx, b.client,
		[]string{b.instancesKey, b.heartbeatsKey}, []string{b.presenceTTLms}).AsStrSlice()
	if err != nil {
		return nil, b.fail(op, ctx, err)
	}
	list := make([]broker.InstanceInfo, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		var in instanceJSON
		if err := json.Unmarshal([]byte(kv[i+1]), &in); err != nil {
			b.log.Error("decode instance registry entry", "id", kv[i], "err", err)
			continue
		}
		list = append(list, broker.InstanceInfo(in))
	}
	slices.SortFunc(list, func(x, y broker.InstanceInfo) int { return cmp.Compare(x.ID, y.ID) })
	return list, nil
}

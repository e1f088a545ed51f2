package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/smallmap"
)

// roomPresence holds the presence entries this Broker added to one room.
// Every idle connection has one (its inbox), so an entry holds only what it
// must: the caller's strings (no value built from them), and its instance
// only if that is not the Broker's own (Config.InstanceID, which is what
// the hub's entries name).
type roomPresence struct {
	// sessions maps a session to its user: most rooms hold one (inboxes)
	// or two, hence a smallmap.
	sessions smallmap.Map[string, string]
	// instances maps the sessions whose instance is not the Broker's to
	// theirs; nil while there are none.
	instances map[string]string
	slot      int // index in Broker.renewOrder
}

// set records session's entry.
func (rp *roomPresence) set(b *Broker, session, user, instance string) {
	rp.sessions.Set(session, user)
	if instance != b.cfg.InstanceID {
		if rp.instances == nil {
			rp.instances = make(map[string]string)
		}
		rp.instances[session] = instance
	} else if rp.instances != nil {
		delete(rp.instances, session)
	}
}

// remove removes session's entry.
func (rp *roomPresence) remove(session string) {
	rp.sessions.Delete(session)
	delete(rp.instances, session)
}

// stored yields each entry's session and its value as stored in the room's
// hash (see storedPresence).
func (rp *roomPresence) stored(b *Broker, incarnation string) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for session, user := range rp.sessions.All() {
			instance, ok := rp.instances[session]
			if !ok {
				instance = b.cfg.InstanceID
			}
			if !yield(session, storedPresence(user, instance, incarnation)) {
				return
			}
		}
	}
}

// storedPresence is how an entry is stored in the room's hash:
// "user\0instance\0incarnation".
func storedPresence(user, instance, incarnation string) string {
	return user + "\x00" + instance + "\x00" + incarnation
}

// currentIncarnation returns the incarnation new entries name.
func (b *Broker) currentIncarnation() string { return *b.incarnation.Load() }

// register marks the Broker's first incarnation live, before any entry
// names it: readers take an incarnation missing from the liveness set for
// a dead one.
func (b *Broker) register(ctx context.Context) error {
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	if err := registerScript.Exec(ctx, b.client, []string{b.liveKey}, []string{b.currentIncarnation()}).Error(); err != nil {
		return b.fail("register presence incarnation", ctx, err)
	}
	b.keptAt.Store(time.Now().UnixNano())
	return nil
}

// touch keeps the current incarnation live, or has Redis replace it with a
// new one if it lapsed; it returns the incarnation to use and whether it
// changed (every entry must then be written again).
func (b *Broker) touch(ctx context.Context) (string, bool, error) {
	used := b.currentIncarnation()
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	next, err := touchScript.Exec(ctx, b.client, []string{b.liveKey},
		[]string{b.presenceTTLms, used, b.newIncarnation()}).ToString()
	if err != nil {
		return "", false, b.fail("keep presence alive", ctx, err)
	}
	return next, b.keptAlive(used, next), nil
}

// keptAlive records Redis's answer next to keeping incarnation used live.
// It reports whether used had lapsed, so that next replaced it: readers
// may have removed used's entries, which must be written again under next.
func (b *Broker) keptAlive(used, next string) bool {
	b.keptAt.Store(time.Now().UnixNano())
	if used == next {
		return false
	}
	if cur := b.incarnation.Load(); *cur == used {
		// Lost to another switch? Then next stays unused and lapses.
		b.incarnation.CompareAndSwap(cur, &next)
	}
	b.log.Info("presence lapsed (no heartbeat within the TTL, or Redis lost it): writing it again")
	return true
}

// presenceBatch bounds the sessions written by one script run.
const presenceBatch = 500

// How long room presence keys live, and why. An entry's liveness hangs on
// its incarnation's heartbeat (one ZADD per Heartbeat, whatever the number
// of rooms), so the key TTL has one job: keys must not outlive every
// instance that wrote them. Once all of a room's instances died, readers
// see its entries as dead at once, and the key goes one key TTL after its
// last renewal. The TTL is long compared with the heartbeat (an hour, or
// ten presence TTLs if that is longer), so renewing it costs little. Each
// Heartbeat renews (PEXPIRE, pipelined) the share of this Broker's rooms
// that is due, going round them so that each room is renewed once per
// quarter of the key TTL: with 10,000 rooms and a 5s heartbeat, about 56
// PEXPIREs per heartbeat, spread evenly instead of all rooms at once every
// few minutes. A failed renewal leaves the rest of its round to the next
// one, half a TTL at worst, so a room whose members stay joined for days
// is renewed long before its key could expire. Should a key be gone anyway
// (a renewal finds none), the room's entries are written again.
const (
	minPresenceKeyTTL      = time.Hour
	presenceKeyTTLPerTTL   = 10
	presenceRenewalsPerTTL = 4
)

// presenceKeyTTL returns the TTL of room presence keys for cfg.
func presenceKeyTTL(cfg Config) time.Duration {
	if cfg.presenceKeyTTL > 0 {
		return cfg.presenceKeyTTL
	}
	return max(minPresenceKeyTTL, presenceKeyTTLPerTTL*cfg.PresenceTTL)
}

// AddPresence records e's session in room, replacing an earlier entry for
// the same session. The entry lives while this Broker heartbeats: readers
// drop it PresenceTTL after the Broker's last Heartbeat (or AddPresence),
// unless RemovePresence removes it first.
func (b *Broker) AddPresence(ctx context.Context, room string, e broker.PresenceEntry) error {
	op := "add presence to " + strconv.Quote(room)
	if err := b.check(op, ctx); err != nil {
		return err
	}
	if e.Session == "" {
		return fmt.Errorf("%s: empty session", op)
	}
	b.rewriteMu.RLock()
	defer b.rewriteMu.RUnlock()
	// The incarnation first: readers must find it live once the entry
	// names it. (On a cluster the two keys may live on different shards.)
	// Redis confirmed it a moment ago? Then it is live: it lapses only
	// after a PresenceTTL without keep-alive. Not asking again spares the
	// liveness set's shard a write per join. (Should Redis have lost the
	// set meanwhile, the next Heartbeat, or the reconnection that follows
	// a failover, writes every entry again.)
	inc, switched := b.currentIncarnation(), false
	if time.Since(time.Unix(0, b.keptAt.Load())) > b.cfg.PresenceTTL/3 {
		var err error
		if inc, switched, err = b.touch(ctx); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	err := presenceAddScript.Exec(ctx, b.client, []string{b.presenceKey(room)},
		[]string{b.presenceKeyTTLms, e.Session, storedPresence(e.User, e.Instance, inc)}).Error()
	if err != nil {
		return b.fail(op, ctx, err)
	}
	b.presenceMu.Lock()
	rp := b.mine[room]
	if rp == nil {
		rp = &roomPresence{slot: len(b.renewOrder)}
		b.mine[room] = rp
		b.renewOrder = append(b.renewOrder, room)
	}
	rp.set(b, e.Session, e.User, e.Instance)
	b.presenceMu.Unlock()
	if switched || inc != b.currentIncarnation() {
		// Readers may have removed this Broker's entries while its
		// incarnation was not live, or the entry just written names one
		// that another call replaced meanwhile.
		b.requestRestore()
	}
	return nil
}

// RemovePresence removes session from room at once; an absent session is
// ignored.
func (b *Broker) RemovePresence(ctx context.Context, room, session string) error {
	op := "remove presence from " + strconv.Quote(room)
	if err := b.check(op, ctx); err != nil {
		return err
	}
	b.rewriteMu.RLock()
	defer b.rewriteMu.RUnlock()
	b.presenceMu.Lock()
	if rp := b.mine[room]; rp != nil {
		rp.remove(session)
		if rp.sessions.Len() == 0 {
			b.forgetRoom(room, rp)
		}
	}
	b.presenceMu.Unlock()
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	if err := b.client.Do(ctx, b.client.B().Hdel().Key(b.presenceKey(room)).Field(session).Build()).Error(); err != nil {
		return b.fail(op, ctx, err)
	}
	return nil
}

// forgetRoom drops room from mine and from the renewal order, keeping the
// rooms before the renewal cursor those renewed in this round and those
// from it those still due. The caller holds presenceMu.
func (b *Broker) forgetRoom(room string, rp *roomPresence) {
	delete(b.mine, room)
	i := rp.slot
	if i < b.renewCursor {
		// Fill the hole with the last renewed room, so that the hole is
		// at the cursor.
		b.renewCursor--
		b.swapRenewal(i, b.renewCursor)
		i = b.renewCursor
	}
	last := len(b.renewOrder) - 1
	b.swapRenewal(i, last)
	b.renewOrder[last] = ""
	b.renewOrder = b.renewOrder[:last]
}

func (b *Broker) swapRenewal(i, j int) {
	o := b.renewOrder
	o[i], o[j] = o[j], o[i]
	if rp := b.mine[o[i]]; rp != nil {
		rp.slot = i
	}
	if rp := b.mine[o[j]]; rp != nil {
		rp.slot = j
	}
}

// Presence lists the sessions present in room, sorted by user, then
// session. Entries of instances that stopped heartbeating are left out and
// removed from the room.
func (b *Broker) Presence(ctx context.Context, room string) ([]broker.PresenceEntry, error) {
	op := "presence of " + strconv.Quote(room)
	if err := b.check(op, ctx); err != nil {
		return nil, err
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	key := b.presenceKey(room)
	kv, err := b.client.Do(ctx, b.client.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return nil, b.fail(op, ctx, err)
	}
	if len(kv) == 0 {
		return []broker.PresenceEntry{}, nil
	}
	// Which incarnations are live: one lookup each, in the liveness set's
	// own slot.
	incOf := func(v string) string {
		if j := strings.LastIndexByte(v, 0); j >= 0 {
			return v[j+1:]
		}
		return ""
	}
	seen := make(map[string]bool)
	args := []string{b.presenceTTLms}
	for _, v := range kv {
		if inc := incOf(v); inc != "" && !seen[inc] {
			seen[inc] = true
			args = append(args, inc)
		}
	}
	flags, err := liveScript.Exec(ctx, b.client, []string{b.liveKey}, args).AsIntSlice()
	if err != nil {
		return nil, b.fail(op, ctx, err)
	}
	live := make(map[string]bool, len(flags))
	var dead []string
	for i, inc := range args[1:] {
		if i < len(flags) && flags[i] == 1 {
			live[inc] = true
		} else {
			dead = append(dead, inc)
		}
	}
	entries := make([]broker.PresenceEntry, 0, len(kv))
	var gone []string
	for session, v := range kv {
		if !live[incOf(v)] {
			gone = append(gone, session)
			continue
		}
		head := v[:strings.LastIndexByte(v, 0)]
		e := broker.PresenceEntry{Session: session, User: head}
		if j := strings.LastIndexByte(head, 0); j >= 0 {
			e.User, e.Instance = head[:j], head[j+1:]
		}
		entries = append(entries, e)
	}
	if len(dead) > 0 && len(gone) > 0 {
		// Their instance stopped heartbeating: remove them, unless
		// rewritten since under a live incarnation.
		prune := append(append([]string{strconv.Itoa(len(dead))}, dead...), gone...)
		if err := pruneScript.Exec(ctx, b.client, []string{key}, prune).Error(); err != nil {
			b.log.Debug("remove dead presence entries", "room", room, "err", err)
		}
	}
	slices.SortFunc(entries, func(x, y broker.PresenceEntry) int {
		return cmp.Or(cmp.Compare(x.User, y.User), cmp.Compare(x.Session, y.Session))
	})
	return entries, nil
}

// requestRestore asks for every presence entry of this Broker to be written
// again, soon, by the restorer goroutine: Redis may have lost them.
func (b *Broker) requestRestore() {
	b.restoreWanted.Add(1)
	b.wakeRestorer()
}

func (b *Broker) wakeRestorer() {
	select {
	case b.restoreReq <- struct{}{}:
	default:
	}
}

// restorer writes the presence entries again whenever requestRestore asked
// for it, retrying with backoff until it succeeds or ctx ends.
func (b *Broker) restorer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.restoreReq:
		}
		var backoff time.Duration
		for b.restoreDone.Load() < b.restoreWanted.Load() {
			err := b.restore(ctx, b.restoreWanted.Load())
			if err == nil {
				break
			}
			b.log.Debug("restore presence", "err", err)
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// restore writes every presence entry this Broker holds again, unless a
// restore that started after request number n already did. Writing them
// restores what Redis lost (a restart without persistence, a failover that
// lost writes) or what readers removed while this Broker was not live.
// Restores run one at a time.
func (b *Broker) restore(ctx context.Context, n uint64) error {
	if err := b.check("restore presence", ctx); err != nil {
		return err
	}
	b.restoreMu.Lock()
	defer b.restoreMu.Unlock()
	if b.restoreDone.Load() >= n {
		return nil
	}
	// The requests made so far are answered by writes made from now on:
	// entries added later write themselves.
	start := b.restoreWanted.Load()
	b.presenceMu.Lock()
	rooms := slices.Clone(b.renewOrder)
	b.presenceMu.Unlock()
	// The entries are written under a live incarnation: a lapsed one is
	// replaced first.
	if len(rooms) > 0 {
		if _, _, err := b.touch(ctx); err != nil {
			return err
		}
	}
	if err := b.rewrite(ctx, rooms); err != nil {
		return err
	}
	if len(rooms) > 0 {
		b.log.Info("presence written again", "rooms", len(rooms))
	}
	b.restoreDone.Store(max(start, b.restoreDone.Load()))
	return nil
}

// rewrite writes again, with a fresh key TTL, the entries this Broker holds
// in rooms, in pipelined batches of rooms, each bounded by Config.Timeout.
func (b *Broker) rewrite(ctx context.Context, rooms []string) error {
	for chunk := range slices.Chunk(rooms, catchUpBatch) {
		if err := b.rewriteRooms(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

// rewriteRooms writes the entries of a batch of rooms as mine holds them
// now. It holds rewriteMu exclusively: AddPresence and RemovePresence wait
// meanwhile, so it never resurrects an entry removed while a restore runs,
// nor overwrites a newer one.
func (b *Broker) rewriteRooms(ctx context.Context, rooms []string) error {
	b.rewriteMu.Lock()
	defer b.rewriteMu.Unlock()
	var execs []rueidis.LuaExec
	inc := b.currentIncarnation()
	head := []string{b.presenceKeyTTLms}
	b.presenceMu.Lock()
	for _, room := range rooms {
		rp := b.mine[room]
		if rp == nil {
			continue
		}
		args := slices.Clone(head)
		for session, value := range rp.stored(b, inc) {
			args = append(args, session, value)
			if len(args) >= len(head)+2*presenceBatch {
				execs = append(execs, rueidis.LuaExec{Keys: []string{b.presenceKey(room)}, Args: args})
				args = slices.Clone(head)
			}
		}
		if len(args) > len(head) {
			execs = append(execs, rueidis.LuaExec{Keys: []string{b.presenceKey(room)}, Args: args})
		}
	}
	b.presenceMu.Unlock()
	if len(execs) == 0 {
		return nil
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	for _, r := range presenceAddScript.ExecMulti(ctx, b.client, execs...) {
		if err := r.Error(); err != nil {
			return b.fail("restore presence", ctx, err)
		}
	}
	return nil
}

// renewPresence extends the key TTL of the rooms whose turn has come (see
// presenceKeyTTL), pipelined, and writes the entries of a room again if
// its key is gone.
func (b *Broker) renewPresence(ctx context.Context) error {
	now := time.Now()
	b.presenceMu.Lock()
	n := len(b.renewOrder)
	b.renewCredit += float64(n) * float64(now.Sub(b.renewedAt)) / float64(b.renewEvery)
	b.renewCredit = min(b.renewCredit, float64(n))
	b.renewedAt = now
	k := int(b.renewCredit)
	b.renewCredit -= float64(k)
	rooms := make([]string, 0, k)
	for range k {
		if b.renewCursor >= len(b.renewOrder) {
			b.renewCursor = 0 // a new round
		}
		rooms = append(rooms, b.renewOrder[b.renewCursor])
		b.renewCursor++
	}
	b.presenceMu.Unlock()
	if len(rooms) == 0 {
		return nil
	}

	var gone []string
	for chunk := range slices.Chunk(rooms, catchUpBatch) {
		cmds := make(rueidis.Commands, len(chunk))
		for i, room := range chunk {
			cmds[i] = b.client.B().Pexpire().Key(b.presenceKey(room)).Milliseconds(b.presenceKeyTTL.Milliseconds()).Build()
		}
		cctx, cancel := b.timeout(ctx)
		rs := b.client.DoMulti(cctx, cmds...)
		cancel()
		for i, r := range rs {
			ok, err := r.AsBool()
			if err != nil {
				// The rest of this round's rooms wait for the next round,
				// well within the key TTL.
				return b.fail("renew presence", cctx, err)
			}
			if !ok {
				gone = append(gone, chunk[i])
			}
		}
	}
	if len(gone) == 0 {
		return nil
	}
	b.log.Warn("presence keys gone before their TTL: writing them again", "rooms", len(gone))
	return b.rewrite(ctx, gone)
}

// sessionJSON is how a session state is stored; its ID is in the key.
type sessionJSON struct {
	User  string                     `json:"user"`
	Rooms map[string]broker.Position `json:"rooms,omitempty"`
}

// appendSessionJSON appends the JSON of sessionJSON{user, rooms}, as
// json.Marshal would write it (but with the rooms in map order), without
// its reflection and map sorting: a hub saves about a thousand states a
// second under steady traffic.
func appendSessionJSON(dst []byte, user string, rooms map[string]broker.Position) []byte {
	dst = append(dst, `{"user":`...)
	dst = appendJSONString(dst, user)
	if len(rooms) > 0 {
		dst = append(dst, `,"rooms":{`...)
		first := true
		for room, pos := range rooms {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = appendJSONString(dst, room)
			dst = append(dst, `:{"epoch":`...)
			dst = appendJSONString(dst, pos.Epoch)
			dst = append(dst, `,"offset":`...)
			dst = strconv.AppendUint(dst, pos.Offset, 10)
			dst = append(dst, '}')
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string. Room names, epochs and most
// user ids are printable ASCII without quotes or backslashes and are
// copied as they are; anything else is left to encoding/json.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always marshals
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
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
	px := max(ttl.Milliseconds(), 1)
	// One buffer holds every state's JSON, and each value is a string view
	// of its part (rueidis.BinaryString does not copy). Appending never
	// writes over a part already taken: it writes past them, or into a new
	// array, leaving the old one as it is.
	buf := make([]byte, 0, 128*len(states))
	for _, s := range states {
		if s.ID == "" {
			return fmt.Errorf("%s: empty session id", op)
		}
		start := len(buf)
		buf = appendSessionJSON(buf, s.User, s.Rooms)
		part := buf[start:len(buf):len(buf)]
		cmds = append(cmds, b.client.B().Set().Key(b.sessionKey(s.ID)).Value(rueidis.BinaryString(part)).PxMilliseconds(px).Build())
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
// instance's earlier entry (a zero LastHeartbeat is set to now), and keeps
// every presence entry this Broker added alive: entries live while their
// Broker heartbeats, so this costs the same few commands whatever their
// number. When this Broker had not been live (its first heartbeat, Redis
// lost its data, or it could not heartbeat for PresenceTTL, so readers may
// have dropped its entries), Heartbeat first writes all its entries again.
// It also renews the key TTL of a small share of its rooms (see
// presenceKeyTTL). The instance stays in Instances for PresenceTTL.
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
	used := b.currentIncarnation()
	hctx, cancel := b.timeout(ctx)
	next, err := heartbeatScript.Exec(hctx, b.client,
		[]string{b.instancesKey, b.heartbeatsKey, b.liveKey},
		[]string{info.ID, string(data), b.presenceTTLms, used, b.newIncarnation()}).ToString()
	cancel()
	if err != nil {
		return b.fail(op, hctx, err)
	}
	n := b.restoreWanted.Load()
	if b.keptAlive(used, next) {
		n = b.restoreWanted.Add(1)
	}
	if b.restoreDone.Load() < n {
		if err := b.restore(ctx, n); err != nil {
			// The restorer retries, without the caller's deadline.
			b.wakeRestorer()
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := b.renewPresence(ctx); err != nil {
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

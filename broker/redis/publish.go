package redis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/broker"
)

// Publish stores p as room's next message and publishes it on the room's
// channel, both in one script run; it returns once Redis has answered, so
// the position is safe to ack. A publish whose Key was already used in room
// within IdempotencyTTL stores nothing and returns the first publish's
// position. Empty Data is stored as JSON null. When Redis cannot be reached
// the error wraps broker.ErrUnavailable; such a message may or may not have
// been stored (a retry with the same Key settles it), but a nil error
// always means it was.
func (b *Broker) Publish(ctx context.Context, room string, p broker.Publication) (broker.Position, error) {
	// op is built only for an error: publishing is the hot path.
	op := func() string { return "publish to " + strconv.Quote(room) }
	if b.closed.Load() || ctx.Err() != nil {
		return broker.Position{}, b.check(op(), ctx)
	}
	data := string(p.Data)
	if data == "" {
		data = "null"
	}
	keys := []string{b.metaKey(room), b.logKey(room)}
	if p.Key != "" {
		keys = append(keys, b.idemKey(room, p.Key))
	}
	args := []string{newEpoch(), b.historyTTLms, b.historySizeArg, b.channel(room), b.idempotencyMs, p.From, p.Origin, data}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	s, err := publishScript.Exec(ctx, b.client, keys, args).ToString()
	if err != nil {
		return broker.Position{}, b.failPublish(op(), ctx, err)
	}
	pos, err := parsePosition(s)
	if err != nil {
		return broker.Position{}, fmt.Errorf("%s: %w", op(), err)
	}
	return pos, nil
}

// failPublish is fail for a publish: a connection that failed after it
// may have sent the script (no dial error, no error reply, not closed)
// leaves the outcome unknown, which the error says with
// broker.ErrUnconfirmed.
func (b *Broker) failPublish(op string, ctx context.Context, err error) error {
	werr := b.fail(op, ctx, err)
	if !errors.Is(werr, broker.ErrUnavailable) {
		return werr
	}
	var dial *net.OpError
	if _, reply := rueidis.IsRedisErr(err); reply || errors.As(err, &dial) && dial.Op == "dial" {
		return werr // the script did not run
	}
	return fmt.Errorf("%s: %w", op, errors.Join(broker.ErrUnavailable, broker.ErrUnconfirmed, err))
}

// Position returns room's latest position, starting an epoch at offset 0
// if the room has none (or only one from an earlier server generation).
// It does not extend the room's TTL.
func (b *Broker) Position(ctx context.Context, room string) (broker.Position, error) {
	op := "position of " + strconv.Quote(room)
	if err := b.check(op, ctx); err != nil {
		return broker.Position{}, err
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	s, err := positionScript.Exec(ctx, b.client,
		[]string{b.metaKey(room), b.logKey(room)},
		[]string{newEpoch(), b.historyTTLms}).ToString()
	if err != nil {
		return broker.Position{}, b.fail(op, ctx, err)
	}
	pos, err := parsePosition(s)
	if err != nil {
		return broker.Position{}, fmt.Errorf("%s: %w", op, err)
	}
	return pos, nil
}

// History returns the messages of room's history selected by q, in offset
// order, with the room's latest position, read in one step. Like Position,
// it starts an epoch if the room has none. History holds at most the last
// HistorySize messages of the room's current epoch.
func (b *Broker) History(ctx context.Context, room string, q broker.HistoryQuery) (broker.History, error) {
	op := "history of " + strconv.Quote(room)
	if err := b.check(op, ctx); err != nil {
		return broker.History{}, err
	}
	if q.Limit < 0 {
		return broker.History{}, fmt.Errorf("%s: negative limit %d", op, q.Limit)
	}
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	res := historyScript.Exec(ctx, b.client, b.historyKeys(room), b.historyArgs("", q))
	h, err := decodeHistory(room, res)
	if err != nil {
		return broker.History{}, b.fail(op, ctx, err)
	}
	return h, nil
}

func (b *Broker) historyKeys(room string) []string {
	return []string{b.metaKey(room), b.logKey(room)}
}

// historyArgs are the arguments of historyScript for q; expect is the epoch
// q.After belongs to, or "" for the room's current one.
func (b *Broker) historyArgs(expect string, q broker.HistoryQuery) []string {
	tail := "0"
	if q.Tail {
		tail = "1"
	}
	return []string{newEpoch(), b.historyTTLms, b.historySizeArg, expect,
		strconv.FormatUint(q.After, 10), strconv.Itoa(q.Limit), tail}
}

// decodeHistory decodes a reply of historyScript. Redis errors are
// returned as they are, for the caller's fail.
func decodeHistory(room string, res rueidis.RedisResult) (broker.History, error) {
	reply, err := res.ToArray()
	if err != nil {
		return broker.History{}, err
	}
	if len(reply) != 2 {
		return broker.History{}, fmt.Errorf("history reply of %d elements", len(reply))
	}
	s, err := reply[0].ToString()
	if err != nil {
		return broker.History{}, err
	}
	h := broker.History{}
	if h.Position, err = parsePosition(s); err != nil {
		return broker.History{}, err
	}
	envs, err := reply[1].AsStrSlice()
	if err != nil && !rueidis.IsRedisNil(err) {
		return broker.History{}, err
	}
	if len(envs) > 0 {
		h.Messages = make([]*broker.Message, 0, len(envs))
	}
	for _, env := range envs {
		m, err := decodeEnvelope(room, env)
		if err != nil {
			return broker.History{}, fmt.Errorf("history entry: %w", err)
		}
		if m.Epoch != h.Epoch {
			continue // cannot happen: a new epoch drops the old stream
		}
		h.Messages = append(h.Messages, m)
	}
	// Tail reads come newest first.
	if len(h.Messages) > 1 && h.Messages[0].Offset > h.Messages[len(h.Messages)-1].Offset {
		slices.Reverse(h.Messages)
	}
	return h, nil
}

package client

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// request is a client frame waiting for its answer. Requests live in
// Client.pending from the call until the answer; they are written on the
// current connection, and written again, in id order, on the next one if
// that ends first.
type request struct {
	id    uint64
	frame protocol.ClientFrame
	// done receives the answer once; nil for internal requests.
	done chan result
	// conn is the connection the request was last written on, nil if none.
	conn *conn
	// everSent is set for a publish or send written on a connection that
	// ended before the answer: its message may be stored already.
	everSent bool
	// abandoned is set when the caller gave up (its ctx ended) after the
	// frame was written: the answer is still read, for its side effects,
	// but not retried on another connection.
	abandoned bool
	// holds is the room whose resumed messages wait for this request's ack.
	holds *room
	// counted is set while a join is counted in its room's joins, or a
	// leave in its leaves.
	counted bool
	// rejoin marks the client's own join of a room whose resume failed.
	rejoin bool
}

type result struct {
	frame *protocol.ServerFrame
	err   error
}

func (r *request) internal() bool { return r.done == nil }

func (r *request) publishes() bool {
	return r.frame.Type == protocol.TypePublish || r.frame.Type == protocol.TypeSend
}

// room is the room a request's frame is about; for send, the recipient's
// inbox.
func (r *request) room() string {
	if r.frame.Type == protocol.TypeSend {
		return protocol.Inbox(r.frame.To)
	}
	return r.frame.Room
}

// do sends r and waits for its answer. Answers that mean "nothing was done,
// try again" (unavailable, rate_limited) are retried with back-off until ctx
// ends; publishes keep their idempotency key.
func (c *Client) do(ctx context.Context, frame protocol.ClientFrame) (*protocol.ServerFrame, error) {
	for attempt := 0; ; attempt++ {
		f, err := c.roundTrip(ctx, frame)
		if err == nil || !retryable(err) {
			return f, err
		}
		c.log.Debug("request refused, retrying", "type", frame.Type, "room", frame.Room, "err", err)
		t := time.NewTimer(c.bo.Delay(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (last answer: %w)", ctx.Err(), err)
		case <-c.done:
			t.Stop()
			return nil, c.Err()
		}
	}
}

// roundTrip sends r once (on the current connection, or on the next one
// after a reconnect) and waits for its answer or ctx.
func (c *Client) roundTrip(ctx context.Context, frame protocol.ClientFrame) (*protocol.ServerFrame, error) {
	done := make(chan result, 1)
	r := &request{frame: frame, done: done}
	c.mu.Lock()
	if c.stopped {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.add(r)
	c.mu.Unlock()
	select {
	case res := <-done:
		return res.frame, res.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if c.pending[r.id] == r && !r.abandoned {
		c.abandon(r)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
	c.mu.Unlock()
	res := <-done // answered meanwhile
	return res.frame, res.err
}

// add gives r an id, makes it pending and writes it if connected. c.mu must
// be held.
func (c *Client) add(r *request) {
	c.nextID++
	r.id = c.nextID
	r.frame.ID = json.RawMessage(strconv.AppendUint(nil, r.id, 10))
	c.pending[r.id] = r
	switch {
	case r.internal():
		// The client's own requests count nothing.
	case r.frame.Type == protocol.TypeJoin:
		rm := c.roomFor(r.frame.Room)
		rm.joins++
		r.counted = true
		if r.frame.Since != nil && !rm.joined && !rm.hasPos {
			rm.pos, rm.hasPos = *r.frame.Since, true
		}
	case r.frame.Type == protocol.TypeLeave:
		if rm := c.rooms[r.frame.Room]; rm != nil {
			rm.leaves++
			r.counted = true
		}
	}
	if c.active != nil {
		c.active.write(r)
	}
}

// resolve ends r with an answer or an error. c.mu must be held.
func (c *Client) resolve(r *request, f *protocol.ServerFrame, err error) {
	delete(c.pending, r.id)
	c.uncount(r)
	c.release(r)
	if r.done != nil && !r.abandoned {
		r.done <- result{frame: f, err: err}
	}
}

// abandon gives up r because its caller's ctx ended. A publish or join that
// was written may still be answered: it stays pending until then (or until
// the connection ends), so that its answer is not lost for the positions,
// but it is not written again. c.mu must be held.
func (c *Client) abandon(r *request) {
	c.release(r)
	c.uncount(r)
	if r.conn != nil && (r.publishes() || r.frame.Type == protocol.TypeJoin) {
		r.abandoned = true
		return
	}
	delete(c.pending, r.id)
}

// uncount undoes what add counted in r's room. c.mu must be held.
func (c *Client) uncount(r *request) {
	if !r.counted {
		return
	}
	r.counted = false
	rm := c.rooms[r.frame.Room]
	if rm == nil {
		return
	}
	switch r.frame.Type {
	case protocol.TypeJoin:
		rm.joins--
	case protocol.TypeLeave:
		rm.leaves--
	}
	c.forget(rm)
}

// release ends r's hold on its room's resumed messages. c.mu must be held.
func (c *Client) release(r *request) {
	rm := r.holds
	if rm == nil {
		return
	}
	r.holds = nil
	rm.holds--
	if rm.holds == 0 {
		c.flushHeld(rm)
	}
}

// encode returns r's frame as written now: a join resumes from what the
// client already received of the room.
func (c *Client) encode(r *request) []byte {
	f := r.frame
	if f.Type == protocol.TypeJoin && f.Since != nil {
		if rm := c.rooms[f.Room]; rm != nil && rm.hasPos && rm.pos.Epoch != "" {
			since := rm.pos
			f.Since = &since
		}
	}
	b, err := json.Marshal(&f)
	if err != nil {
		panic("client: encode frame: " + err.Error()) // only our own types
	}
	return b
}

// answerError turns an error frame into the error of a request.
func answerError(f *protocol.ServerFrame) error {
	return &protocol.Error{Code: f.Code, Message: f.Message}
}

// newKey returns a random idempotency key: 16 bytes, base64url, 22
// characters.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// encodeData turns a value into the JSON of data.
func encodeData(data any) (json.RawMessage, error) {
	switch d := data.(type) {
	case json.RawMessage:
		if !json.Valid(d) {
			return nil, errors.New("data is not valid JSON")
		}
		return d, nil
	default:
		b, err := json.Marshal(data)
		if err != nil {
			return nil, fmt.Errorf("encode data: %w", err)
		}
		return b, nil
	}
}

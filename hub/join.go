package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
	"github.com/switchboard-rt/switchboard/transport"
)

// replayPage is the most missed messages a recovery reads from the broker
// at a time. Pages are smaller when messages are large: a page is sized to
// the room left in the session's send queue, so that the page in memory
// and the queue together stay within the queue's bound, however long the
// history.
const replayPage = 32

// joining is a join between its broker work and its frames.
type joining struct {
	r *room
	// start is where the member's live stream begins: the room's position
	// when the join read it.
	start broker.Position
	// missed is the first page of the messages to replay; recovered says
	// whether they (and the pages after them, up to start) continue
	// since without a hole.
	missed    []*broker.Message
	recovered bool
	// last is the offset of the last message replayed.
	last uint64
}

func (s *Session) join(f *protocol.ClientFrame) error {
	return s.joinRoom(f.Room, f.Since, f.ID)
}

// joinRoom joins s to name, recovering from since if given, and sends the
// missed messages and joined (with id).
func (s *Session) joinRoom(name string, since *protocol.Position, id json.RawMessage) error {
	if !s.claims().CanJoin(name) {
		return protocol.Errorf(protocol.CodeForbidden, "your token does not allow joining %s", name)
	}
	s.mu.Lock()
	var r *room
	i := s.roomLocked(name)
	if i >= 0 {
		r = s.rooms[i].r
	}
	n := len(s.rooms)
	s.mu.Unlock()
	if i >= 0 {
		r.mu.Lock()
		mem, _ := r.members.Get(s)
		pos := broker.Position{Epoch: mem.epoch, Offset: mem.next - 1}
		r.mu.Unlock()
		s.send(&protocol.Joined{Type: protocol.TypeJoined, ID: id, Room: name, Epoch: pos.Epoch, Offset: pos.Offset})
		return nil
	}
	if _, inbox := protocol.InboxUser(name); !inbox && n-1 >= s.hub.cfg.MaxRooms {
		return protocol.Errorf(protocol.CodeTooManyRooms, "a session may join at most %d rooms", s.hub.cfg.MaxRooms)
	}
	if s.hub.draining.Load() {
		return ErrDraining
	}
	ctx, done := s.call(false)
	j, err := s.hub.prepareJoin(ctx, s, name, since)
	done()
	if err != nil {
		return err
	}
	s.hub.finishJoin(s, j, id, true)
	return nil
}

// prepareJoin makes s a recovering member of name, records its presence and
// reads where its stream starts: the room's position or, with since, the
// first page of the history after it. Live messages are buffered meanwhile.
func (h *Hub) prepareJoin(ctx context.Context, s *Session, name string, since *protocol.Position) (*joining, error) {
	r, err := h.acquire(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", name, err)
	}
	r.mu.Lock()
	r.members.Set(s, &member{rec: &recovery{}})
	r.mu.Unlock()
	s.mu.Lock()
	s.rooms = append(s.rooms, sessionRoom{r: r})
	s.mu.Unlock()

	j := &joining{r: r}
	err = h.broker.AddPresence(ctx, name, broker.PresenceEntry{Session: s.id, User: s.user, Instance: h.cfg.InstanceID})
	if err == nil {
		if since == nil {
			j.start, err = h.broker.Position(ctx, name)
		} else {
			var hist broker.History
			hist, err = h.broker.History(ctx, name, broker.HistoryQuery{After: since.Offset, Limit: h.pageLimit(s.conn.Free(), int(h.cfg.MaxFrameBytes))})
			j.start = hist.Position
			if err == nil && continuous(*since, hist) {
				j.recovered, j.missed, j.last = true, hist.Messages, since.Offset
			}
		}
	}
	if err != nil {
		s.mu.Lock()
		s.removeRoomLocked(name)
		s.mu.Unlock()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.BrokerTimeout)
		h.removeMember(rctx, s, r)
		cancel()
		return nil, fmt.Errorf("join %s: %w", name, err)
	}
	return j, nil
}

// continuous reports whether hist, a first page of the history after
// since, begins right after since in since's epoch.
func continuous(since broker.Position, hist broker.History) bool {
	if since.Epoch != hist.Epoch || since.Offset > hist.Offset {
		return false
	}
	if since.Offset == hist.Offset {
		return true
	}
	return len(hist.Messages) > 0 && hist.Messages[0].Offset == since.Offset+1
}

// finishJoin sends what a join found, then turns the member live: the
// missed messages, page by page, each waiting for room in the send queue
// (a client that reads is never closed for its recovery; one that does
// not is closed with 4008); then, under the room lock, joined (when
// sendJoined) and the live messages buffered meanwhile that the session
// has not seen. Live messages that pile up past the send queue's bound
// during a long replay are dropped from the buffer and read from the
// history instead, so the replay goes on until it has caught up.
func (h *Hub) finishJoin(s *Session, j *joining, id json.RawMessage, sendJoined bool) {
	// Until the writer reports more, the session has what came before the
	// missed messages, or the start of its live stream.
	base := j.start
	if len(j.missed) > 0 {
		base.Offset = j.missed[0].Offset - 1
	}
	s.mu.Lock()
	if i := s.roomLocked(j.r.name); i >= 0 {
		s.rooms[i].sent = base
		s.dirty = true
	}
	s.mu.Unlock()

	r := j.r
	for {
		if j.recovered && !h.replay(s, j) {
			return // the session is closing
		}
		r.mu.Lock()
		mem, _ := r.members.Get(s)
		if mem == nil {
			r.mu.Unlock()
			return // the session ended meanwhile
		}
		if !mem.rec.overflowed {
			break // r.mu stays locked
		}
		mem.rec.overflowed = false
		r.mu.Unlock()
		ctx, done := s.call(false)
		pos, err := h.broker.Position(ctx, r.name)
		done()
		if err != nil {
			s.conn.CloseNow(closeTryLater, "broker unavailable during recovery, try again")
			return
		}
		if pos.Epoch != j.start.Epoch {
			j.recovered = false
		}
		j.start = pos
	}
	defer r.mu.Unlock()
	mem, _ := r.members.Get(s)
	rec := mem.rec
	if sendJoined {
		s.send(&protocol.Joined{Type: protocol.TypeJoined, ID: id, Room: r.name,
			Epoch: j.start.Epoch, Offset: j.start.Offset, Recovered: j.recovered})
	}
	mem.epoch, mem.next = j.start.Epoch, j.start.Offset+1
	if pr := rec.pendingReset; pr != nil && (pr.Epoch != j.start.Epoch || pr.Offset > j.start.Offset) {
		mem.epoch, mem.next = pr.Epoch, pr.Offset+1
		s.enqueueReset(r.name, *pr)
	}
	delivered := 0
	for _, m := range rec.pending {
		if m.Epoch != mem.epoch || m.Offset < mem.next {
			continue
		}
		mem.next = m.Offset + 1
		if m.Origin == s.id && !s.echo {
			s.conn.Send(transport.Frame{Ref: m}) // a marker: see Hub.Deliver
			continue
		}
		s.conn.Send(transport.Frame{Data: encodeMessage(m), Ref: m})
		delivered++
	}
	h.metrics.delivered(delivered)
	mem.rec = nil
}

// replay sends the missed messages of a recovering join after j.last up to
// j.start, reading page after page. If the history no longer continues
// (it expired or was trimmed under a very long replay), it stops and
// clears j.recovered: joined then says so. It returns false when the
// session closed. Each page is a broker call of its own: the replay as a
// whole takes as long as the client takes to read it.
func (h *Hub) replay(s *Session, j *joining) bool {
	page := j.missed
	j.missed = nil
	largest := int(h.cfg.MaxFrameBytes) // until a page shows the sizes
	for {
		for i, m := range page {
			largest = max(largest, len(m.Data)+frameOverhead)
			if !s.conn.SendWait(transport.Frame{Data: encodeMessage(m), Ref: m}) {
				return false
			}
			page[i] = nil // sent: the queue holds its frame now
			h.metrics.delivered(1)
			j.last = m.Offset
		}
		if j.last >= j.start.Offset {
			return true
		}
		free, ok := s.conn.WaitRoom(largest)
		if !ok {
			return false
		}
		ctx, done := s.call(false)
		hist, err := h.broker.History(ctx, j.r.name, broker.HistoryQuery{After: j.last, Limit: h.pageLimit(free, largest)})
		canceled := ctx.Err() == context.Canceled
		done()
		switch {
		case canceled:
			return false
		case err != nil:
			h.log.Warn("replay page", "room", j.r.name, "session", s.id, "err", err)
			j.recovered = false
			return true
		case hist.Epoch != j.start.Epoch || len(hist.Messages) == 0 || hist.Messages[0].Offset != j.last+1:
			j.recovered = false
			return true
		}
		page = hist.Messages
		if n := len(page); page[n-1].Offset > j.start.Offset {
			// Published after the join read its start: those come live.
			page = page[:sortSearch(page, j.start.Offset)]
		}
		largest = 0
	}
}

// frameOverhead bounds what a message frame adds to its data: the type,
// room, epoch, offset, from and ts fields.
const frameOverhead = 512

// pageLimit is how many messages of up to largest bytes the next replay
// page may hold with free bytes of room in the send queue: at least one.
func (h *Hub) pageLimit(free, largest int) int {
	return max(1, min(replayPage, free/max(largest, 1)))
}

// sortSearch returns how many messages of page have an offset of at most
// offset.
func sortSearch(page []*broker.Message, offset uint64) int {
	return sort.Search(len(page), func(i int) bool { return page[i].Offset > offset })
}

// welcome answers hello: it joins the inbox, sends welcome, and resumes the
// rooms of hello.resume and of the state of hello.session.
func (h *Hub) welcome(s *Session, hello *protocol.ClientFrame) error {
	ctx, done := s.call(false)
	resume := make(map[string]broker.Position, len(hello.Resume))
	if hello.Session != "" {
		st, err := h.broker.LoadSession(ctx, hello.Session)
		switch {
		case err == nil && st.User == s.user:
			for room, pos := range st.Rooms {
				resume[room] = pos
			}
		case err != nil && !errors.Is(err, broker.ErrNotFound):
			done()
			return fmt.Errorf("load session %s: %w", hello.Session, err)
		}
	}
	var refused []error
	for room, err := range hello.ResumeErrors {
		refused = append(refused, err)
		delete(resume, room) // the client's own (bad) position wins over the saved one
	}
	for room, pos := range hello.Resume {
		if err := protocol.CheckResume(room, pos); err != nil {
			refused = append(refused, err)
			delete(resume, room)
			continue
		}
		resume[room] = pos // the client's own positions win
	}

	inbox := protocol.Inbox(s.user)
	var inboxSince *protocol.Position
	if pos, ok := resume[inbox]; ok {
		inboxSince = &pos
		delete(resume, inbox)
	}
	j, err := h.prepareJoin(ctx, s, inbox, inboxSince)
	done()
	if err != nil {
		return err
	}
	s.send(&protocol.Welcome{
		Type: protocol.TypeWelcome, Session: s.id, User: s.user, Instance: h.cfg.InstanceID,
		Heartbeat: h.cfg.Heartbeat.Milliseconds(),
		Inbox:     protocol.RoomPosition{Room: inbox, Epoch: j.start.Epoch, Offset: j.start.Offset},
	})
	h.finishJoin(s, j, nil, inboxSince != nil)
	for _, err := range refused {
		pe := h.protocolError(err)
		s.sendError(nil, &protocol.Error{Code: pe.Code, Message: "resume: " + pe.Message})
	}

	rooms := make([]string, 0, len(resume))
	for room := range resume {
		rooms = append(rooms, room)
	}
	sort.Strings(rooms)
	for _, room := range rooms {
		pos := resume[room]
		if err := s.joinRoom(room, &pos, nil); err != nil {
			pe := h.protocolError(err)
			s.sendError(nil, &protocol.Error{Code: pe.Code, Message: "resume " + room + ": " + pe.Message})
		}
	}
	return nil
}

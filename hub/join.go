package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// joining is a join between its broker work and its frames.
type joining struct {
	r         *room
	start     broker.Position
	missed    []*broker.Message
	recovered bool
}

func (s *Session) join(f *protocol.ClientFrame) error {
	return s.joinRoom(f.Room, f.Since, f.ID)
}

// joinRoom joins s to name, recovering from since if given, and sends the
// missed messages and joined (with id).
func (s *Session) joinRoom(name string, since *protocol.Position, id json.RawMessage) error {
	if !s.claims.CanJoin(name) {
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
		mem := r.members[s]
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
	ctx, cancel := s.hub.brokerCtx(context.Background())
	defer cancel()
	j, err := s.hub.prepareJoin(ctx, s, name, since)
	if err != nil {
		return err
	}
	s.hub.finishJoin(s, j, id, true)
	return nil
}

// prepareJoin makes s a recovering member of name, records its presence and
// reads where its stream starts: the room's position or, with since, the
// history after it. Live messages are buffered meanwhile.
func (h *Hub) prepareJoin(ctx context.Context, s *Session, name string, since *protocol.Position) (*joining, error) {
	r, err := h.acquire(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", name, err)
	}
	r.mu.Lock()
	r.members[s] = &member{recovering: true}
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
			hist, err = h.broker.History(ctx, name, broker.HistoryQuery{After: since.Offset})
			j.start = hist.Position
			if err == nil && continuous(*since, hist) {
				j.recovered, j.missed = true, hist.Messages
			}
		}
	}
	if err != nil {
		s.mu.Lock()
		s.removeRoomLocked(name)
		s.mu.Unlock()
		h.removeMember(context.WithoutCancel(ctx), s, r)
		return nil, fmt.Errorf("join %s: %w", name, err)
	}
	return j, nil
}

// continuous reports whether hist holds every message after since.
func continuous(since broker.Position, hist broker.History) bool {
	if since.Epoch != hist.Epoch || since.Offset > hist.Offset {
		return false
	}
	if since.Offset == hist.Offset {
		return true
	}
	return len(hist.Messages) > 0 && hist.Messages[0].Offset == since.Offset+1 &&
		hist.Messages[len(hist.Messages)-1].Offset == hist.Offset
}

// finishJoin sends what a join found (missed messages, then joined when
// sendJoined) and turns the member live, releasing the messages buffered
// meanwhile that the session has not seen.
func (h *Hub) finishJoin(s *Session, j *joining, id json.RawMessage, sendJoined bool) {
	frames := make([][]byte, len(j.missed))
	for i, m := range j.missed {
		frames[i] = encodeMessage(m)
	}
	var joined []byte
	if sendJoined {
		joined = protocol.Encode(&protocol.Joined{Type: protocol.TypeJoined, ID: id, Room: j.r.name,
			Epoch: j.start.Epoch, Offset: j.start.Offset, Recovered: j.recovered})
	}
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
	r.mu.Lock()
	defer r.mu.Unlock()
	mem := r.members[s]
	if mem == nil {
		return // the session ended meanwhile
	}
	for i, m := range j.missed {
		s.enqueue(outFrame{data: frames[i], msg: m, recovered: true})
	}
	delivered := len(j.missed)
	defer func() { h.metrics.delivered(delivered) }()
	if joined != nil {
		s.enqueue(outFrame{data: joined})
	}
	mem.epoch, mem.next = j.start.Epoch, j.start.Offset+1
	if pr := mem.pendingReset; pr != nil {
		mem.epoch, mem.next = pr.Epoch, pr.Offset+1
		s.enqueueReset(r.name, *pr)
	}
	for _, m := range mem.pending {
		if m.Epoch != mem.epoch || m.Offset < mem.next {
			continue
		}
		mem.next = m.Offset + 1
		if m.Origin == s.id && !s.echo {
			s.enqueue(outFrame{msg: m}) // a marker: see Hub.Deliver
			continue
		}
		s.enqueue(outFrame{data: encodeMessage(m), msg: m})
		delivered++
	}
	mem.recovering, mem.pending, mem.pendingReset = false, nil, nil
}

// welcome answers hello: it joins the inbox, sends welcome, and resumes the
// rooms of hello.resume and of the state of hello.session.
func (h *Hub) welcome(s *Session, hello *protocol.ClientFrame) error {
	ctx, cancel := h.brokerCtx(context.Background())
	defer cancel()
	resume := make(map[string]broker.Position, len(hello.Resume))
	if hello.Session != "" {
		st, err := h.broker.LoadSession(ctx, hello.Session)
		switch {
		case err == nil && st.User == s.user:
			for room, pos := range st.Rooms {
				resume[room] = pos
			}
		case err != nil && !errors.Is(err, broker.ErrNotFound):
			return fmt.Errorf("load session %s: %w", hello.Session, err)
		}
	}
	var refused []error
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

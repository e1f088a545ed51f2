package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// MaxBroadcastRooms is the most rooms one broadcast may name.
const MaxBroadcastRooms = 1000

// broadcastWorkers bounds the publishes of one broadcast in flight at once.
const broadcastWorkers = 16

// publisher stores messages through the broker. The hub's Publish counts
// them in its metrics and accepts them during a drain.
type publisher interface {
	Publish(ctx context.Context, room string, p broker.Publication) (broker.Position, error)
}

// message holds the fields shared by publish, send and broadcast bodies.
type message struct {
	Data json.RawMessage `json:"data"`
	From string          `json:"from"`
	Key  string          `json:"key"`
}

// publication checks m and returns it as a broker publication, its data
// compacted. data must be present (JSON null is a value); from, if given,
// must be a user id.
func (m *message) publication() (broker.Publication, error) {
	if m.Data == nil {
		return broker.Publication{}, errorf(protocol.CodeBadRequest, "data is required (any JSON value, null included)")
	}
	if !utf8.Valid(m.Data) {
		// Data is relayed verbatim in WebSocket text frames, which must be
		// UTF-8.
		return broker.Publication{}, errorf(protocol.CodeBadRequest, "data is not valid UTF-8")
	}
	if m.From != "" && !protocol.ValidUser(m.From) {
		return broker.Publication{}, errorf(protocol.CodeBadRequest, "from is not a valid user id: use 1-%d printable characters without spaces or braces", protocol.MaxUserLen)
	}
	if len(m.Key) > protocol.MaxKeyLen {
		return broker.Publication{}, errorf(protocol.CodeBadRequest, "key must be 1-%d bytes", protocol.MaxKeyLen)
	}
	// Batched server frames are separated by newlines, so stored data must
	// never hold a raw one: store it compacted.
	var buf bytes.Buffer
	buf.Grow(len(m.Data))
	if err := json.Compact(&buf, m.Data); err != nil {
		return broker.Publication{}, errorf(protocol.CodeBadRequest, "data is not valid JSON")
	}
	return broker.Publication{From: m.From, Data: buf.Bytes(), Key: m.Key}, nil
}

// decodeBody reads r's JSON body, at most Config.MaxBodyBytes, into v.
// Field names match exactly and unknown fields are ignored (see
// protocol.Unmarshal).
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return err
		}
		return errorf(protocol.CodeBadRequest, "could not read the request body")
	}
	if err := protocol.Unmarshal(body, v); err != nil {
		return errorf(protocol.CodeBadRequest, "the body is not a valid JSON object of this route: %s", protocol.JSONProblem(err))
	}
	return nil
}

// positionAnswer is the answer to publish and send, and a broadcast result.
type positionAnswer = protocol.RoomPosition

// publish handles POST /api/publish: {"room","data","from"?,"key"?}. Any
// room may be named, inboxes ("@bob") included: the backend is trusted.
func (s *Server) publish(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Room string `json:"room"`
		message
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := protocol.ParseRoom(req.Room); err != nil {
		return err
	}
	return s.publishOne(w, r, req.Room, &req.message)
}

// send handles POST /api/send: {"to","data","from"?,"key"?}, a publish to
// the inbox of the user "to". --no-direct does not apply to the API.
func (s *Server) send(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		To string `json:"to"`
		message
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.To == "" {
		return errorf(protocol.CodeBadRequest, "to (a user id) is required")
	}
	if !protocol.ValidUser(req.To) {
		return errorf(protocol.CodeBadRequest, "to is not a valid user id: use 1-%d printable characters without spaces or braces", protocol.MaxUserLen)
	}
	return s.publishOne(w, r, protocol.Inbox(req.To), &req.message)
}

func (s *Server) publishOne(w http.ResponseWriter, r *http.Request, room string, m *message) error {
	p, err := m.publication()
	if err != nil {
		return err
	}
	pos, err := s.pub.Publish(publishContext(r), room, p)
	s.answerWindow(w)
	if err != nil {
		return err // it names the room
	}
	writeJSON(w, http.StatusOK, positionAnswer{Room: room, Epoch: pos.Epoch, Offset: pos.Offset})
	return nil
}

// broadcastResult is one room's outcome in a broadcast answer: a position,
// or an error.
type broadcastResult struct {
	Room   string       `json:"room"`
	Epoch  string       `json:"epoch,omitempty"`
	Offset uint64       `json:"offset,omitempty"`
	Error  *errorDetail `json:"error,omitempty"`
}

// broadcast handles POST /api/broadcast: {"rooms":[...],"data","from"?,
// "key"?}. Every room name is checked before anything is published; then
// each room is published independently, and the answer (200) reports each
// room's position or error in the order of "rooms". A key makes each room's
// publish idempotent, so a failed broadcast can be retried as a whole.
func (s *Server) broadcast(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Rooms []string `json:"rooms"`
		message
	}
	if err := s.decodeBody(w, r, &req); err != nil {
		return err
	}
	if len(req.Rooms) == 0 {
		return errorf(protocol.CodeBadRequest, "rooms must list at least one room")
	}
	if len(req.Rooms) > MaxBroadcastRooms {
		return errorf(protocol.CodeBadRequest, "rooms lists %d rooms; a broadcast may name at most %d", len(req.Rooms), MaxBroadcastRooms)
	}
	seen := make(map[string]bool, len(req.Rooms))
	for i, room := range req.Rooms {
		if err := protocol.ParseRoom(room); err != nil {
			var pe *protocol.Error
			errors.As(err, &pe)
			return errorf(protocol.CodeBadRoom, "rooms[%d]: %s", i, pe.Message)
		}
		if seen[room] {
			return errorf(protocol.CodeBadRequest, "rooms[%d] repeats %q", i, room)
		}
		seen[room] = true
	}
	p, err := req.publication()
	if err != nil {
		return err
	}

	results := make([]broadcastResult, len(req.Rooms))
	errs := make([]error, len(req.Rooms))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(broadcastWorkers, len(req.Rooms)) {
		wg.Go(func() {
			for i := range next {
				room := req.Rooms[i]
				results[i].Room = room
				pos, err := s.pub.Publish(publishContext(r), room, p)
				if err != nil {
					errs[i] = fmt.Errorf("broadcast to %q: %w", room, err)
					continue
				}
				results[i].Epoch, results[i].Offset = pos.Epoch, pos.Offset
			}
		})
	}
	for i := range req.Rooms {
		next <- i
	}
	close(next)
	wg.Wait()
	s.answerWindow(w)

	// Log a failed broadcast once, at the level of its worst failure.
	failed, worst, level := 0, error(nil), slog.LevelDebug
	for i, err := range errs {
		if err == nil {
			continue
		}
		e, l := classify(err)
		results[i].Error = &errorDetail{Code: e.Code, Message: e.Message}
		failed++
		if worst == nil || l > level {
			worst, level = err, l
		}
	}
	if failed > 0 {
		s.log.Log(r.Context(), level, "api broadcast partly failed", "rooms", len(req.Rooms), "failed", failed, "err", worst)
	}
	writeJSON(w, http.StatusOK, struct {
		Results []broadcastResult `json:"results"`
	}{results})
	return nil
}

// publishContext is the context of a publish: the request's values without
// its deadline or cancellation. Once sent, a publish waits for the
// broker's answer, so that neither the request timeout nor a client that
// hangs up turns a message stored late into a false "unavailable" (see
// hub.Hub.publish).
func publishContext(r *http.Request) context.Context {
	return context.WithoutCancel(r.Context())
}

// answerWindow gives the answer to a publish, which may have outlived the
// request timeout, a write deadline of its own.
func (s *Server) answerWindow(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.RequestTimeout))
}

package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Presence paging limits.
const (
	DefaultPresenceLimit = 100
	MaxPresenceLimit     = 1000
)

// roomReader reads a room's presence and history across the deployment.
type roomReader interface {
	RoomPresence(ctx context.Context, room string) ([]protocol.UserSessions, error)
	History(ctx context.Context, room string, since *protocol.Position, limit int) (broker.History, error)
}

// roomParam returns the {room} path value, checked.
func roomParam(r *http.Request) (string, error) {
	room := r.PathValue("room")
	if err := protocol.ParseRoom(room); err != nil {
		return "", err
	}
	return room, nil
}

// positiveParam parses the query parameter name as an integer of at least
// 1; absent, it is 0.
func positiveParam(q url.Values, name string) (int, error) {
	v := q.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errorf(protocol.CodeBadRequest, "%s must be a whole number of at least 1", name)
	}
	return n, nil
}

// presenceAnswer is the answer to GET /api/rooms/{room}/presence.
type presenceAnswer struct {
	Room   string                  `json:"room"`
	Total  int                     `json:"total"`
	Users  []protocol.UserSessions `json:"users"`
	Cursor string                  `json:"cursor"`
}

// presence handles GET /api/rooms/{room}/presence?limit=&cursor=: one page
// of the room's users, sorted by user id, with their session counts on every
// instance. total counts every user present; cursor, when not empty, fetches
// the next page. limit defaults to 100 and is capped at 1000. Each page is
// read from a fresh snapshot: a user who arrives between pages appears on a
// later page only if their id sorts after the cursor.
func (s *Server) presence(w http.ResponseWriter, r *http.Request) error {
	room, err := roomParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := positiveParam(q, "limit")
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = DefaultPresenceLimit
	}
	limit = min(limit, MaxPresenceLimit)
	after, err := decodeCursor(q.Get("cursor"))
	if err != nil {
		return err
	}

	users, err := s.rooms.RoomPresence(r.Context(), room)
	if err != nil {
		return fmt.Errorf("presence of %q: %w", room, err)
	}
	if !slices.IsSortedFunc(users, compareUsers) {
		slices.SortFunc(users, compareUsers)
	}
	start := 0
	if after != "" {
		start = sort.Search(len(users), func(i int) bool { return users[i].User > after })
	}
	end := min(start+limit, len(users))
	ans := presenceAnswer{Room: room, Total: len(users), Users: users[start:end]}
	if end < len(users) {
		ans.Cursor = encodeCursor(users[end-1].User)
	}
	if ans.Users == nil {
		ans.Users = []protocol.UserSessions{}
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

func compareUsers(a, b protocol.UserSessions) int { return strings.Compare(a.User, b.User) }

// A presence cursor is the last user id of the page before, base64url
// encoded so that it stays opaque and URL-safe.
func encodeCursor(user string) string { return base64.RawURLEncoding.EncodeToString([]byte(user)) }

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 {
		return "", errorf(protocol.CodeBadRequest, "cursor is not one this API returned")
	}
	return string(b), nil
}

// historyAnswer is the answer to GET /api/rooms/{room}/history.
type historyAnswer struct {
	Room     string            `json:"room"`
	Epoch    string            `json:"epoch"`
	Offset   uint64            `json:"offset"`
	Messages []json.RawMessage `json:"messages"`
}

// history handles GET /api/rooms/{room}/history?since=&epoch=&limit=. The
// answer's epoch and offset are the room's latest position; messages are
// message frames as WebSocket clients receive them, oldest first:
//
//   - without since and epoch: the latest limit messages;
//   - with since (and epoch, or in the current epoch without it): the first
//     limit messages after offset since;
//   - with epoch alone: since = 0 in that epoch;
//   - with an epoch that is not the room's current one: the latest messages.
//
// limit defaults to all of history and is capped by the history size.
func (s *Server) history(w http.ResponseWriter, r *http.Request) error {
	room, err := roomParam(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := positiveParam(q, "limit")
	if err != nil {
		return err
	}
	var since *protocol.Position
	epoch := q.Get("epoch")
	if v := q.Get("since"); v != "" || epoch != "" {
		since = &protocol.Position{Epoch: epoch}
		if v != "" {
			if since.Offset, err = strconv.ParseUint(v, 10, 64); err != nil {
				return errorf(protocol.CodeBadRequest, "since must be a message offset (a whole number of at least 0)")
			}
		}
	}
	if since != nil && since.Epoch == "" {
		// since without epoch counts in the room's current epoch.
		cur, err := s.rooms.History(r.Context(), room, nil, 1)
		if err != nil {
			return fmt.Errorf("history of %q: %w", room, err)
		}
		since.Epoch = cur.Epoch
	}
	h, err := s.rooms.History(r.Context(), room, since, limit)
	if err != nil {
		return fmt.Errorf("history of %q: %w", room, err)
	}
	msgs := make([]json.RawMessage, len(h.Messages))
	for i, m := range h.Messages {
		msgs[i] = protocol.AppendMessage(nil, &protocol.Message{
			Room: m.Room, Epoch: m.Epoch, Offset: m.Offset, From: m.From, Data: m.Data, TS: m.Time,
		})
	}
	writeJSON(w, http.StatusOK, historyAnswer{Room: room, Epoch: h.Epoch, Offset: h.Offset, Messages: msgs})
	return nil
}

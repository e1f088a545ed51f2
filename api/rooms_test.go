package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/protocol"
)

type presence struct {
	Room   string                  `json:"room"`
	Total  int                     `json:"total"`
	Users  []protocol.UserSessions `json:"users"`
	Cursor string                  `json:"cursor"`
}

func TestPresence_Paging(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	// Join out of order; bob has two sessions, dave is elsewhere.
	joinAs(t, srv, "carol", "lobby")
	joinAs(t, srv, "bob", "lobby")
	joinAs(t, srv, "alice", "lobby")
	joinAs(t, srv, "bob", "lobby")
	joinAs(t, srv, "dave", "other")

	var pages []protocol.UserSessions
	cursor := ""
	for i := range 4 {
		if i == 3 {
			t.Fatalf("still paging after 3 pages of 1 user: %+v", pages)
		}
		var p presence
		call(t, srv.URL, "", http.MethodGet, "/api/rooms/lobby/presence?limit=1&cursor="+cursor, "").ok(t, &p)
		if p.Room != "lobby" || p.Total != 3 || len(p.Users) != 1 {
			t.Fatalf("page %d = %+v, want room lobby, total 3, one user", i, p)
		}
		pages = append(pages, p.Users...)
		if p.Cursor == "" {
			break
		}
		cursor = p.Cursor
	}
	want := []protocol.UserSessions{{User: "alice", Sessions: 1}, {User: "bob", Sessions: 2}, {User: "carol", Sessions: 1}}
	if fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Errorf("pages hold %v, want %v", pages, want)
	}

	var all presence
	call(t, srv.URL, "", http.MethodGet, "/api/rooms/lobby/presence", "").ok(t, &all)
	if fmt.Sprint(all.Users) != fmt.Sprint(want) || all.Cursor != "" || all.Total != 3 {
		t.Errorf("default page = %+v, want every user and no cursor", all)
	}
	call(t, srv.URL, "", http.MethodGet, "/api/rooms/lobby/presence?limit=5000", "").ok(t, &all)
	if len(all.Users) != 3 {
		t.Errorf("limit above the maximum gave %d users, want 3", len(all.Users))
	}
	call(t, srv.URL, "", http.MethodGet, "/api/rooms/lobby/presence?limit=2&cursor="+cursor, "").ok(t, &all)
	if fmt.Sprint(all.Users) != fmt.Sprint(want[2:]) || all.Cursor != "" {
		t.Errorf("page after the second cursor = %+v, want carol alone and no cursor", all)
	}

	// Inboxes are rooms too; "@" needs no escaping in a path.
	var inbox presence
	call(t, srv.URL, "", http.MethodGet, "/api/rooms/@bob/presence", "").ok(t, &inbox)
	if inbox.Room != "@bob" || inbox.Total != 1 || len(inbox.Users) != 1 || inbox.Users[0] != (protocol.UserSessions{User: "bob", Sessions: 2}) {
		t.Errorf("presence of @bob = %+v, want bob with 2 sessions", inbox)
	}

	r := call(t, srv.URL, "", http.MethodGet, "/api/rooms/empty/presence", "")
	var empty presence
	r.ok(t, &empty)
	if empty.Total != 0 || !strings.Contains(string(r.Body), `"users":[]`) || empty.Cursor != "" {
		t.Errorf("presence of an empty room = %s, want total 0 and users []", r.Body)
	}
}

func TestPresence_BadRequests(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	tests := []struct {
		name, path, code string
	}{
		{"LimitZero", "/api/rooms/lobby/presence?limit=0", "bad_request"},
		{"LimitNotANumber", "/api/rooms/lobby/presence?limit=ten", "bad_request"},
		{"CursorNotBase64", "/api/rooms/lobby/presence?cursor=!!", "bad_request"},
		{"BadRoom", "/api/rooms/b%20d/presence", "bad_room"},
		{"BadInbox", "/api/rooms/@/presence", "bad_room"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			call(t, srv.URL, "", http.MethodGet, tt.path, "").wantError(t, http.StatusBadRequest, tt.code)
		})
	}
}

type history struct {
	Room     string            `json:"room"`
	Epoch    string            `json:"epoch"`
	Offset   uint64            `json:"offset"`
	Messages []json.RawMessage `json:"messages"`
}

// offsets returns the offsets of h's messages.
func (h history) offsets(t testing.TB) []uint64 {
	t.Helper()
	out := make([]uint64, 0, len(h.Messages))
	for _, m := range h.Messages {
		var f protocol.ServerFrame
		if err := json.Unmarshal(m, &f); err != nil {
			t.Fatalf("history message %s: %v", m, err)
		}
		out = append(out, f.Offset)
	}
	return out
}

func TestHistory(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	watcher := joinAs(t, srv, "watcher", "hist")
	for i := 1; i <= 5; i++ {
		from := ""
		if i == 2 {
			from = `,"from":"alice"`
		}
		publish(t, srv, fmt.Sprintf(`{"room":"hist","data":{"i":%d,"html":"<b>&</b>"}%s}`, i, from))
	}
	// What WebSocket clients received, byte for byte.
	live := make([]string, 5)
	for i := range live {
		live[i] = string(watcher.ReadRaw())
	}

	var all history
	call(t, srv.URL, "", http.MethodGet, "/api/rooms/hist/history", "").ok(t, &all)
	if all.Room != "hist" || all.Epoch == "" || all.Offset != 5 || len(all.Messages) != 5 {
		t.Fatalf("history = %+v, want room hist at offset 5 with 5 messages", all)
	}
	for i, m := range all.Messages {
		if string(m) != live[i] {
			t.Errorf("history message %d = %s, want the frame sessions got: %s", i, m, live[i])
		}
	}
	epoch := all.Epoch

	tests := []struct {
		name, query string
		want        []uint64
	}{
		{"Latest", "", []uint64{1, 2, 3, 4, 5}},
		{"LatestLimited", "?limit=2", []uint64{4, 5}},
		{"Since", "?since=2", []uint64{3, 4, 5}},
		{"SinceZero", "?since=0", []uint64{1, 2, 3, 4, 5}},
		{"SinceLimited", "?since=2&limit=2", []uint64{3, 4}},
		{"SinceWithEpoch", "?since=2&epoch=" + epoch, []uint64{3, 4, 5}},
		{"EpochAlone", "?epoch=" + epoch + "&limit=1", []uint64{1}},
		{"OtherEpoch", "?since=4&epoch=elsewhere", []uint64{1, 2, 3, 4, 5}},
		{"SinceLatest", "?since=5", []uint64{}},
		{"SinceBeyond", "?since=99", []uint64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := call(t, srv.URL, "", http.MethodGet, "/api/rooms/hist/history"+tt.query, "")
			var h history
			r.ok(t, &h)
			if got := h.offsets(t); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("offsets %v, want %v", got, tt.want)
			}
			if h.Epoch != epoch || h.Offset != 5 {
				t.Errorf("position (%q, %d), want (%q, 5)", h.Epoch, h.Offset, epoch)
			}
			if len(tt.want) == 0 && !strings.Contains(string(r.Body), `"messages":[]`) {
				t.Errorf("body %s, want messages []", r.Body)
			}
		})
	}
}

func TestHistory_BadRequests(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	tests := []struct {
		name, path, code string
	}{
		{"SinceNotANumber", "/api/rooms/hist/history?since=x", "bad_request"},
		{"SinceNegative", "/api/rooms/hist/history?since=-1", "bad_request"},
		{"LimitZero", "/api/rooms/hist/history?limit=0", "bad_request"},
		{"LimitNegative", "/api/rooms/hist/history?limit=-3", "bad_request"},
		{"BadRoom", "/api/rooms/a%2Cb/history", "bad_room"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			call(t, srv.URL, "", http.MethodGet, tt.path, "").wantError(t, http.StatusBadRequest, tt.code)
		})
	}
}

package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/api"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/protocol"
)

func TestPublish_ReachesJoinedSession(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	alice := joinAs(t, srv, "alice", "general")

	pos := publish(t, srv, `{"room":"general","data":{"text":"hi"}}`)
	if pos.Room != "general" || pos.Epoch == "" || pos.Offset != 1 {
		t.Fatalf("publish answered %+v, want room general, an epoch, offset 1", pos)
	}
	expectMessage(t, alice, pos, "", `{"text":"hi"}`)

	// from is relayed; data is stored compacted, without raw newlines.
	pos2 := publish(t, srv, "{\"room\":\"general\",\"from\":\"system\",\"data\":{ \"a\" : [1, 2],\n\t\"b\": \"x y\" }}")
	if pos2.Epoch != pos.Epoch || pos2.Offset != 2 {
		t.Fatalf("second publish answered %+v, want offset 2 in epoch %q", pos2, pos.Epoch)
	}
	expectMessage(t, alice, pos2, "system", `{"a":[1,2],"b":"x y"}`)

	// JSON null is data too.
	pos3 := publish(t, srv, `{"room":"general","data":null}`)
	expectMessage(t, alice, pos3, "", `null`)
}

func TestPublish_ToInbox(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	bob := joinAs(t, srv, "bob")

	pos := publish(t, srv, `{"room":"@bob","data":"hello"}`)
	if pos.Room != "@bob" {
		t.Fatalf("publish answered room %q, want @bob", pos.Room)
	}
	expectMessage(t, bob, pos, "", `"hello"`)
}

func TestSend(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	bob := joinAs(t, srv, "bob")

	var pos position
	call(t, srv.URL, "", http.MethodPost, "/api/send", `{"to":"bob","from":"alice","data":{"n":1}}`).ok(t, &pos)
	if pos.Room != "@bob" || pos.Offset != 1 {
		t.Fatalf("send answered %+v, want room @bob offset 1", pos)
	}
	expectMessage(t, bob, pos, "alice", `{"n":1}`)
}

func TestPublish_IdempotentKey(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	alice := joinAs(t, srv, "alice", "orders")

	first := publish(t, srv, `{"room":"orders","data":1,"key":"order-42"}`)
	again := publish(t, srv, `{"room":"orders","data":1,"key":"order-42"}`)
	if again != first {
		t.Fatalf("repeated key answered %+v, want the first position %+v", again, first)
	}
	next := publish(t, srv, `{"room":"orders","data":2}`)
	if next.Offset != first.Offset+1 {
		t.Fatalf("next publish at offset %d, want %d", next.Offset, first.Offset+1)
	}
	// Delivered once: the message after it is the next publish.
	expectMessage(t, alice, first, "", `1`)
	expectMessage(t, alice, next, "", `2`)
}

func TestPublish_BadRequests(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	long := strings.Repeat("k", protocol.MaxKeyLen+1)
	tests := []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"BadJSON", "/api/publish", `{"room":`, 400, "bad_request"},
		{"EmptyBody", "/api/publish", ``, 400, "bad_request"},
		{"NotAnObject", "/api/publish", `[1,2]`, 400, "bad_request"},
		{"TrailingGarbage", "/api/publish", `{"room":"a","data":1} x`, 400, "bad_request"},
		{"RoomWrongType", "/api/publish", `{"room":5,"data":1}`, 400, "bad_request"},
		{"KeyWrongType", "/api/publish", `{"room":"a","data":1,"key":7}`, 400, "bad_request"},
		{"MissingRoom", "/api/publish", `{"data":1}`, 400, "bad_room"},
		{"EmptyRoom", "/api/publish", `{"room":"","data":1}`, 400, "bad_room"},
		// Field names match exactly: "ROOM" and "DATA" are unknown fields.
		{"RoomInCapitals", "/api/publish", `{"ROOM":"a","data":1}`, 400, "bad_room"},
		{"DataInCapitals", "/api/publish", `{"room":"a","DATA":1}`, 400, "bad_request"},
		{"RoomGivenTwice", "/api/publish", `{"room":"a","room":"b","data":1}`, 400, "bad_request"},
		{"MissingData", "/api/publish", `{"room":"a"}`, 400, "bad_request"},
		{"BadRoom", "/api/publish", `{"room":"no spaces","data":1}`, 400, "bad_room"},
		{"LongRoom", "/api/publish", `{"room":"` + strings.Repeat("r", 129) + `","data":1}`, 400, "bad_room"},
		{"BadInbox", "/api/publish", `{"room":"@","data":1}`, 400, "bad_room"},
		{"KeyTooLong", "/api/publish", `{"room":"a","data":1,"key":"` + long + `"}`, 400, "bad_request"},
		{"BadFrom", "/api/publish", `{"room":"a","data":1,"from":"has space"}`, 400, "bad_request"},
		{"DataNotUTF8", "/api/publish", "{\"room\":\"a\",\"data\":\"\xff\"}", 400, "bad_request"},
		{"SendMissingTo", "/api/send", `{"data":1}`, 400, "bad_request"},
		{"SendBadTo", "/api/send", `{"to":"a b","data":1}`, 400, "bad_request"},
		{"SendMissingData", "/api/send", `{"to":"bob"}`, 400, "bad_request"},
	}
	t.Run("Cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				call(t, srv.URL, "", http.MethodPost, tt.path, tt.body).wantError(t, tt.status, tt.code)
			})
		}
	})
	// None of them published anything.
	var h history
	call(t, srv.URL, "", http.MethodGet, "/api/rooms/a/history", "").ok(t, &h)
	if h.Offset != 0 {
		t.Errorf("room a is at offset %d after refused publishes, want 0", h.Offset)
	}
}

func TestPublish_TooLarge(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	body := `{"room":"big","data":"` + strings.Repeat("x", api.DefaultMaxBodyBytes) + `"}`
	call(t, srv.URL, "", http.MethodPost, "/api/publish", body).wantError(t, http.StatusRequestEntityTooLarge, "too_large")

	// Just under the limit is fine.
	body = `{"room":"big","data":"` + strings.Repeat("x", api.DefaultMaxBodyBytes-30) + `"}`
	publish(t, srv, body)
}

func TestPublish_BrokerUnavailable(t *testing.T) {
	t.Parallel()
	b := memory.New(memory.Config{})
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := start(t, switchboard.Config{Broker: b})

	for _, tt := range []struct{ method, path, body string }{
		{http.MethodPost, "/api/publish", `{"room":"general","data":1}`},
		{http.MethodPost, "/api/send", `{"to":"bob","data":1}`},
		{http.MethodGet, "/api/rooms/general/presence", ""},
		{http.MethodGet, "/api/rooms/general/history", ""},
		{http.MethodGet, "/api/rooms/general/history?since=3", ""},
		{http.MethodGet, "/api/users/bob", ""},
		{http.MethodGet, "/api/instances", ""},
	} {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			call(t, srv.URL, "", tt.method, tt.path, tt.body).wantError(t, http.StatusServiceUnavailable, "unavailable")
		})
	}

	var ans broadcastAnswer
	call(t, srv.URL, "", http.MethodPost, "/api/broadcast", `{"rooms":["a","b"],"data":1}`).ok(t, &ans)
	for _, r := range ans.Results {
		if r.Error == nil || r.Error.Code != "unavailable" || r.Offset != 0 {
			t.Errorf("broadcast result %+v, want error unavailable", r)
		}
	}
}

func TestPublish_InternalError(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{Broker: faultyBroker{memory.New(memory.Config{})}})
	r := call(t, srv.URL, "", http.MethodPost, "/api/publish", `{"room":"boom","data":1}`)
	r.wantError(t, http.StatusInternalServerError, "internal")
	if strings.Contains(string(r.Body), "fire") {
		t.Errorf("internal error leaks its cause: %s", r.Body)
	}
	call(t, srv.URL, "", http.MethodPost, "/api/publish", `{"room":"down","data":1}`).wantError(t, http.StatusServiceUnavailable, "unavailable")
}

type broadcastResult struct {
	Room   string `json:"room"`
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type broadcastAnswer struct {
	Results []broadcastResult `json:"results"`
}

func TestBroadcast_Partial(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{Broker: faultyBroker{memory.New(memory.Config{})}})
	alice := joinAs(t, srv, "alice", "news")
	bob := joinAs(t, srv, "bob", "sports")

	var ans broadcastAnswer
	call(t, srv.URL, "", http.MethodPost, "/api/broadcast",
		`{"rooms":["news","down-1","sports","boom"],"data":{"headline":"x"},"from":"editor"}`).ok(t, &ans)
	if len(ans.Results) != 4 {
		t.Fatalf("got %d results, want 4: %+v", len(ans.Results), ans)
	}
	for i, want := range []struct {
		room, code string
	}{{"news", ""}, {"down-1", "unavailable"}, {"sports", ""}, {"boom", "internal"}} {
		r := ans.Results[i]
		if r.Room != want.room {
			t.Errorf("results[%d].room = %q, want %q", i, r.Room, want.room)
		}
		switch {
		case want.code == "" && (r.Error != nil || r.Offset != 1 || r.Epoch == ""):
			t.Errorf("results[%d] = %+v, want offset 1 and no error", i, r)
		case want.code != "" && (r.Error == nil || r.Error.Code != want.code || r.Offset != 0 || r.Epoch != ""):
			t.Errorf("results[%d] = %+v, want only error %q", i, r, want.code)
		}
	}
	r := ans.Results
	expectMessage(t, alice, position{"news", r[0].Epoch, r[0].Offset}, "editor", `{"headline":"x"}`)
	expectMessage(t, bob, position{"sports", r[2].Epoch, r[2].Offset}, "editor", `{"headline":"x"}`)
}

func TestBroadcast_Key(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	var first, again broadcastAnswer
	body := `{"rooms":["k1","k2"],"data":1,"key":"job-7"}`
	call(t, srv.URL, "", http.MethodPost, "/api/broadcast", body).ok(t, &first)
	call(t, srv.URL, "", http.MethodPost, "/api/broadcast", body).ok(t, &again)
	for i := range first.Results {
		if f, a := first.Results[i], again.Results[i]; f.Epoch != a.Epoch || f.Offset != a.Offset || f.Offset != 1 {
			t.Errorf("retried broadcast result %+v, want the first %+v at offset 1", a, f)
		}
	}
}

func TestBroadcast_BadRequests(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	many := make([]string, api.MaxBroadcastRooms+1)
	for i := range many {
		many[i] = fmt.Sprintf(`"r%d"`, i)
	}
	tests := []struct {
		name, body string
		code       string
	}{
		{"NoRooms", `{"data":1}`, "bad_request"},
		{"EmptyRooms", `{"rooms":[],"data":1}`, "bad_request"},
		{"RoomsWrongType", `{"rooms":"good","data":1}`, "bad_request"},
		{"TooManyRooms", `{"rooms":[` + strings.Join(many, ",") + `],"data":1}`, "bad_request"},
		{"OneBadRoom", `{"rooms":["good","b@d"],"data":1}`, "bad_room"},
		{"RepeatedRoom", `{"rooms":["good","good"],"data":1}`, "bad_request"},
		{"MissingData", `{"rooms":["good"]}`, "bad_request"},
	}
	t.Run("Cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				call(t, srv.URL, "", http.MethodPost, "/api/broadcast", tt.body).wantError(t, http.StatusBadRequest, tt.code)
			})
		}
	})
	// The valid rooms named with a bad one were not published to.
	var h history
	call(t, srv.URL, "", http.MethodGet, "/api/rooms/good/history", "").ok(t, &h)
	if h.Offset != 0 {
		t.Errorf("room good is at offset %d after refused broadcasts, want 0", h.Offset)
	}

	// Exactly the maximum is fine.
	var ans broadcastAnswer
	call(t, srv.URL, "", http.MethodPost, "/api/broadcast", `{"rooms":[`+strings.Join(many[:api.MaxBroadcastRooms], ",")+`],"data":1}`).ok(t, &ans)
	if len(ans.Results) != api.MaxBroadcastRooms {
		t.Fatalf("got %d results, want %d", len(ans.Results), api.MaxBroadcastRooms)
	}
	for i, r := range ans.Results {
		if r.Room != fmt.Sprintf("r%d", i) || r.Error != nil || r.Offset != 1 {
			t.Fatalf("results[%d] = %+v, want room r%d at offset 1", i, r, i)
		}
	}
}

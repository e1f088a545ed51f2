package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/protocol"
)

// fuzzRoutes are the routes whose body decoders FuzzRequestBody exercises.
var fuzzRoutes = []string{"/api/publish", "/api/send", "/api/broadcast"}

// FuzzRequestBody posts arbitrary bodies to the publish, send and broadcast
// routes of a real instance over HTTP. Every answer must be 200 or a JSON
// error (400 bad_request or bad_room for a body that does not fit; 413 only
// for one over the size limit), never a 5xx. A body that is accepted must
// round-trip: the message read back from the room's history carries the
// same data (compacted) and from, unless it carried an idempotency key
// (a repeated key answers an earlier message's position).
func FuzzRequestBody(f *testing.F) {
	for _, s := range []struct {
		route uint8
		body  string
	}{
		{0, `{"room":"fuzz","data":{"a":[1,2,"x"]}}`},
		{0, `{"room":"fuzz","data":null,"from":"bob","key":"k1"}`},
		{0, "{\"room\":\"fuzz\",\"data\":{\n\"a\":\t1}}"},
		{0, `{"room":"fuzz","data":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`},
		{0, `{"room":"@bob","data":1}`},
		{0, `{"room":"","data":1}`},
		{0, `{"room":"fuzz","ROOM":"x","data":1}`},
		{0, `{"room":"fuzz","room":"fuzz","data":1}`},
		{0, `{"room":"fuzz"}`},
		{0, `{"room":"fuzz","data":"\ud800"}`},
		{0, "{\"room\":\"fuzz\",\"data\":\"\xff\"}"},
		{0, `[]`},
		{0, `not json`},
		{0, ``},
		{1, `{"to":"bob","data":{"t":"hi"}}`},
		{1, `{"to":"","data":1}`},
		{1, `{"to":"a b","data":1}`},
		{1, `{"to":"bob","data":1,"from":"{x}"}`},
		{2, `{"rooms":["fuzz","fuzz2"],"data":[true]}`},
		{2, `{"rooms":[],"data":1}`},
		{2, `{"rooms":["fuzz","fuzz"],"data":1}`},
		{2, `{"rooms":"fuzz","data":1}`},
		{2, `{"rooms":["bad room"],"data":1}`},
		{0, `{"room":"fuzz","data":1,"key":"` + strings.Repeat("k", 65) + `"}`},
	} {
		f.Add(s.route, []byte(s.body))
	}
	const key = "fuzz-api-key"
	srv := start(f, switchboard.Config{APIKey: key})

	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := fuzzRoutes[int(route)%len(fuzzRoutes)]
		res := call(t, srv.URL, key, http.MethodPost, path, string(body))
		if res.Status != http.StatusOK {
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(res.Body, &e); err != nil || e.Error.Message == "" {
				t.Fatalf("POST %s %q: status %d with body %q, not a JSON error", path, body, res.Status, res.Body)
			}
			switch {
			case res.Status == http.StatusBadRequest && (e.Error.Code == protocol.CodeBadRequest || e.Error.Code == protocol.CodeBadRoom):
			case res.Status == http.StatusRequestEntityTooLarge && e.Error.Code == protocol.CodeTooLarge:
			default:
				t.Fatalf("POST %s %q: %d %s (%s)", path, body, res.Status, e.Error.Code, e.Error.Message)
			}
			return
		}
		// Accepted: read the request the way the API promises to (exact
		// field names, no duplicates) and find the message again.
		var req struct {
			Room  string         `json:"room"`
			To    string         `json:"to"`
			Rooms []string       `json:"rooms"`
			Data  jsontext.Value `json:"data"`
			From  string         `json:"from"`
			Key   string         `json:"key"`
		}
		if err := jsonv2.Unmarshal(body, &req); err != nil {
			t.Fatalf("POST %s accepted %q, which does not decode: %v", path, body, err)
		}
		if protocol.CheckDepth(body, protocol.MaxDataDepth+1) != nil {
			t.Fatalf("POST %s accepted %q, nested deeper than the limit", path, body)
		}
		var pos position
		switch path {
		case "/api/broadcast":
			var ans struct {
				Results []struct {
					Room   string `json:"room"`
					Epoch  string `json:"epoch"`
					Offset uint64 `json:"offset"`
				} `json:"results"`
			}
			res.ok(t, &ans)
			if len(ans.Results) != len(req.Rooms) {
				t.Fatalf("broadcast to %d rooms answered %d results", len(req.Rooms), len(ans.Results))
			}
			r := ans.Results[0]
			pos = position{Room: r.Room, Epoch: r.Epoch, Offset: r.Offset}
			if pos.Room != req.Rooms[0] {
				t.Fatalf("result 0 names %q, want %q", pos.Room, req.Rooms[0])
			}
		default:
			res.ok(t, &pos)
			want := req.Room
			if path == "/api/send" {
				want = protocol.Inbox(req.To)
			}
			if pos.Room != want {
				t.Fatalf("answer names room %q, want %q", pos.Room, want)
			}
		}
		if pos.Offset == 0 || pos.Epoch == "" {
			t.Fatalf("accepted publish answered position %+v", pos)
		}
		if req.Key != "" {
			// A key used before in the room answers the first publish's
			// position (PROTOCOL.md, guarantee 6): its message is another's.
			return
		}
		q := url.Values{"since": {fmt.Sprint(pos.Offset - 1)}, "epoch": {pos.Epoch}, "limit": {"1"}}
		var hist struct {
			Messages []struct {
				Offset uint64          `json:"offset"`
				From   string          `json:"from"`
				Data   json.RawMessage `json:"data"`
			} `json:"messages"`
		}
		call(t, srv.URL, key, http.MethodGet, "/api/rooms/"+url.PathEscape(pos.Room)+"/history?"+q.Encode(), "").ok(t, &hist)
		if len(hist.Messages) != 1 || hist.Messages[0].Offset != pos.Offset {
			t.Fatalf("history of %s after %d: %+v", pos.Room, pos.Offset-1, hist.Messages)
		}
		m := hist.Messages[0]
		if m.From != req.From {
			t.Errorf("from %q came back as %q", req.From, m.From)
		}
		if bytes.ContainsAny(m.Data, "\n\r\t") {
			t.Errorf("stored data %q is not compact", m.Data)
		}
		if !sameValue(t, []byte(req.Data), m.Data) {
			t.Errorf("data %s came back as %s", req.Data, m.Data)
		}
	})
}

// sameValue reports whether two JSON texts hold the same value, numbers
// compared by their text.
func sameValue(t *testing.T, a, b []byte) bool {
	decode := func(x []byte) any {
		d := json.NewDecoder(bytes.NewReader(x))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("decode %q: %v", x, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

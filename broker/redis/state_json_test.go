package redis

import (
	"encoding/json"
	"maps"
	"testing"

	"github.com/switchboard-rt/switchboard/broker"
)

func TestAppendSessionJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		user  string
		rooms map[string]broker.Position
	}{
		{name: "NoRooms", user: "alice"},
		{name: "OneRoom", user: "alice", rooms: map[string]broker.Position{"general": {Epoch: "abcdefghijkl", Offset: 42}}},
		{name: "InboxAndRooms", user: "bob", rooms: map[string]broker.Position{
			"@bob": {Epoch: "e1", Offset: 0}, "a.b:c-d_e": {Epoch: "e2", Offset: 1 << 53}, "x": {Epoch: "", Offset: 7},
		}},
		{name: "QuoteAndBackslash", user: `a"b\c`, rooms: map[string]broker.Position{`@a"b\c`: {Epoch: "e", Offset: 1}}},
		{name: "NonASCII", user: "zoë-日本", rooms: map[string]broker.Position{"@zoë-日本": {Epoch: "e", Offset: 1}}},
		{name: "ControlAndHTML", user: "a\x01<b>&\u2028", rooms: map[string]broker.Position{"r": {Epoch: "e", Offset: 1}}},
		{name: "InvalidUTF8", user: "a\xffb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := appendSessionJSON([]byte("prefix"), tt.user, tt.rooms)
			if string(got[:6]) != "prefix" {
				t.Fatalf("the prefix was overwritten: %q", got)
			}
			got = got[6:]
			var back sessionJSON
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("appendSessionJSON = %s: not JSON: %v", got, err)
			}
			var want sessionJSON
			wantJSON, _ := json.Marshal(sessionJSON{User: tt.user, Rooms: tt.rooms})
			if err := json.Unmarshal(wantJSON, &want); err != nil {
				t.Fatal(err)
			}
			if back.User != want.User || !maps.Equal(back.Rooms, want.Rooms) {
				t.Errorf("appendSessionJSON = %s, decodes to %+v; json.Marshal's %s decodes to %+v", got, back, wantJSON, want)
			}
			if len(tt.rooms) <= 1 && string(got) != string(wantJSON) {
				t.Errorf("appendSessionJSON = %s, want json.Marshal's %s", got, wantJSON)
			}
		})
	}
}

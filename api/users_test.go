package api_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

type userStatus struct {
	User      string   `json:"user"`
	Online    bool     `json:"online"`
	Sessions  int      `json:"sessions"`
	Instances []string `json:"instances"`
}

func TestUserStatus(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	joinAs(t, srv, "alice")
	joinAs(t, srv, "alice", "general")
	joinAs(t, srv, "team/carol") // '/' is legal in user ids; the path escapes it

	tests := []struct {
		name, path string
		want       userStatus
	}{
		{"Online", "/api/users/alice", userStatus{"alice", true, 2, []string{srv.Hub().InstanceID()}}},
		{"Unknown", "/api/users/nobody", userStatus{"nobody", false, 0, []string{}}},
		{"EscapedSlash", "/api/users/team%2Fcarol", userStatus{"team/carol", true, 1, []string{srv.Hub().InstanceID()}}},
		{"Email", "/api/users/bob@example.com", userStatus{"bob@example.com", false, 0, []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got userStatus
			call(t, srv.URL, "", http.MethodGet, tt.path, "").ok(t, &got)
			if got.User != tt.want.User || got.Online != tt.want.Online || got.Sessions != tt.want.Sessions ||
				!slices.Equal(got.Instances, tt.want.Instances) || got.Instances == nil {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}

	t.Run("BadUser", func(t *testing.T) {
		t.Parallel()
		call(t, srv.URL, "", http.MethodGet, "/api/users/a%20b", "").wantError(t, http.StatusBadRequest, "bad_request")
		call(t, srv.URL, "", http.MethodGet, "/api/users/%7Bx%7D", "").wantError(t, http.StatusBadRequest, "bad_request")
	})
}

func TestUserStatus_Offline(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	c := joinAs(t, srv, "erin")
	var st userStatus
	call(t, srv.URL, "", http.MethodGet, "/api/users/erin", "").ok(t, &st)
	if !st.Online {
		t.Fatalf("erin with a session is %+v, want online", st)
	}
	_ = c.WS().Close()
	wstest.Eventually(t, wstest.Timeout, "erin offline", func() bool {
		call(t, srv.URL, "", http.MethodGet, "/api/users/erin", "").ok(t, &st)
		return !st.Online && st.Sessions == 0 && len(st.Instances) == 0
	})
}

func TestDisconnect(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{})
	bob1 := joinAs(t, srv, "bob")
	bob2 := joinAs(t, srv, "bob", "general")
	alice := joinAs(t, srv, "alice", "general")

	var pos position
	call(t, srv.URL, "", http.MethodPost, "/api/send", `{"to":"bob","data":"bye"}`).ok(t, &pos)

	var ans struct {
		Sessions int `json:"sessions"`
	}
	call(t, srv.URL, "", http.MethodPost, "/api/users/bob/disconnect", "").ok(t, &ans)
	if ans.Sessions != 2 {
		t.Fatalf("disconnect answered %d sessions, want 2", ans.Sessions)
	}
	for _, c := range []*wstest.Conn{bob1, bob2} {
		// The message published before the disconnect is delivered first.
		before := c.ExpectClose(protocol.CloseDisconnected)
		if len(before) != 1 || before[0].Type != protocol.TypeMessage || before[0].Offset != pos.Offset {
			t.Errorf("frames before the close: %+v, want the message at offset %d", before, pos.Offset)
		}
	}

	// alice is untouched.
	alice.Send(wstest.Frame(protocol.TypePing, "id", 9))
	alice.Expect(protocol.TypePong)

	wstest.Eventually(t, wstest.Timeout, "bob offline", func() bool {
		var st userStatus
		call(t, srv.URL, "", http.MethodGet, "/api/users/bob", "").ok(t, &st)
		return !st.Online
	})
	call(t, srv.URL, "", http.MethodPost, "/api/users/bob/disconnect", "").ok(t, &ans)
	if ans.Sessions != 0 {
		t.Errorf("second disconnect answered %d sessions, want 0", ans.Sessions)
	}
	call(t, srv.URL, "", http.MethodPost, "/api/users/a%20b/disconnect", "").wantError(t, http.StatusBadRequest, "bad_request")
}

type instances struct {
	Instances []struct {
		ID            string `json:"id"`
		Address       string `json:"address"`
		Sessions      int    `json:"sessions"`
		Started       string `json:"started"`
		LastHeartbeat string `json:"lastHeartbeat"`
	} `json:"instances"`
}

func TestInstances(t *testing.T) {
	t.Parallel()
	before := time.Now().Add(-time.Second)
	srv := start(t, switchboard.Config{})
	var got instances
	wstest.Eventually(t, wstest.Timeout, "the instance registered", func() bool {
		call(t, srv.URL, "", http.MethodGet, "/api/instances", "").ok(t, &got)
		return len(got.Instances) > 0
	})
	if len(got.Instances) != 1 {
		t.Fatalf("got %d instances, want 1: %+v", len(got.Instances), got)
	}
	in := got.Instances[0]
	if in.ID != srv.Hub().InstanceID() || in.Sessions != 0 {
		t.Errorf("instance %+v, want id %q with 0 sessions", in, srv.Hub().InstanceID())
	}
	for name, v := range map[string]string{"started": in.Started, "lastHeartbeat": in.LastHeartbeat} {
		ts, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t.Errorf("%s %q is not RFC 3339: %v", name, v, err)
			continue
		}
		if ts.Location() != time.UTC || v[len(v)-1] != 'Z' {
			t.Errorf("%s %q is not in UTC", name, v)
		}
		if ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("%s %v is not around now", name, ts)
		}
	}
}

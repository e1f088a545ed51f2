package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-rt/switchboard/api"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// fakeHub stands in for the hub where a test needs behaviour a real one
// will not show on demand (a publish that never finishes).
type fakeHub struct {
	publish func(ctx context.Context, room string, p broker.Publication) (broker.Position, error)
	history func(ctx context.Context) (broker.History, error)
}

func (f *fakeHub) Draining() bool { return false }
func (f *fakeHub) Publish(ctx context.Context, room string, p broker.Publication) (broker.Position, error) {
	return f.publish(ctx, room, p)
}
func (f *fakeHub) RoomPresence(context.Context, string) ([]protocol.UserSessions, error) {
	return nil, nil
}
func (f *fakeHub) History(ctx context.Context, _ string, _ *protocol.Position, _ int) (broker.History, error) {
	if f.history != nil {
		return f.history(ctx)
	}
	return broker.History{}, nil
}
func (f *fakeHub) UserStatus(context.Context, string) (api.UserStatus, error) {
	return api.UserStatus{}, nil
}
func (f *fakeHub) DisconnectEverywhere(context.Context, string) (int, error) { return 0, nil }
func (f *fakeHub) Instances(context.Context) ([]broker.InstanceInfo, error) {
	return nil, nil
}

// serve runs an api.Server for cfg behind httptest.
func serve(t *testing.T, cfg api.Config) string {
	t.Helper()
	s, err := api.New(cfg)
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return hs.URL
}

func TestNew_Config(t *testing.T) {
	t.Parallel()
	hub := &fakeHub{}
	reg := prometheus.NewRegistry()
	if _, err := api.New(api.Config{Hub: hub, Registerer: reg}); err != nil {
		t.Fatalf("api.New with a fresh registry: %v", err)
	}
	tests := []struct {
		name string
		cfg  api.Config
	}{
		{"NoHub", api.Config{}},
		{"NegativeMaxBodyBytes", api.Config{Hub: hub, MaxBodyBytes: -1}},
		{"NegativeRequestTimeout", api.Config{Hub: hub, RequestTimeout: -time.Second}},
		{"RegisteredTwice", api.Config{Hub: hub, Registerer: reg}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := api.New(tt.cfg); err == nil {
				t.Errorf("api.New succeeded, want an error")
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	hub := &fakeHub{history: func(ctx context.Context) (broker.History, error) {
		<-ctx.Done() // a broker that never answers
		return broker.History{}, ctx.Err()
	}}
	srv := serve(t, api.Config{Hub: hub, Dev: true, RequestTimeout: 50 * time.Millisecond})
	start := time.Now()
	call(t, srv, "", http.MethodGet, "/api/rooms/a/history", "").wantError(t, http.StatusServiceUnavailable, "unavailable")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the request took %v, want about the 50ms timeout", d)
	}
}

// TestPublishOutlivesRequestTimeout: a publish the broker confirms late is
// answered with its position, not "unavailable", because the broker may
// have stored it (the request timeout does not cut a publish short).
func TestPublishOutlivesRequestTimeout(t *testing.T) {
	t.Parallel()
	hub := &fakeHub{publish: func(ctx context.Context, _ string, _ broker.Publication) (broker.Position, error) {
		if _, ok := ctx.Deadline(); ok {
			return broker.Position{}, errors.New("the publish got a deadline")
		}
		time.Sleep(300 * time.Millisecond) // past the request timeout
		return broker.Position{Epoch: "e", Offset: 7}, nil
	}}
	srv := serve(t, api.Config{Hub: hub, Dev: true, RequestTimeout: 50 * time.Millisecond})
	res := call(t, srv, "", http.MethodPost, "/api/publish", `{"room":"a","data":1}`)
	if res.Status != http.StatusOK || !strings.Contains(string(res.Body), `"offset":7`) {
		t.Fatalf("got %d %s, want 200 with offset 7", res.Status, res.Body)
	}
}

func TestMaxBodyBytes(t *testing.T) {
	t.Parallel()
	var got broker.Publication
	hub := &fakeHub{publish: func(_ context.Context, _ string, p broker.Publication) (broker.Position, error) {
		got = p
		return broker.Position{Epoch: "e", Offset: 1}, nil
	}}
	srv := serve(t, api.Config{Hub: hub, Dev: true, MaxBodyBytes: 100})
	body := `{"room":"a","data":"` + strings.Repeat("x", 100) + `"}`
	call(t, srv, "", http.MethodPost, "/api/publish", body).wantError(t, http.StatusRequestEntityTooLarge, "too_large")

	var pos position
	call(t, srv, "", http.MethodPost, "/api/publish", `{"room":"a","data":[ 1 ],"from":"cron","key":"k","extra":true}`).ok(t, &pos)
	if pos != (position{Room: "a", Epoch: "e", Offset: 1}) {
		t.Errorf("publish answered %+v", pos)
	}
	if string(got.Data) != "[1]" || got.From != "cron" || got.Key != "k" || got.Origin != "" {
		t.Errorf("the hub got %+v, want data [1] from cron with key k and no origin", got)
	}
}

// TestPublishUnconfirmed: a publish the broker sent but could not confirm
// is answered 503 unavailable with a message that says it may have been
// stored, unlike one the broker refused before sending.
func TestPublishUnconfirmed(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want string
	}{
		{errors.Join(broker.ErrUnavailable, broker.ErrUnconfirmed), "may have been stored"},
		{broker.ErrUnavailable, "nothing was published"},
	} {
		hub := &fakeHub{publish: func(context.Context, string, broker.Publication) (broker.Position, error) {
			return broker.Position{}, tt.err
		}}
		srv := serve(t, api.Config{Hub: hub, Dev: true})
		res := call(t, srv, "", http.MethodPost, "/api/publish", `{"room":"a","data":1,"key":"k"}`)
		res.wantError(t, http.StatusServiceUnavailable, "unavailable")
		if !strings.Contains(string(res.Body), tt.want) {
			t.Errorf("%v: answer %s, want it to say %q", tt.err, res.Body, tt.want)
		}
	}
}

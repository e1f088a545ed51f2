package api_test

import (
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// scrape reads srv's /metrics.
func scrape(t testing.TB, srv *wstest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// value returns the value of the counter or gauge name with exactly labels
// (alternating names and values), and 0 if there is none.
func value(t testing.TB, families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf := families[name]
	if mf == nil {
		return 0
	}
next:
	for _, m := range mf.GetMetric() {
		if len(m.GetLabel())*2 != len(labels) {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
		t.Fatalf("%s is neither a counter nor a gauge", name)
	}
	return 0
}

func TestMetrics_CountWhatHappened(t *testing.T) {
	t.Parallel()
	srv := start(t, switchboard.Config{APIKey: testKey})
	alice := joinAs(t, srv, "alice", "metrics")
	bob := joinAs(t, srv, "bob", "metrics")

	alice.Send(`{"type":"bogus","id":1}`)
	alice.ExpectError(protocol.CodeUnknownType)

	call(t, srv.URL, "", http.MethodPost, "/api/publish", `{"room":"metrics","data":0}`).wantError(t, http.StatusUnauthorized, "unauthorized")
	var pos position
	for range 3 {
		call(t, srv.URL, testKey, http.MethodPost, "/api/publish", `{"room":"metrics","data":1}`).ok(t, &pos)
	}
	for _, c := range []*wstest.Conn{alice, bob} {
		for range 3 {
			c.Expect(protocol.TypeMessage)
		}
	}

	m := scrape(t, srv)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"switchboard_messages_published_total", []string{"result", "ok"}, 3},
		{"switchboard_messages_published_total", []string{"result", "error"}, 0},
		{"switchboard_messages_delivered_total", nil, 6},
		{"switchboard_errors_total", []string{"code", "unknown_type"}, 1},
		{"switchboard_sessions", nil, 2},
		{"switchboard_sessions_opened_total", nil, 2},
		{"switchboard_api_requests_total", []string{"route", "/api/publish", "code", "200"}, 3},
		{"switchboard_api_requests_total", []string{"route", "/api/publish", "code", "401"}, 1},
	}
	for _, tt := range tests {
		if got := value(t, m, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if n := len(m["switchboard_api_requests_total"].GetMetric()); n != 2 {
		t.Errorf("switchboard_api_requests_total has %d series, want 2 (publish 200 and 401)", n)
	}

	// Unknown paths share one label value, so that scanners cannot grow
	// the label set.
	call(t, srv.URL, testKey, http.MethodGet, "/api/x1", "").wantError(t, http.StatusNotFound, "not_found")
	call(t, srv.URL, testKey, http.MethodGet, "/api/x2", "").wantError(t, http.StatusNotFound, "not_found")
	call(t, srv.URL, testKey, http.MethodGet, "/api/rooms/a/presence", "")
	call(t, srv.URL, testKey, http.MethodGet, "/api/rooms/b/presence", "")
	m = scrape(t, srv)
	if got := value(t, m, "switchboard_api_requests_total", "route", "other", "code", "404"); got != 2 {
		t.Errorf("requests to unknown routes counted %v times under route=other, want 2", got)
	}
	if got := value(t, m, "switchboard_api_requests_total", "route", "/api/rooms/{room}/presence", "code", "200"); got != 2 {
		t.Errorf("presence requests counted %v times under their pattern, want 2", got)
	}
}

// Package deploy holds the files that run Switchboard in production (nginx,
// container image, compose, Grafana dashboard) and the tests that keep them
// true to the server.
package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// metricName matches the metric names of a PromQL expression: ours and the
// Go and process collectors'.
var metricName = regexp.MustCompile(`\b(?:switchboard|go|process)_[a-z0-9_]+\b`)

// dashboardMetrics returns every metric name the dashboard's queries use.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Definition string
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	var names []string
	for _, e := range exprs {
		names = append(names, metricName.FindAllString(e, -1)...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// exposed returns the names of the samples on a /metrics page.
func exposed(t *testing.T, url string) map[string]bool {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestDashboard_MetricsExist runs an instance, gives every labelled metric
// a reason to appear (a session, a message, an error frame, a refused token,
// a server-side close, an API call) and checks that every metric the
// Grafana dashboard queries is on its /metrics page.
func TestDashboard_MetricsExist(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	srv := wstest.Start(t, switchboard.Config{JWTSecret: secret, APIKey: "key"})
	token := func(user string) string {
		tok, err := auth.Sign(secret, auth.Claims{User: user, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice := wstest.Dial(t, srv.WS, wstest.Hello{Token: token("alice")})
	bob := wstest.Dial(t, srv.WS, wstest.Hello{Token: token("bob")})
	alice.Join("general")
	bob.Join("general")
	alice.Publish("general", "hi")
	bob.ExpectMessage("general", 1)
	alice.Send(wstest.Frame("nonsense", "id", 1))
	alice.ExpectError(protocol.CodeUnknownType)

	refused := wstest.DialRaw(t, srv.WS, nil)
	refused.Send(wstest.Frame(protocol.TypeHello, "token", "not-a-token"))
	refused.ExpectClose(protocol.CloseUnauthorized)

	req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/publish", bytes.NewBufferString(`{"room":"general","data":"from the API"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer key")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST /api/publish = %d", res.StatusCode)
	}
	bob.ExpectMessage("general", 2)
	if n := srv.Hub().DisconnectUser("bob"); n != 1 {
		t.Fatalf("DisconnectUser(bob) = %d sessions, want 1", n)
	}
	bob.ExpectClose(protocol.CloseDisconnected)

	names := dashboardMetrics(t)
	if len(names) < 15 {
		t.Fatalf("the dashboard queries %d metrics (%v): the pattern found too few", len(names), names)
	}
	var have map[string]bool
	var missing []string
	// Counters of closes are counted as the session ends, just after the
	// client saw the close frame.
	deadline := time.Now().Add(5 * time.Second)
	for {
		have = exposed(t, srv.URL)
		missing = missing[:0]
		for _, n := range names {
			if !have[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics that /metrics does not show: %v", missing)
	}
	t.Logf("%d metrics of the dashboard checked", len(names))
}

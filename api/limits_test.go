package api_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/api"
	"github.com/switchboard-rt/switchboard/broker"
)

// A request that declares a body over MaxBodyBytes is answered 413
// too_large from its head alone: none of the body is sent, and the answer
// comes long before the request timeout that waiting for it would take.
// Authentication still comes first.
func TestMaxBodyBytes_ContentLengthBeforeReading(t *testing.T) {
	t.Parallel()
	var published atomic.Int32
	hub := &fakeHub{publish: func(context.Context, string, broker.Publication) (broker.Position, error) {
		published.Add(1)
		return broker.Position{Epoch: "e", Offset: 1}, nil
	}}
	const timeout = 10 * time.Second
	base := serve(t, api.Config{Hub: hub, APIKey: "k", MaxBodyBytes: 100, RequestTimeout: timeout})
	for _, tt := range []struct {
		auth string
		want int
	}{
		{"Authorization: Bearer k\r\n", http.StatusRequestEntityTooLarge},
		{"", http.StatusUnauthorized},
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := conn.Write([]byte("POST /api/publish HTTP/1.1\r\nHost: x\r\n" + tt.auth + "Content-Length: 100000000000\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(2 * timeout))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		r := readResponse(t, res)
		if tt.want == http.StatusRequestEntityTooLarge {
			r.wantError(t, tt.want, "too_large")
		} else {
			r.wantError(t, tt.want, "unauthorized")
		}
		if elapsed := time.Since(start); elapsed > timeout/2 {
			t.Errorf("answered %d after %v; want at once, not after waiting for the body", tt.want, elapsed)
		}
	}
	if n := published.Load(); n != 0 {
		t.Errorf("the hub got %d publishes, want none", n)
	}
}

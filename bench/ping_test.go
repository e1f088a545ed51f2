package bench

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// A connection whose answer to a ping cannot be written in time ends its
// read with errPongLate, which the run's notes name, not with gorilla's bare
// "i/o timeout". Here the pong is held up behind a write that does not finish
// (a large frame to a server that never reads); in a run it is more often the
// process itself, too busy to get to the write before its deadline.
func TestAnswerPing_LateAnswerIsNamed(t *testing.T) {
	defer func(d time.Duration) { pingAnswerTimeout = d }(pingAnswerTimeout)
	pingAnswerTimeout = 200 * time.Millisecond

	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer sc.Close()
		raw := sc.UnderlyingConn()
		_ = raw.(*net.TCPConn).SetReadBuffer(4096)
		// Once the client's large write has begun, read no more: its small
		// buffers are full long before 100 ms have passed. Then ping.
		if _, err := io.ReadFull(raw, make([]byte, 1)); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
		_ = sc.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second))
		<-done
	}))
	defer srv.Close()
	defer close(done) // the handler returns before the server closes

	d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
		nc, err := net.Dial(network, addr)
		if err == nil {
			_ = nc.(*net.TCPConn).SetWriteBuffer(4096)
		}
		return nc, err
	}}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := &conn{ws: ws}
	ws.SetPingHandler(c.answerPing)

	go func() { _ = ws.WriteMessage(websocket.BinaryMessage, make([]byte, 8<<20)) }()

	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = ws.ReadMessage()
	if !errors.Is(err, errPongLate) {
		t.Fatalf("read ended with %v (%T), want errPongLate", err, err)
	}
	if got := dropReason(err); !strings.HasPrefix(got, "could not answer a ping within 200ms") {
		t.Fatalf("dropReason = %q", got)
	}
}

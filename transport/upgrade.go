package transport

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// handshakeGUID is appended to the client's key (RFC 6455, section 1.3).
const handshakeGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// ErrHandshake marks a request that is not a valid WebSocket opening
// handshake; Upgrade has answered it with an HTTP error.
var ErrHandshake = errors.New("transport: not a WebSocket handshake")

// Upgrade answers a WebSocket opening handshake (RFC 6455, section 4.2) and
// returns the hijacked connection, with the bytes the client sent after
// its request. A request that is not a valid handshake gets an HTTP error
// (400, 405 or 426) and an error wrapping ErrHandshake. No subprotocol and
// no extension is agreed: in particular no compression.
func Upgrade(w http.ResponseWriter, r *http.Request, timeout time.Duration) (net.Conn, []byte, error) {
	fail := func(status int, msg string) (net.Conn, []byte, error) {
		if status == http.StatusUpgradeRequired || status == http.StatusBadRequest {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, msg, status)
		return nil, nil, fmt.Errorf("%w: %s", ErrHandshake, msg)
	}
	switch {
	case r.Method != http.MethodGet:
		w.Header().Set("Allow", http.MethodGet)
		return fail(http.StatusMethodNotAllowed, "a WebSocket handshake is a GET request")
	case !r.ProtoAtLeast(1, 1):
		return fail(http.StatusBadRequest, "a WebSocket handshake needs HTTP/1.1")
	case !headerHas(r.Header, "Connection", "upgrade") || !headerHas(r.Header, "Upgrade", "websocket"):
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		return fail(http.StatusUpgradeRequired, "this endpoint speaks WebSocket: upgrade the connection")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return fail(http.StatusUpgradeRequired, "unsupported WebSocket version: want 13")
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return fail(http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64")
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return fail(http.StatusInternalServerError, "the connection cannot be taken over")
	}
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ = brw.Reader.Peek(n)
		early = append([]byte(nil), early...)
	}
	h := sha1.Sum([]byte(key + handshakeGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(h[:]) + "\r\n\r\n"
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := nc.Write([]byte(resp)); err != nil {
		_ = nc.Close()
		return nil, nil, fmt.Errorf("transport: write handshake answer: %w", err)
	}
	_ = nc.SetWriteDeadline(time.Time{})
	return nc, early, nil
}

// headerHas reports whether a comma-separated header of h lists token,
// case-insensitively.
func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}

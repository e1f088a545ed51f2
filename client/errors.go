package client

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// ErrClosed is returned by the methods of a Client that has stopped: after
// Close, or after the server ended the session for good (see CloseError).
var ErrClosed = errors.New("client: closed")

// errDeadConnection ends a connection on which nothing arrived for
// Config.HeartbeatTimeout.
var errDeadConnection = errors.New("client: connection dead: nothing received within the heartbeat timeout")

// errHandshakeTimeout ends a connection whose welcome did not come in time.
var errHandshakeTimeout = errors.New("client: no welcome within the handshake timeout")

// CloseError is why the server closed a connection: the WebSocket close code
// and reason (PROTOCOL.md, "Errors and close codes"). A Client stops with a
// CloseError for the codes it does not reconnect after (1000, 1008, 1009,
// 4004, and 4003 before the first welcome); Client.Err and every request
// made after that return it. A *CloseError matches ErrClosed with errors.Is.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("client: closed by the server with code %d", e.Code)
	}
	return fmt.Sprintf("client: closed by the server with code %d: %s", e.Code, e.Reason)
}

// Is reports whether target is ErrClosed: a client that stopped because of a
// close code is closed.
func (e *CloseError) Is(target error) bool { return target == ErrClosed }

// CloseCode returns the code of the *CloseError in err's chain, or 0 when
// there is none.
func CloseCode(err error) int {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// TokenError wraps an error of Config.Token. Dial returns it when the token
// for the first connection cannot be had; later, the client retries with
// back-off.
type TokenError struct{ Err error }

func (e *TokenError) Error() string { return "client: token: " + e.Err.Error() }

func (e *TokenError) Unwrap() error { return e.Err }

// UpgradeError is an HTTP answer other than a WebSocket upgrade to the
// client's upgrade request: the URL is not a Switchboard WebSocket endpoint
// (200, 404, a redirect), a proxy or gateway refused the request (401,
// 403), or the deployment cannot take connections right now (503 while an
// instance drains, 502 from a load balancer).
//
// Only answers that can change by themselves are retried: 5xx, 408 and 429,
// after the server's Retry-After (when it sent one) plus the client's
// jittered back-off. Any other status stops the client, at Dial and on a
// reconnect alike: Dial returns the *UpgradeError, and a running client
// stops with it (Client.Err, every request, OnStateChange with
// StateClosed). Such a final UpgradeError matches ErrClosed with errors.Is;
// a retried one appears only as the last attempt in the error of a Dial
// whose ctx ended.
//
// Branch on it with errors.As:
//
//	var ue *client.UpgradeError
//	if errors.As(err, &ue) && ue.StatusCode == http.StatusUnauthorized { ... }
type UpgradeError struct {
	// URL is the endpoint that answered.
	URL string
	// StatusCode is the HTTP status of the answer, such as 200, 401, 404
	// or 503. It is 101 when the server claimed to switch protocols but
	// its handshake was not a valid WebSocket one.
	StatusCode int
	// RetryAfter is the delay the server asked for in a Retry-After
	// header, at most 5 minutes, or 0 when it sent none (or one that did
	// not parse).
	RetryAfter time.Duration
	// Body is the start of the answer's body, at most 1 KiB, as sent.
	Body string
	// location is where a redirect points, for the message.
	location string
}

func (e *UpgradeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client: %s answered the WebSocket upgrade with HTTP %d", e.URL, e.StatusCode)
	if text := http.StatusText(e.StatusCode); text != "" {
		b.WriteString(" " + text)
	}
	switch {
	case e.StatusCode == http.StatusSwitchingProtocols:
		b.WriteString(" but no valid WebSocket handshake")
	case e.StatusCode >= 300 && e.StatusCode < 400:
		b.WriteString(", a redirect, which the client does not follow: use the URL it points to")
		if e.location != "" {
			fmt.Fprintf(&b, " (%s; ws:// for http, wss:// for https)", e.location)
		}
		return b.String()
	case e.StatusCode < 400:
		b.WriteString(" instead of 101 Switching Protocols: is it the WebSocket endpoint (path /ws)?")
	}
	if line := firstLine(e.Body); line != "" {
		fmt.Fprintf(&b, ": %q", line)
	}
	return b.String()
}

// Is reports whether target is ErrClosed and the status is one the client
// does not retry: such an answer stopped the client.
func (e *UpgradeError) Is(target error) bool { return target == ErrClosed && !e.retryable() }

// retryable reports whether a later attempt may get another answer: the
// server's own faults and overload (5xx), and 408 and 429, which say
// "later". Anything else (the wrong URL, refused credentials, a redirect)
// stays the same however often it is asked.
func (e *UpgradeError) retryable() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests
}

// firstLine returns the first line of a plain-text or JSON body, shortened,
// for an error message; "" for an empty one or markup.
func firstLine(body string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(body), "\n")
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "<") {
		return "" // an HTML page says nothing useful in one line
	}
	const maxLen = 120
	if len(line) > maxLen {
		line = strings.ToValidUTF8(line[:maxLen], "") + "…"
	}
	return line
}

// retryable reports whether a refused request may simply be sent again:
// the server did nothing with it (PROTOCOL.md: "unavailable: the publish was
// NOT stored"; a rate-limited frame is not handled).
func retryable(err error) bool {
	var pe *protocol.Error
	return errors.As(err, &pe) && (pe.Code == protocol.CodeUnavailable || pe.Code == protocol.CodeRateLimited)
}

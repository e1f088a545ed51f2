package client

import (
	"errors"
	"fmt"

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

// retryable reports whether a refused request may simply be sent again:
// the server did nothing with it (PROTOCOL.md: "unavailable: the publish was
// NOT stored"; a rate-limited frame is not handled).
func retryable(err error) bool {
	var pe *protocol.Error
	return errors.As(err, &pe) && (pe.Code == protocol.CodeUnavailable || pe.Code == protocol.CodeRateLimited)
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Error codes of the API besides those of package protocol.
const (
	codeNotFound         = protocol.CodeNotFound
	codeMethodNotAllowed = "method_not_allowed"
)

// statuses maps each error code the API answers with to its HTTP status.
var statuses = map[string]int{
	protocol.CodeBadRequest:   http.StatusBadRequest,
	protocol.CodeBadRoom:      http.StatusBadRequest,
	protocol.CodeUnauthorized: http.StatusUnauthorized,
	protocol.CodeForbidden:    http.StatusForbidden,
	codeNotFound:              http.StatusNotFound,
	codeMethodNotAllowed:      http.StatusMethodNotAllowed,
	protocol.CodeTooLarge:     http.StatusRequestEntityTooLarge,
	protocol.CodeUnavailable:  http.StatusServiceUnavailable,
	protocol.CodeInternal:     http.StatusInternalServerError,
}

// errorf returns a *protocol.Error: the API answers with its code and
// message, and the HTTP status of the code.
func errorf(code, format string, args ...any) *protocol.Error {
	return protocol.Errorf(code, format, args...)
}

// errUnavailable is the answer whenever the broker did not do what was
// asked: for a publish, the message was NOT stored.
var errUnavailable = errorf(protocol.CodeUnavailable, "the message bus is unavailable; nothing was published, try again")

// errUnconfirmed answers a publish whose outcome the broker could not
// tell (see broker.ErrUnconfirmed).
var errUnconfirmed = errorf(protocol.CodeUnavailable, "the message bus did not confirm this publish (its connection broke or went silent): the message may have been stored; publish again with the same key to find out")

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classify turns any error of a handler into the code and message to answer
// with, and the level at which the failure is worth logging: Debug for the
// caller's mistakes, Warn when the broker did not answer, Error for our own
// faults.
func classify(err error) (*protocol.Error, slog.Level) {
	var pe *protocol.Error
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &pe):
		return pe, slog.LevelDebug
	case errors.As(err, &tooLarge):
		return errorf(protocol.CodeTooLarge, "the request body is larger than %d bytes", tooLarge.Limit), slog.LevelDebug
	case errors.Is(err, broker.ErrUnconfirmed):
		return errUnconfirmed, slog.LevelWarn
	case errors.Is(err, broker.ErrUnavailable), errors.Is(err, broker.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		return errUnavailable, slog.LevelWarn
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		return errUnavailable, slog.LevelDebug
	}
	return errorf(protocol.CodeInternal, "internal error"), slog.LevelError
}

// writeError answers r with err as a JSON error body, and logs it: this is
// where a failed request ends. Errors never carry message data.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, level := classify(err)
	s.log.Log(r.Context(), level, "api request failed", "method", r.Method, "path", r.URL.Path, "code", e.Code, "err", err)
	status, ok := statuses[e.Code]
	if !ok {
		status = http.StatusBadRequest
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message}})
}

// writeJSON answers with v as JSON. HTML characters are not escaped, so
// message frames and data come out byte for byte as WebSocket clients see
// them.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only raw messages read from the broker can fail to encode, and
		// only if the broker handed back data that is not JSON.
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"error":{"code":"internal","message":"internal error: the answer could not be encoded"}}` + "\n")
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

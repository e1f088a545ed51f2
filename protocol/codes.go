package protocol

// Error codes carried by error frames and HTTP API error bodies (PROTOCOL.md,
// "Errors and close codes").
const (
	CodeBadRequest   = "bad_request"
	CodeUnknownType  = "unknown_type"
	CodeBadRoom      = "bad_room"
	CodeForbidden    = "forbidden"
	CodeNotJoined    = "not_joined"
	CodeTooManyRooms = "too_many_rooms"
	CodeRateLimited  = "rate_limited"
	CodeTooLarge     = "too_large"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
	// CodeUnauthorized and CodeNotFound are used by the HTTP API only.
	CodeUnauthorized = "unauthorized"
	CodeNotFound     = "not_found"
)

// WebSocket close codes (PROTOCOL.md, "Errors and close codes").
const (
	CloseNormal         = 1000
	ClosePolicy         = 1008
	CloseTooLarge       = 1009
	CloseRestarting     = 4001
	CloseUnauthorized   = 4003
	CloseDisconnected   = 4004
	CloseSlowConsumer   = 4008
	CloseRateLimited    = 4029
	closeGoingAway      = 1001
	closeAbnormalClosed = 1006
)

// CloseCodeReconnects reports whether a client should reconnect after the
// server closed with code: true for drains, slow consumers, rate limits,
// expired tokens (after fetching a new one) and abnormal closes.
func CloseCodeReconnects(code int) bool {
	switch code {
	case CloseNormal, ClosePolicy, CloseTooLarge, CloseDisconnected:
		return false
	}
	return true
}

// Error is a protocol error: the code and message of an error frame or of an
// HTTP API error body.
type Error struct {
	Code    string
	Message string
}

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Client frame types.
const (
	TypeHello    = "hello"
	TypeJoin     = "join"
	TypeLeave    = "leave"
	TypePublish  = "publish"
	TypeSend     = "send"
	TypePresence = "presence"
	TypeHistory  = "history"
	TypeRefresh  = "refresh"
	TypePing     = "ping"
)

// MaxKeyLen is the longest idempotency key, in bytes.
const MaxKeyLen = 64

// MaxIDLen is the longest frame id, in bytes of its JSON text.
const MaxIDLen = 128

// Position is a place in a room's stream: the epoch and the offset of a
// message (or, for a room with no messages in the epoch, offset 0).
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// ClientFrame is a decoded client frame. It carries the fields of every client
// frame type; which ones are set depends on Type, and [Decode] has checked
// that the ones Type needs are present and well-formed.
type ClientFrame struct {
	Type string `json:"type"`
	// ID is the client's id for the request, copied into the answer: a JSON
	// number or string, or nil.
	ID json.RawMessage `json:"id,omitempty"`

	// hello
	Token   string              `json:"token,omitempty"`
	User    string              `json:"user,omitempty"`
	Resume  map[string]Position `json:"resume,omitempty"`
	Session string              `json:"session,omitempty"`
	Batch   bool                `json:"batch,omitempty"`
	Echo    bool                `json:"echo,omitempty"`

	// join, leave, publish, presence, history
	Room  string    `json:"room,omitempty"`
	Since *Position `json:"since,omitempty"`
	Limit int       `json:"limit,omitempty"`

	// publish, send
	To   string          `json:"to,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
	Key  string          `json:"key,omitempty"`

	// ResumeErrors holds, by room, the hello.resume entries Decode could
	// not read (they are not in Resume).
	ResumeErrors map[string]error `json:"-"`
}

// Decode parses and checks one client frame. Field names match exactly
// (PROTOCOL.md: camelCase; "ROOM" is not "room"), a name given twice is an
// error, and unknown fields are ignored. On failure it returns the frame as
// far as it could be read (so that its ID can be echoed in the error frame)
// and a *Error whose code is bad_request, unknown_type or bad_room. A bad
// hello.resume entry does not fail the frame: it is left out of Resume and
// reported in ResumeErrors, so that it costs that room only.
func Decode(b []byte) (*ClientFrame, error) {
	var f ClientFrame
	if err := Unmarshal(b, &f); err != nil {
		var se *jsonv2.SemanticError
		if errors.As(err, &se) && strings.HasPrefix(string(se.JSONPointer), "/resume/") {
			f = ClientFrame{}
			err = f.decodeLenientResume(b)
		}
		if err != nil {
			// A frame that is JSON but has a field of the wrong type still
			// tells us its id; try once more for it alone. The failed pass
			// has already stored whatever "id" held, valid or not, so start
			// from nothing.
			f.ID = nil
			var idOnly struct {
				ID jsontext.Value `json:"id"`
			}
			if jsonv2.Unmarshal(b, &idOnly, jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)) == nil && validID(json.RawMessage(idOnly.ID)) {
				f.ID = json.RawMessage(idOnly.ID)
			}
			return &f, &Error{Code: CodeBadRequest, Message: "frame is not a valid JSON object of the protocol: " + JSONProblem(err)}
		}
	}
	if len(f.ID) > 0 && !validID(f.ID) {
		f.ID = nil
		return &f, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("id must be a number or a string of at most %d bytes", MaxIDLen)}
	}
	if err := f.check(); err != nil {
		return &f, err
	}
	if len(f.Data) > 0 && bytes.ContainsAny(f.Data, "\r\n\t") {
		// Batched server frames are separated by newlines, so stored data
		// must never hold a raw one. (Unmarshal has checked that data is
		// valid JSON in UTF-8: text frames must be UTF-8, RFC 6455.)
		v := jsontext.Value(f.Data)
		if err := v.Compact(); err != nil {
			return &f, &Error{Code: CodeBadRequest, Message: "data is not valid JSON"}
		}
		f.Data = json.RawMessage(v)
	}
	return &f, nil
}

func (f *ClientFrame) check() error {
	switch f.Type {
	case TypeHello:
		// Resume entries are checked one by one with CheckResume, so that a
		// bad entry costs that room, not the connection.
		return nil
	case TypeJoin, TypeLeave, TypePresence:
		return f.needRoom()
	case TypeHistory:
		if f.Limit < 0 {
			return &Error{Code: CodeBadRequest, Message: "limit must not be negative"}
		}
		return f.needRoom()
	case TypePublish:
		if err := f.needRoom(); err != nil {
			return err
		}
		return f.needData()
	case TypeSend:
		if f.To == "" {
			return &Error{Code: CodeBadRequest, Message: "send needs to (a user id)"}
		}
		if !ValidUser(f.To) {
			return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("%q is not a valid user id", clip(f.To))}
		}
		return f.needData()
	case TypeRefresh:
		if f.Token == "" {
			return &Error{Code: CodeBadRequest, Message: "refresh needs a token"}
		}
		return nil
	case TypePing:
		return nil
	case "":
		return &Error{Code: CodeBadRequest, Message: "frame has no type"}
	}
	return &Error{Code: CodeUnknownType, Message: fmt.Sprintf("unknown frame type %q", clip(f.Type))}
}

// CheckResume checks one entry of hello.resume: a legal room and a
// position with an epoch. The error is a *Error with code bad_room or
// bad_request.
func CheckResume(room string, pos Position) error {
	if err := ParseRoom(room); err != nil {
		return err
	}
	if pos.Epoch == "" {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("resume[%q] needs an epoch", clip(room))}
	}
	return nil
}

func (f *ClientFrame) needRoom() error {
	if f.Since != nil && f.Since.Epoch == "" {
		return &Error{Code: CodeBadRequest, Message: "since needs an epoch"}
	}
	return ParseRoom(f.Room)
}

func (f *ClientFrame) needData() error {
	if len(f.Data) == 0 {
		return &Error{Code: CodeBadRequest, Message: f.Type + " needs data"}
	}
	if len(f.Key) > MaxKeyLen {
		return &Error{Code: CodeBadRequest, Message: fmt.Sprintf("key must be 1-%d bytes", MaxKeyLen)}
	}
	return nil
}

// validID reports whether raw is a JSON number or string short enough to be
// echoed. It is echoed verbatim, so it must be valid UTF-8 too.
func validID(raw json.RawMessage) bool {
	if len(raw) == 0 || len(raw) > MaxIDLen || !utf8.Valid(raw) {
		return false
	}
	c := raw[0]
	return c == '"' || c == '-' || c >= '0' && c <= '9'
}

package protocol

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Server frame types.
const (
	TypeWelcome   = "welcome"
	TypeJoined    = "joined"
	TypeLeft      = "left"
	TypeMessage   = "message"
	TypeAck       = "ack"
	TypeReset     = "reset"
	TypePong      = "pong"
	TypeError     = "error"
	TypeReconnect = "server:reconnect"
	// TypePresence and TypeHistory answer the client frames of the same name.
)

// Welcome answers hello.
type Welcome struct {
	Type      string       `json:"type"`
	Session   string       `json:"session"`
	User      string       `json:"user"`
	Instance  string       `json:"instance"`
	Heartbeat int64        `json:"heartbeat"`
	Inbox     RoomPosition `json:"inbox"`
}

// RoomPosition is a position together with its room.
type RoomPosition struct {
	Room   string `json:"room"`
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Joined answers join (and ends the recovery of a resumed room, without ID).
type Joined struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id,omitempty"`
	Room      string          `json:"room"`
	Epoch     string          `json:"epoch"`
	Offset    uint64          `json:"offset"`
	Recovered bool            `json:"recovered"`
}

// Left answers leave.
type Left struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id,omitempty"`
	Room string          `json:"room"`
}

// Ack answers publish, send and refresh. Room, Epoch and Offset are empty for
// refresh.
type Ack struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id,omitempty"`
	Room   string          `json:"room,omitempty"`
	Epoch  string          `json:"epoch,omitempty"`
	Offset uint64          `json:"offset,omitempty"`
}

// UserSessions counts one user's sessions in a room.
type UserSessions struct {
	User     string `json:"user"`
	Sessions int    `json:"sessions"`
}

// Presence answers presence.
type Presence struct {
	Type  string          `json:"type"`
	ID    json.RawMessage `json:"id,omitempty"`
	Room  string          `json:"room"`
	Total int             `json:"total"`
	Users []UserSessions  `json:"users"`
}

// MarshalJSON encodes p with "users":[] rather than null when Users is nil,
// so that clients can always iterate over the list.
func (p Presence) MarshalJSON() ([]byte, error) {
	type plain Presence
	if p.Users == nil {
		p.Users = []UserSessions{}
	}
	return json.Marshal(plain(p))
}

// History answers history. Messages holds message frames as encoded by
// [AppendMessage].
type History struct {
	Type     string            `json:"type"`
	ID       json.RawMessage   `json:"id,omitempty"`
	Room     string            `json:"room"`
	Epoch    string            `json:"epoch"`
	Offset   uint64            `json:"offset"`
	Messages []json.RawMessage `json:"messages"`
}

// MarshalJSON encodes h with "messages":[] rather than null when Messages is
// nil, so that clients can always iterate over the list.
func (h History) MarshalJSON() ([]byte, error) {
	type plain History
	if h.Messages == nil {
		h.Messages = []json.RawMessage{}
	}
	return json.Marshal(plain(h))
}

// Reset tells a session that a room could not be kept continuous for it.
type Reset struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Pong answers ping.
type Pong struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id,omitempty"`
}

// ErrorFrame reports a refused client frame.
type ErrorFrame struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

// Reconnect asks a client to reconnect after ReconnectAfter milliseconds; the
// server closes with 4001 right after it.
type Reconnect struct {
	Type           string `json:"type"`
	ReconnectAfter int64  `json:"reconnectAfter"`
	Server         string `json:"server"`
}

// Encode returns the compact JSON of a server frame struct of this package.
// Every such struct encodes without error; Encode panics otherwise, as that
// is a programming mistake.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("protocol: encode server frame: " + err.Error())
	}
	return b
}

// Message is a room message as the server sends it.
type Message struct {
	Room   string
	Epoch  string
	Offset uint64
	// From is the publishing user; empty for anonymous API publishes.
	From string
	// Data is compact JSON without raw newlines.
	Data json.RawMessage
	// TS is the broker-side publish time in Unix milliseconds.
	TS int64
}

// AppendMessage appends the message frame of m to dst:
// {"type":"message","room":…,"epoch":…,"offset":…,"from":…,"data":…,"ts":…}.
func AppendMessage(dst []byte, m *Message) []byte {
	dst = append(dst, `{"type":"message","room":`...)
	dst = AppendString(dst, m.Room)
	dst = append(dst, `,"epoch":`...)
	dst = AppendString(dst, m.Epoch)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendUint(dst, m.Offset, 10)
	if m.From != "" {
		dst = append(dst, `,"from":`...)
		dst = AppendString(dst, m.From)
	}
	dst = append(dst, `,"data":`...)
	if len(m.Data) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, m.Data...)
	}
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, m.TS, 10)
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8 with U+FFFD, as encoding/json does.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript source.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

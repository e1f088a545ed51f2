package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ServerFrame is a decoded server frame, for clients: the union of the fields
// of every server frame type.
type ServerFrame struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id,omitempty"`

	// welcome
	Session   string        `json:"session,omitempty"`
	User      string        `json:"user,omitempty"`
	Instance  string        `json:"instance,omitempty"`
	Heartbeat int64         `json:"heartbeat,omitempty"`
	Inbox     *RoomPosition `json:"inbox,omitempty"`

	// joined, left, message, ack, presence, history, reset
	Room      string          `json:"room,omitempty"`
	Epoch     string          `json:"epoch,omitempty"`
	Offset    uint64          `json:"offset,omitempty"`
	Recovered bool            `json:"recovered,omitempty"`
	From      string          `json:"from,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	TS        int64           `json:"ts,omitempty"`
	Total     int             `json:"total,omitempty"`
	Users     []UserSessions  `json:"users,omitempty"`
	Messages  []ServerFrame   `json:"messages,omitempty"`

	// error
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`

	// server:reconnect
	ReconnectAfter int64  `json:"reconnectAfter,omitempty"`
	Server         string `json:"server,omitempty"`
}

// DecodeServer parses one WebSocket text frame from the server into its
// frames: one, or several when the session asked for batch mode.
func DecodeServer(b []byte) ([]ServerFrame, error) {
	var out []ServerFrame
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var f ServerFrame
		if err := json.Unmarshal(line, &f); err != nil {
			return out, fmt.Errorf("decode server frame: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}

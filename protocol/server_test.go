package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/protocol"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current encoders")

func TestAppendMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    protocol.Message
	}{
		{"WithFrom", protocol.Message{Room: "general", Epoch: "e1", Offset: 58, From: "alice", Data: raw(`{"text":"hi"}`), TS: 1764300000000}},
		{"WithoutFrom", protocol.Message{Room: "general", Epoch: "e1", Offset: 1, Data: raw(`"from the API"`), TS: 1}},
		{"NilData", protocol.Message{Room: "general", Epoch: "e1", Offset: 2, From: "bob"}},
		{"EmptyData", protocol.Message{Room: "general", Epoch: "e1", Offset: 2, Data: raw(``)}},
		{"NullData", protocol.Message{Room: "general", Epoch: "e1", Offset: 2, Data: raw(`null`)}},
		{"NumberData", protocol.Message{Room: "r", Epoch: "e", Offset: 3, Data: raw(`-1.50e+10`)}},
		{"ArrayData", protocol.Message{Room: "r", Epoch: "e", Offset: 3, Data: raw(`[1,"two",{"3":[null,true,false]}]`)}},
		{"InboxAndOddUser", protocol.Message{Room: "@a\"b\\c", Epoch: "e", Offset: 4, From: `a"b\c|<&>`, Data: raw(`{}`), TS: 5}},
		{"OddEpoch", protocol.Message{Room: "r", Epoch: "ep\u2028\x01\xff", Offset: 4, Data: raw(`0`)}},
		{"MaxOffsetAndNegativeTS", protocol.Message{Room: "r", Epoch: "e", Offset: math.MaxUint64, Data: raw(`1`), TS: math.MinInt64}},
		{"ZeroValue", protocol.Message{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := protocol.AppendMessage(nil, &tt.m)

			if !json.Valid(got) {
				t.Fatalf("AppendMessage() = %s, not valid JSON", got)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, got); err != nil {
				t.Fatalf("Compact: %v", err)
			}
			if !bytes.Equal(compact.Bytes(), got) {
				t.Errorf("AppendMessage() = %s, not compact JSON (compact: %s)", got, compact.Bytes())
			}
			if !utf8.Valid(got) {
				t.Errorf("AppendMessage() = %q, not valid UTF-8", got)
			}

			data := tt.m.Data
			if len(data) == 0 {
				data = raw(`null`)
			}
			want := map[string]any{
				"type":   protocol.TypeMessage,
				"room":   tt.m.Room,
				"epoch":  tt.m.Epoch,
				"offset": tt.m.Offset,
				"data":   data,
				"ts":     tt.m.TS,
			}
			if tt.m.From != "" {
				want["from"] = tt.m.From
			}
			wantJSON, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := decodeJSON(t, got), decodeJSON(t, wantJSON); !reflect.DeepEqual(g, w) {
				t.Errorf("AppendMessage() = %s\nwant (semantically) %s", got, wantJSON)
			}
		})
	}
}

func TestAppendMessage_AppendsToDst(t *testing.T) {
	t.Parallel()
	m := &protocol.Message{Room: "general", Epoch: "e1", Offset: 7, From: "alice", Data: raw(`1`), TS: 9}
	alone := protocol.AppendMessage(nil, m)
	got := protocol.AppendMessage([]byte("prefix\n"), m)
	if want := "prefix\n" + string(alone); string(got) != want {
		t.Errorf("AppendMessage(prefix) = %q, want %q", got, want)
	}
}

// trickyStrings are strings whose JSON encoding is easy to get wrong.
var trickyStrings = []string{
	"",
	"plain",
	`quote " inside`,
	`back\slash`,
	`\"`,
	"\x00",
	"\x01\x02\x03\x04\x05\x06\x07",
	"\b\f\n\r\t",
	"\x0b\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f",
	"\x7f",
	"a\xffb",
	"\xff\xfe\xfd",
	"\xc3",             // truncated 2-byte sequence
	"\xe2\x82",         // truncated 3-byte sequence
	"\xed\xa0\x80",     // UTF-8 encoded surrogate U+D800
	"\xf4\x90\x80\x80", // above U+10FFFF
	"\xc0\xaf",         // overlong '/'
	"line\u2028sep\u2029para",
	"\u2027\u202a", // neighbours of U+2028/2029 pass through
	"emoji 🙂👩‍👩‍👧 and flags 🇫🇷",
	"<script>alert('x' & \"y\")</script>",
	"\ufffd already a replacement char",
	"日本語テキスト",
	"mixed \x00 \xff \u2028 🙂 \"\\ <>&",
}

func TestAppendString(t *testing.T) {
	t.Parallel()
	for _, s := range trickyStrings {
		got := protocol.AppendString(nil, s)
		checkJSONString(t, s, got)
	}
}

func TestAppendString_EveryByte(t *testing.T) {
	t.Parallel()
	for c := 0; c < 256; c++ {
		s := "a" + string([]byte{byte(c)}) + "z"
		checkJSONString(t, s, protocol.AppendString(nil, s))
	}
}

func TestAppendString_Exact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"", `""`},
		{"abc", `"abc"`},
		{`a"b`, `"a\"b"`},
		{`a\b`, `"a\\b"`},
		{"\n\r\t", `"\n\r\t"`},
		{"\x00\x1f", `"\u0000\u001f"`},
		{"\b\f", `"\u0008\u000c"`},
		{"<>&", `"<>&"`},
		{"\x7f", "\"\x7f\""},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"a\xffb", `"a\ufffdb"`},
		{"\xff\xfe", `"\ufffd\ufffd"`},
		{"é🙂", `"é🙂"`},
	}
	for _, tt := range tests {
		if got := protocol.AppendString(nil, tt.in); string(got) != tt.want {
			t.Errorf("AppendString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := protocol.AppendString([]byte(`{"k":`), "v"); string(got) != `{"k":"v"` {
		t.Errorf("AppendString(prefix) = %s", got)
	}
}

// checkJSONString checks that got, the output of AppendString(nil, s), is a
// JSON string that decodes to what encoding/json's encoding of s decodes to,
// and that it is safe in a text frame and in JavaScript source.
func checkJSONString(t testing.TB, s string, got []byte) {
	t.Helper()
	if !json.Valid(got) || len(got) < 2 || got[0] != '"' || got[len(got)-1] != '"' {
		t.Errorf("AppendString(%q) = %q, not a JSON string", s, got)
		return
	}
	for i, c := range got {
		if c < 0x20 {
			t.Errorf("AppendString(%q) = %q holds raw byte %#x at %d", s, got, c, i)
		}
	}
	if !utf8.Valid(got) {
		t.Errorf("AppendString(%q) = %q, not valid UTF-8", s, got)
	}
	if bytes.ContainsRune(got, '\u2028') || bytes.ContainsRune(got, '\u2029') {
		t.Errorf("AppendString(%q) = %q holds a raw U+2028 or U+2029", s, got)
	}
	std, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("json.Marshal(%q): %v", s, err)
	}
	var ours, theirs string
	if err := json.Unmarshal(got, &ours); err != nil {
		t.Errorf("json.Unmarshal(AppendString(%q) = %q): %v", s, got, err)
		return
	}
	if err := json.Unmarshal(std, &theirs); err != nil {
		t.Fatalf("json.Unmarshal(%q): %v", std, err)
	}
	if ours != theirs {
		t.Errorf("AppendString(%q) decodes to %q, encoding/json's %s decodes to %q", s, ours, std, theirs)
	}
	// encoding/json replaces each invalid byte with U+FFFD, like a range loop
	// over the string; strings.ToValidUTF8 would merge runs of them into one.
	if want := string([]rune(s)); ours != want {
		t.Errorf("AppendString(%q) decodes to %q, want %q", s, ours, want)
	}
}

func TestDecodeServer(t *testing.T) {
	t.Parallel()
	ping := `{"type":"pong","id":7}`
	msg := `{"type":"message","room":"general","epoch":"e1","offset":58,"from":"alice","data":{"t":"a\nb"},"ts":1}`
	tests := []struct {
		name  string
		in    string
		types []string
	}{
		{"Empty", "", nil},
		{"OnlyNewlines", "\n\n", nil},
		{"One", ping, []string{"pong"}},
		{"Batch", msg + "\n" + ping, []string{"message", "pong"}},
		{"TrailingNewline", msg + "\n", []string{"message"}},
		{"LeadingNewline", "\n" + msg, []string{"message"}},
		{"EmptyLinesBetween", ping + "\n\n\n" + msg + "\n", []string{"pong", "message"}},
		{"WhitespaceLine", ping + "\n \t \r\n" + ping, []string{"pong", "pong"}},
		{"CRLF", ping + "\r\n" + msg + "\r\n", []string{"pong", "message"}},
		{"Indented", "  " + ping + "  ", []string{"pong"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			frames, err := protocol.DecodeServer([]byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeServer(%q) error = %v", tt.in, err)
			}
			var types []string
			for _, f := range frames {
				types = append(types, f.Type)
			}
			if !slices.Equal(types, tt.types) {
				t.Errorf("DecodeServer(%q) types = %q, want %q", tt.in, types, tt.types)
			}
		})
	}

	frames, err := protocol.DecodeServer([]byte(msg))
	if err != nil || len(frames) != 1 {
		t.Fatalf("DecodeServer(message) = %v, %v", frames, err)
	}
	want := protocol.ServerFrame{Type: "message", Room: "general", Epoch: "e1", Offset: 58, From: "alice", Data: raw(`{"t":"a\nb"}`), TS: 1}
	if !reflect.DeepEqual(frames[0], want) {
		t.Errorf("DecodeServer(message) = %+v, want %+v", frames[0], want)
	}
}

func TestDecodeServer_Errors(t *testing.T) {
	t.Parallel()
	ping := `{"type":"pong","id":7}`
	for _, in := range []string{
		"junk",
		"{",
		`{"type":"pong"} trailing`,
		ping + "\n" + "junk",
		ping + "\n{\"type\":\n\"pong\"}", // a frame must not span lines
		`{"type":"joined","offset":"1"}`,
		`[1]`,
	} {
		_, err := protocol.DecodeServer([]byte(in))
		if err == nil {
			t.Errorf("DecodeServer(%q) error = nil, want an error", in)
		}
	}
	_, err := protocol.DecodeServer([]byte("junk"))
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		t.Errorf("DecodeServer(junk) error = %v, want it to wrap *json.SyntaxError", err)
	}
}

// goldenFrames are one encoded example of every server frame type, with the
// keys that PROTOCOL.md ("Server → client") shows for it.
var goldenFrames = []struct {
	name string
	v    any
	keys []string
}{
	{"welcome", protocol.Welcome{
		Type: protocol.TypeWelcome, Session: "s_1", User: "alice", Instance: "i_1", Heartbeat: 25000,
		Inbox: protocol.RoomPosition{Room: "@alice", Epoch: "e0", Offset: 0},
	}, []string{"type", "session", "user", "instance", "heartbeat", "inbox"}},
	{"joined", protocol.Joined{
		Type: protocol.TypeJoined, ID: raw(`1`), Room: "general", Epoch: "e1", Offset: 57, Recovered: true,
	}, []string{"type", "id", "room", "epoch", "offset", "recovered"}},
	{"joined_resumed", protocol.Joined{
		Type: protocol.TypeJoined, Room: "general", Epoch: "e2", Offset: 0, Recovered: false,
	}, []string{"type", "room", "epoch", "offset", "recovered"}},
	{"left", protocol.Left{Type: protocol.TypeLeft, ID: raw(`2`), Room: "general"},
		[]string{"type", "id", "room"}},
	{"message", message(&protocol.Message{
		Room: "general", Epoch: "e1", Offset: 58, From: "alice", Data: raw(`{"text":"hi"}`), TS: 1764300000000,
	}), []string{"type", "room", "epoch", "offset", "from", "data", "ts"}},
	{"message_api", message(&protocol.Message{
		Room: "general", Epoch: "e1", Offset: 59, Data: raw(`"from a backend"`), TS: 1764300000001,
	}), []string{"type", "room", "epoch", "offset", "data", "ts"}},
	{"ack", protocol.Ack{Type: protocol.TypeAck, ID: raw(`3`), Room: "general", Epoch: "e1", Offset: 58},
		[]string{"type", "id", "room", "epoch", "offset"}},
	{"ack_refresh", protocol.Ack{Type: protocol.TypeAck, ID: raw(`"r1"`)},
		[]string{"type", "id"}},
	{"presence", protocol.Presence{
		Type: protocol.TypePresence, ID: raw(`5`), Room: "general", Total: 1,
		Users: []protocol.UserSessions{{User: "alice", Sessions: 2}},
	}, []string{"type", "id", "room", "total", "users"}},
	{"presence_empty", protocol.Presence{Type: protocol.TypePresence, ID: raw(`5`), Room: "quiet"},
		[]string{"type", "id", "room", "total", "users"}},
	{"history", protocol.History{
		Type: protocol.TypeHistory, ID: raw(`6`), Room: "general", Epoch: "e1", Offset: 58,
		Messages: []json.RawMessage{
			protocol.AppendMessage(nil, &protocol.Message{Room: "general", Epoch: "e1", Offset: 57, From: "bob", Data: raw(`1`), TS: 1764299999999}),
			protocol.AppendMessage(nil, &protocol.Message{Room: "general", Epoch: "e1", Offset: 58, From: "alice", Data: raw(`{"text":"hi"}`), TS: 1764300000000}),
		},
	}, []string{"type", "id", "room", "epoch", "messages"}},
	{"history_empty", protocol.History{Type: protocol.TypeHistory, ID: raw(`6`), Room: "quiet", Epoch: "e1"},
		[]string{"type", "id", "room", "epoch", "messages"}},
	{"reset", protocol.Reset{Type: protocol.TypeReset, Room: "general", Epoch: "e2", Offset: 0},
		[]string{"type", "room", "epoch", "offset"}},
	{"pong", protocol.Pong{Type: protocol.TypePong, ID: raw(`7`)},
		[]string{"type", "id"}},
	{"error", protocol.ErrorFrame{
		Type: protocol.TypeError, ID: raw(`3`), Code: protocol.CodeNotJoined, Message: "join the room before publishing to it",
	}, []string{"type", "id", "code", "message"}},
	{"server_reconnect", protocol.Reconnect{Type: protocol.TypeReconnect, ReconnectAfter: 1000, Server: "i_1"},
		[]string{"type", "reconnectAfter", "server"}},
}

// message wraps an encoded message frame so that the golden table can hold
// it next to the structs that Encode takes.
func message(m *protocol.Message) json.RawMessage { return protocol.AppendMessage(nil, m) }

func encodeGolden(v any) []byte {
	if b, ok := v.(json.RawMessage); ok {
		return b
	}
	return protocol.Encode(v)
}

func TestEncode_Golden(t *testing.T) {
	t.Parallel()
	for _, g := range goldenFrames {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			got := encodeGolden(g.v)
			path := filepath.Join("testdata", "golden", g.name+".json")
			if *update {
				if err := os.WriteFile(path, append(slices.Clip(got), '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestEncode_Golden -update to create it)", err)
			}
			if string(got)+"\n" != string(want) {
				t.Errorf("encoded %s =\n%s\nwant (%s)\n%s", g.name, got, path, want)
			}
			if bytes.ContainsAny(got, "\r\n") {
				t.Errorf("encoded %s holds a raw newline: %q", g.name, got)
			}

			var obj map[string]json.RawMessage
			if err := json.Unmarshal(got, &obj); err != nil {
				t.Fatalf("encoded %s is not a JSON object: %v", g.name, err)
			}
			for _, k := range g.keys {
				if _, ok := obj[k]; !ok {
					t.Errorf("encoded %s = %s lacks PROTOCOL.md field %q", g.name, got, k)
				}
			}
			if _, ok := obj["id"]; ok && !slices.Contains(g.keys, "id") {
				t.Errorf("encoded %s = %s has an id it was not given", g.name, got)
			}
			for _, k := range []string{"users", "messages"} {
				if v, ok := obj[k]; ok && string(v) == "null" {
					t.Errorf("encoded %s has %q: null, want a list", g.name, k)
				}
			}
		})
	}
}

// TestDecodeServer_Golden checks that the client side reads every server
// frame, batched the way a session in batch mode receives them.
func TestDecodeServer_Golden(t *testing.T) {
	t.Parallel()
	var batch []byte
	for _, g := range goldenFrames {
		batch = append(batch, encodeGolden(g.v)...)
		batch = append(batch, '\n')
	}
	frames, err := protocol.DecodeServer(batch)
	if err != nil {
		t.Fatalf("DecodeServer(batch of golden frames) error = %v", err)
	}
	if len(frames) != len(goldenFrames) {
		t.Fatalf("DecodeServer(batch) = %d frames, want %d", len(frames), len(goldenFrames))
	}
	byName := map[string]protocol.ServerFrame{}
	for i, g := range goldenFrames {
		var head struct{ Type string }
		if err := json.Unmarshal(encodeGolden(g.v), &head); err != nil {
			t.Fatal(err)
		}
		if frames[i].Type != head.Type {
			t.Errorf("frame %d (%s) type = %q, want %q", i, g.name, frames[i].Type, head.Type)
		}
		byName[g.name] = frames[i]
	}

	if w := byName["welcome"]; w.Inbox == nil || *w.Inbox != (protocol.RoomPosition{Room: "@alice", Epoch: "e0"}) || w.Heartbeat != 25000 || w.Session != "s_1" {
		t.Errorf("welcome decoded as %+v", w)
	}
	if j := byName["joined"]; !j.Recovered || j.Offset != 57 || string(j.ID) != "1" {
		t.Errorf("joined decoded as %+v", j)
	}
	if m := byName["message"]; m.From != "alice" || string(m.Data) != `{"text":"hi"}` || m.TS != 1764300000000 {
		t.Errorf("message decoded as %+v", m)
	}
	if p := byName["presence"]; p.Total != 1 || !slices.Equal(p.Users, []protocol.UserSessions{{User: "alice", Sessions: 2}}) {
		t.Errorf("presence decoded as %+v", p)
	}
	if h := byName["history"]; len(h.Messages) != 2 || h.Messages[1].Offset != 58 || h.Messages[0].From != "bob" || h.Messages[0].Type != protocol.TypeMessage {
		t.Errorf("history decoded as %+v", h)
	}
	if e := byName["error"]; e.Code != protocol.CodeNotJoined || e.Message == "" {
		t.Errorf("error decoded as %+v", e)
	}
	if r := byName["server_reconnect"]; r.ReconnectAfter != 1000 || r.Server != "i_1" {
		t.Errorf("server:reconnect decoded as %+v", r)
	}
}

func TestEncode_PointerAndValueAgree(t *testing.T) {
	t.Parallel()
	p := protocol.Presence{Type: protocol.TypePresence, Room: "r"}
	h := protocol.History{Type: protocol.TypeHistory, Room: "r", Epoch: "e"}
	if a, b := protocol.Encode(p), protocol.Encode(&p); !bytes.Equal(a, b) {
		t.Errorf("Encode(Presence) = %s, Encode(*Presence) = %s", a, b)
	}
	if a, b := protocol.Encode(h), protocol.Encode(&h); !bytes.Equal(a, b) {
		t.Errorf("Encode(History) = %s, Encode(*History) = %s", a, b)
	}
}

func TestEncode_PanicsOnNonFrame(t *testing.T) {
	t.Parallel()
	defer func() {
		r := recover()
		if r == nil {
			t.Fatal("Encode(chan) did not panic")
		}
		if s, ok := r.(string); !ok || !strings.HasPrefix(s, "protocol: ") {
			t.Errorf("Encode(chan) panicked with %#v", r)
		}
	}()
	protocol.Encode(make(chan int))
}

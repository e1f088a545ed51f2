package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/switchboard-rt/switchboard/protocol"
)

// FuzzDecode checks the invariants of Decode. Its seed corpus lives in
// testdata/fuzz/FuzzDecode (one file per client frame type plus malformed
// frames); add every crasher found there.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"type":"ping","id":1}`))
	f.Add([]byte(`{"type":"publish","id":"p","room":"general","data":[1,{"a":"b"}],"key":"k"}`))
	f.Add([]byte(`{"type":"hello","resume":{"@alice":{"epoch":"e","offset":1}},"session":"s"}`))
	f.Add([]byte("{\"type\":\"send\",\"to\":\"bob\",\"data\":{\r\n\"x\":\t1}}"))
	f.Add([]byte(`{"type":"join","id":{},"room":"@"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"type":"publish","id":1,"room":"r","data":` + nested(protocol.MaxDataDepth+1) + `}`))

	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := protocol.Decode(b)
		if fr == nil {
			t.Fatalf("Decode(%q) returned a nil frame", b)
		}
		checkID(t, fr.ID)
		if err == nil && protocol.CheckDepth(b, protocol.MaxDataDepth+1) != nil {
			t.Fatalf("Decode(%q) accepted a frame nested deeper than the limit", b)
		}
		if err != nil {
			var pe *protocol.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Decode(%q) error = %v (%T), want *protocol.Error", b, err, err)
			}
			switch pe.Code {
			case protocol.CodeBadRequest, protocol.CodeUnknownType, protocol.CodeBadRoom:
			default:
				t.Errorf("Decode(%q) code = %q", b, pe.Code)
			}
			if pe.Message == "" {
				t.Errorf("Decode(%q) message is empty", b)
			}
			return
		}
		checkFrame(t, fr)

		// A decoded frame re-encodes to a frame that decodes the same.
		enc, err := json.Marshal(fr)
		if err != nil {
			t.Fatalf("json.Marshal(Decode(%q)): %v", b, err)
		}
		fr2, err := protocol.Decode(enc)
		if err != nil {
			t.Fatalf("Decode(%q) ok, but its re-encoding %q: %v", b, enc, err)
		}
		checkFrame(t, fr2)
		a, c := *fr, *fr2
		if !sameJSON(a.ID, c.ID) || !sameJSON(a.Data, c.Data) || !maps.Equal(a.Resume, c.Resume) {
			t.Errorf("round trip of %q changed id, data or resume:\n%+v\n%+v", b, a, c)
		}
		// Bad resume entries are left out of Resume and reported in
		// ResumeErrors, which is not encoded: the re-encoded frame has none.
		a.ID, a.Data, a.Resume, a.ResumeErrors = nil, nil, nil, nil
		c.ID, c.Data, c.Resume, c.ResumeErrors = nil, nil, nil, nil
		if !reflect.DeepEqual(a, c) {
			t.Errorf("round trip of %q:\n got %+v\nwant %+v", b, c, a)
		}
	})
}

// checkID checks that id can be echoed as is: absent, or a JSON number or
// string of at most MaxIDLen bytes of UTF-8.
func checkID(t *testing.T, id json.RawMessage) {
	t.Helper()
	if id == nil {
		return
	}
	if len(id) > protocol.MaxIDLen || !utf8.Valid(id) || !json.Valid(id) {
		t.Fatalf("ID = %q, want at most %d bytes of valid JSON", id, protocol.MaxIDLen)
	}
	d := json.NewDecoder(bytes.NewReader(id))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("ID = %q: %v", id, err)
	}
	switch v.(type) {
	case string, json.Number:
	default:
		t.Fatalf("ID = %q is a %T, want a number or a string", id, v)
	}
}

// checkFrame checks what Decode promises about a frame it accepted. Fields
// that a type does not use (a room on a ping) are ignored like unknown fields
// and not checked.
func checkFrame(t *testing.T, f *protocol.ClientFrame) {
	t.Helper()
	switch f.Type {
	case protocol.TypeJoin, protocol.TypeLeave, protocol.TypePresence, protocol.TypeHistory, protocol.TypePublish:
		if err := protocol.ParseRoom(f.Room); err != nil {
			t.Errorf("%s frame with room %q: ParseRoom = %v", f.Type, f.Room, err)
		}
		if f.Since != nil && f.Since.Epoch == "" {
			t.Errorf("%s frame with since %+v without epoch", f.Type, *f.Since)
		}
		if f.Limit < 0 {
			t.Errorf("%s frame with limit %d", f.Type, f.Limit)
		}
	case protocol.TypeSend:
		if !protocol.ValidUser(f.To) {
			t.Errorf("send frame to %q", f.To)
		}
	case protocol.TypeHello:
		for room, pos := range f.Resume {
			if err := protocol.CheckResume(room, pos); err != nil {
				var pe *protocol.Error
				if !errors.As(err, &pe) || (pe.Code != protocol.CodeBadRoom && pe.Code != protocol.CodeBadRequest) {
					t.Errorf("CheckResume(%q) = %v, want nil or a bad_room/bad_request *Error", room, err)
				}
			}
		}
	case protocol.TypeRefresh:
		if f.Token == "" {
			t.Errorf("refresh frame without token")
		}
	case protocol.TypePing:
	default:
		t.Fatalf("Decode accepted type %q", f.Type)
	}
	if f.Type == protocol.TypePublish || f.Type == protocol.TypeSend {
		if len(f.Data) == 0 {
			t.Errorf("%s frame without data", f.Type)
		}
		if len(f.Key) > protocol.MaxKeyLen {
			t.Errorf("%s frame with a key of %d bytes", f.Type, len(f.Key))
		}
	}
	if f.Data != nil {
		if !json.Valid(f.Data) || !utf8.Valid(f.Data) {
			t.Errorf("Data = %q, want valid UTF-8 JSON", f.Data)
		}
		if bytes.ContainsAny(f.Data, "\r\n") {
			t.Errorf("Data = %q holds a raw newline", f.Data)
		}
	}
}

// sameJSON reports whether a and b are both absent or decode to equal values.
func sameJSON(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	decode := func(r json.RawMessage) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(r))
		d.UseNumber()
		var v any
		return v, d.Decode(&v) == nil
	}
	va, okA := decode(a)
	vb, okB := decode(b)
	return okA && okB && reflect.DeepEqual(va, vb)
}

// FuzzAppendString checks that AppendString writes a JSON string that
// decodes to s with each invalid UTF-8 byte replaced by U+FFFD, exactly as
// encoding/json encodes it. (strings.ToValidUTF8(s, "\uFFFD") is not the
// oracle: it merges a run of invalid bytes into a single U+FFFD.)
func FuzzAppendString(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := protocol.AppendString(nil, s)
		checkJSONString(t, s, got)
		if utf8.ValidString(s) {
			var back string
			if err := json.Unmarshal(got, &back); err != nil || back != s {
				t.Errorf("AppendString(%q) = %q decodes to %q, %v", s, got, back, err)
			}
		}
	})
}

package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func TestDecode_Valid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want protocol.ClientFrame
	}{
		{
			name: "HelloWithToken",
			in:   `{"type":"hello","token":"eyJ.x.y","batch":true,"echo":true}`,
			want: protocol.ClientFrame{Type: protocol.TypeHello, Token: "eyJ.x.y", Batch: true, Echo: true},
		},
		{
			name: "HelloDevUser",
			in:   `{"type":"hello","user":"alice"}`,
			want: protocol.ClientFrame{Type: protocol.TypeHello, User: "alice"},
		},
		{
			name: "HelloWithResumeAndSession",
			in:   `{"type":"hello","token":"t","session":"s_1","resume":{"general":{"epoch":"e1","offset":57},"@alice":{"epoch":"e2","offset":0}}}`,
			want: protocol.ClientFrame{Type: protocol.TypeHello, Token: "t", Session: "s_1", Resume: map[string]protocol.Position{
				"general": {Epoch: "e1", Offset: 57},
				"@alice":  {Epoch: "e2", Offset: 0},
			}},
		},
		{
			name: "JoinWithSince",
			in:   `{"type":"join","id":1,"room":"general","since":{"epoch":"e1","offset":57}}`,
			want: protocol.ClientFrame{Type: protocol.TypeJoin, ID: raw(`1`), Room: "general", Since: &protocol.Position{Epoch: "e1", Offset: 57}},
		},
		{
			name: "JoinWithoutSince",
			in:   `{"type":"join","id":"j-1","room":"a.b:c-d_e"}`,
			want: protocol.ClientFrame{Type: protocol.TypeJoin, ID: raw(`"j-1"`), Room: "a.b:c-d_e"},
		},
		{
			name: "JoinOwnInbox",
			in:   `{"type":"join","id":1,"room":"@alice"}`,
			want: protocol.ClientFrame{Type: protocol.TypeJoin, ID: raw(`1`), Room: "@alice"},
		},
		{
			name: "Leave",
			in:   `{"type":"leave","id":2,"room":"general"}`,
			want: protocol.ClientFrame{Type: protocol.TypeLeave, ID: raw(`2`), Room: "general"},
		},
		{
			name: "PublishObjectWithKey",
			in:   `{"type":"publish","id":3,"room":"general","data":{"text":"hi","n":[1,2]},"key":"k-1"}`,
			want: protocol.ClientFrame{Type: protocol.TypePublish, ID: raw(`3`), Room: "general", Data: raw(`{"text":"hi","n":[1,2]}`), Key: "k-1"},
		},
		{
			name: "PublishString",
			in:   `{"type":"publish","id":3,"room":"general","data":"hello \"world\""}`,
			want: protocol.ClientFrame{Type: protocol.TypePublish, ID: raw(`3`), Room: "general", Data: raw(`"hello \"world\""`)},
		},
		{
			name: "PublishNumber",
			in:   `{"type":"publish","id":3,"room":"general","data":-12.5e3}`,
			want: protocol.ClientFrame{Type: protocol.TypePublish, ID: raw(`3`), Room: "general", Data: raw(`-12.5e3`)},
		},
		{
			name: "PublishNull",
			in:   `{"type":"publish","id":3,"room":"general","data":null}`,
			want: protocol.ClientFrame{Type: protocol.TypePublish, ID: raw(`3`), Room: "general", Data: raw(`null`)},
		},
		{
			name: "PublishKeyOf64Bytes",
			in:   `{"type":"publish","id":3,"room":"general","data":true,"key":"` + strings.Repeat("k", 64) + `"}`,
			want: protocol.ClientFrame{Type: protocol.TypePublish, ID: raw(`3`), Room: "general", Data: raw(`true`), Key: strings.Repeat("k", 64)},
		},
		{
			name: "PublishSpacesAroundDataAreDropped",
			in:   `{"type":"publish","room":"general","data":  [1, 2]  }`,
			want: protocol.ClientFrame{Type: protocol.TypePublish, Room: "general", Data: raw(`[1, 2]`)},
		},
		{
			name: "Send",
			in:   `{"type":"send","id":4,"to":"bob@example.com","data":{"x":1},"key":"dm-1"}`,
			want: protocol.ClientFrame{Type: protocol.TypeSend, ID: raw(`4`), To: "bob@example.com", Data: raw(`{"x":1}`), Key: "dm-1"},
		},
		{
			name: "Presence",
			in:   `{"type":"presence","id":5,"room":"general"}`,
			want: protocol.ClientFrame{Type: protocol.TypePresence, ID: raw(`5`), Room: "general"},
		},
		{
			name: "HistoryWithLimitAndSince",
			in:   `{"type":"history","id":6,"room":"general","limit":50,"since":{"epoch":"e1","offset":3}}`,
			want: protocol.ClientFrame{Type: protocol.TypeHistory, ID: raw(`6`), Room: "general", Limit: 50, Since: &protocol.Position{Epoch: "e1", Offset: 3}},
		},
		{
			name: "HistoryZeroLimit",
			in:   `{"type":"history","id":6,"room":"general","limit":0}`,
			want: protocol.ClientFrame{Type: protocol.TypeHistory, ID: raw(`6`), Room: "general"},
		},
		{
			name: "Refresh",
			in:   `{"type":"refresh","id":7,"token":"new.jwt.token"}`,
			want: protocol.ClientFrame{Type: protocol.TypeRefresh, ID: raw(`7`), Token: "new.jwt.token"},
		},
		{
			name: "Ping",
			in:   `{"type":"ping","id":8}`,
			want: protocol.ClientFrame{Type: protocol.TypePing, ID: raw(`8`)},
		},
		{
			name: "PingWithoutID",
			in:   `{"type":"ping"}`,
			want: protocol.ClientFrame{Type: protocol.TypePing},
		},
		{
			name: "NegativeAndFloatIDs",
			in:   `{"type":"ping","id":-1.5e2}`,
			want: protocol.ClientFrame{Type: protocol.TypePing, ID: raw(`-1.5e2`)},
		},
		{
			name: "IDOf128Bytes",
			in:   `{"type":"ping","id":"` + strings.Repeat("i", 126) + `"}`,
			want: protocol.ClientFrame{Type: protocol.TypePing, ID: raw(`"` + strings.Repeat("i", 126) + `"`)},
		},
		{
			name: "UnknownFieldsAreIgnored",
			in:   `{"type":"ping","id":8,"extra":{"deep":[1,2,3]},"v":2}`,
			want: protocol.ClientFrame{Type: protocol.TypePing, ID: raw(`8`)},
		},
		{
			name: "HelloWithABadResumeEntry",
			in:   `{"type":"hello","user":"u","resume":{"good":{"epoch":"e","offset":3},"bad":{"epoch":"e","offset":-1},"worse":7}}`,
			want: protocol.ClientFrame{Type: protocol.TypeHello, User: "u", Resume: map[string]protocol.Position{"good": {Epoch: "e", Offset: 3}},
				ResumeErrors: map[string]error{
					"bad":   &protocol.Error{Code: protocol.CodeBadRequest, Message: `resume["bad"] must be {"epoch": string, "offset": number of at least 0}`},
					"worse": &protocol.Error{Code: protocol.CodeBadRequest, Message: `resume["worse"] must be {"epoch": string, "offset": number of at least 0}`},
				}},
		},
		{
			name: "LeadingAndTrailingWhitespace",
			in:   " \r\n\t{\"type\":\"ping\"}\n",
			want: protocol.ClientFrame{Type: protocol.TypePing},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := protocol.Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode(%s) error = %v, want nil", tt.in, err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Decode(%s)\n got %+v\nwant %+v", tt.in, *got, tt.want)
			}
		})
	}
}

func TestDecode_Errors(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name   string
		in     string
		code   string
		wantID string // the ID the frame must carry for the error frame; "" for none
	}{
		// Not JSON, or not an object.
		{name: "Empty", in: ``, code: protocol.CodeBadRequest},
		{name: "MalformedJSON", in: `{"type":"ping","id":1`, code: protocol.CodeBadRequest},
		{name: "TrailingGarbage", in: `{"type":"ping","id":1} x`, code: protocol.CodeBadRequest},
		{name: "TwoObjects", in: `{"type":"ping"}{"type":"ping"}`, code: protocol.CodeBadRequest},
		{name: "Array", in: `[{"type":"ping"}]`, code: protocol.CodeBadRequest},
		{name: "String", in: `"ping"`, code: protocol.CodeBadRequest},
		{name: "Number", in: `42`, code: protocol.CodeBadRequest},
		{name: "Null", in: `null`, code: protocol.CodeBadRequest},

		// Type.
		{name: "MissingType", in: `{"id":1}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "EmptyType", in: `{"type":"","id":1}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "TypeAsNumber", in: `{"type":1,"id":1}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "UnknownType", in: `{"type":"subscribe","id":"x"}`, code: protocol.CodeUnknownType, wantID: `"x"`},
		{name: "ServerTypeFromClient", in: `{"type":"welcome","id":2}`, code: protocol.CodeUnknownType, wantID: `2`},
		{name: "TypeIsCaseSensitive", in: `{"type":"PING","id":2}`, code: protocol.CodeUnknownType, wantID: `2`},

		// Fields of the wrong type: the id is still echoed.
		{name: "RoomAsNumber", in: `{"type":"join","id":9,"room":5}`, code: protocol.CodeBadRequest, wantID: `9`},
		{name: "RoomAsNumberIDAfterIt", in: `{"type":"join","room":5,"id":"late"}`, code: protocol.CodeBadRequest, wantID: `"late"`},
		{name: "SinceAsString", in: `{"type":"join","id":9,"room":"a","since":"e1"}`, code: protocol.CodeBadRequest, wantID: `9`},
		{name: "NegativeOffset", in: `{"type":"join","id":9,"room":"a","since":{"epoch":"e","offset":-1}}`, code: protocol.CodeBadRequest, wantID: `9`},
		{name: "LimitAsString", in: `{"type":"history","id":9,"room":"a","limit":"10"}`, code: protocol.CodeBadRequest, wantID: `9`},
		{name: "LimitAsFloat", in: `{"type":"history","id":9,"room":"a","limit":1.5}`, code: protocol.CodeBadRequest, wantID: `9`},
		{name: "BatchAsString", in: `{"type":"hello","id":9,"batch":"yes"}`, code: protocol.CodeBadRequest, wantID: `9`},
		{name: "ResumeAsArray", in: `{"type":"hello","id":9,"resume":[]}`, code: protocol.CodeBadRequest, wantID: `9`},
		{name: "TokenAsNumber", in: `{"type":"refresh","id":9,"token":1}`, code: protocol.CodeBadRequest, wantID: `9`},

		// Ids.
		{name: "IDAsObject", in: `{"type":"ping","id":{"a":1}}`, code: protocol.CodeBadRequest},
		{name: "IDAsArray", in: `{"type":"ping","id":[1]}`, code: protocol.CodeBadRequest},
		{name: "IDAsBool", in: `{"type":"ping","id":true}`, code: protocol.CodeBadRequest},
		{name: "IDAsNull", in: `{"type":"ping","id":null}`, code: protocol.CodeBadRequest},
		{name: "IDTooLong", in: `{"type":"ping","id":"` + long(127) + `"}`, code: protocol.CodeBadRequest},
		{name: "IDTooLongNumber", in: `{"type":"ping","id":` + strings.Repeat("9", 129) + `}`, code: protocol.CodeBadRequest},
		{name: "IDAsObjectAndWrongField", in: `{"type":"join","id":{"a":1},"room":5}`, code: protocol.CodeBadRequest},
		{name: "IDTooLongAndWrongField", in: `{"type":"join","id":"` + long(200) + `","room":5}`, code: protocol.CodeBadRequest},
		{name: "IDInvalidUTF8", in: "{\"type\":\"ping\",\"id\":\"\xff\"}", code: protocol.CodeBadRequest},

		// Rooms.
		{name: "JoinWithoutRoom", in: `{"type":"join","id":1}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "JoinEmptyRoom", in: `{"type":"join","id":1,"room":""}`, code: protocol.CodeBadRoom, wantID: `1`},
		// Field names match exactly: "ROOM" is an unknown field, so the
		// join names no room.
		{name: "JoinRoomInCapitals", in: `{"type":"join","id":1,"ROOM":"general"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "JoinTypeInCapitals", in: `{"TYPE":"join","id":1,"room":"general"}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "PublishDataInCapitals", in: `{"type":"publish","id":1,"room":"a","Data":1}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "SinceEpochInCapitals", in: `{"type":"join","id":1,"room":"a","since":{"Epoch":"e","offset":1}}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "RoomGivenTwice", in: `{"type":"join","id":1,"room":"a","room":"b"}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "LeaveWithoutRoom", in: `{"type":"leave","id":1}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "PresenceWithoutRoom", in: `{"type":"presence","id":1}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "HistoryWithoutRoom", in: `{"type":"history","id":1}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "PublishWithoutRoom", in: `{"type":"publish","id":1,"data":1}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "RoomOnlySpaces", in: `{"type":"join","id":1,"room":"   "}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "RoomWithSpace", in: `{"type":"join","id":1,"room":"my room"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "RoomWithPaddingSpace", in: `{"type":"join","id":1,"room":" general"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "Room129", in: `{"type":"join","id":1,"room":"` + long(129) + `"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "RoomUnicode", in: `{"type":"join","id":1,"room":"café"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "RoomSlash", in: `{"type":"join","id":1,"room":"a/b"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "RoomNewlineEscape", in: `{"type":"join","id":1,"room":"a\nb"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "InboxAlone", in: `{"type":"join","id":1,"room":"@"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "InboxWithSpace", in: `{"type":"join","id":1,"room":"@bad user"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "InboxWithBraces", in: `{"type":"join","id":1,"room":"@{alice}"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "InboxUserTooLong", in: `{"type":"join","id":1,"room":"@` + long(128) + `"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "LeaveBadRoom", in: `{"type":"leave","id":1,"room":"a b"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "PublishBadRoom", in: `{"type":"publish","id":1,"room":"a b","data":1}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "PresenceBadRoom", in: `{"type":"presence","id":1,"room":"a*"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "HistoryBadRoom", in: `{"type":"history","id":1,"room":"a#b"}`, code: protocol.CodeBadRoom, wantID: `1`},
		{name: "SinceWithoutEpoch", in: `{"type":"join","id":1,"room":"a","since":{"offset":3}}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "HistorySinceWithoutEpoch", in: `{"type":"history","id":1,"room":"a","since":{}}`, code: protocol.CodeBadRequest, wantID: `1`},

		// Publish and send.
		{name: "PublishWithoutData", in: `{"type":"publish","id":1,"room":"a"}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "PublishKey65", in: `{"type":"publish","id":1,"room":"a","data":1,"key":"` + long(65) + `"}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "PublishDataInvalidUTF8", in: "{\"type\":\"publish\",\"id\":1,\"room\":\"a\",\"data\":\"\xff\xfe\"}", code: protocol.CodeBadRequest, wantID: `1`},
		{name: "SendWithoutTo", in: `{"type":"send","id":1,"data":1}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "SendToWithSpace", in: `{"type":"send","id":1,"to":"bad user","data":1}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "SendToWithBraces", in: `{"type":"send","id":1,"to":"{bob}","data":1}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "SendToTooLong", in: `{"type":"send","id":1,"to":"` + long(128) + `","data":1}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "SendWithoutData", in: `{"type":"send","id":1,"to":"bob"}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "SendKey65", in: `{"type":"send","id":1,"to":"bob","data":1,"key":"` + long(65) + `"}`, code: protocol.CodeBadRequest, wantID: `1`},

		// Others.
		{name: "RefreshWithoutToken", in: `{"type":"refresh","id":1}`, code: protocol.CodeBadRequest, wantID: `1`},
		{name: "NegativeLimit", in: `{"type":"history","id":1,"room":"a","limit":-1}`, code: protocol.CodeBadRequest, wantID: `1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := protocol.Decode([]byte(tt.in))
			if f == nil {
				t.Fatalf("Decode(%.80s) frame = nil, want the frame as far as read", tt.in)
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) {
				t.Fatalf("Decode(%.80s) error = %v (%T), want *protocol.Error", tt.in, err, err)
			}
			if pe.Code != tt.code {
				t.Errorf("Decode(%.80s) code = %q (%v), want %q", tt.in, pe.Code, pe.Message, tt.code)
			}
			if pe.Message == "" {
				t.Errorf("Decode(%.80s) message is empty", tt.in)
			}
			if string(f.ID) != tt.wantID {
				t.Errorf("Decode(%.80s) ID = %.80s, want %q", tt.in, f.ID, tt.wantID)
			}
		})
	}
}

// TestDecode_ErrorMessagesAreBounded checks that an abusive frame does not
// make an abusive error frame.
func TestDecode_ErrorMessagesAreBounded(t *testing.T) {
	t.Parallel()
	huge := strings.Repeat("x y", 10000)
	for _, in := range []string{
		`{"type":"` + huge + `"}`,
		`{"type":"join","room":"` + huge + `"}`,
		`{"type":"join","room":"@` + huge + `"}`,
		`{"type":"send","to":"` + huge + `","data":1}`,
		`{"type":"hello","resume":{"` + huge + `":{"offset":"x"}}}`,
	} {
		f, err := protocol.Decode([]byte(in))
		for _, rerr := range f.ResumeErrors {
			err = rerr // a bad resume entry costs its room, not the frame
		}
		if err == nil {
			t.Errorf("Decode(%.40s…) error = nil", in)
			continue
		}
		if n := len(err.Error()); n > 400 {
			t.Errorf("Decode(%.40s…) error is %d bytes long, want at most 400", in, n)
		}
	}
	err := protocol.CheckResume(huge, protocol.Position{Epoch: "e"})
	if err == nil {
		t.Errorf("CheckResume(huge room) = nil, want an error")
	} else if n := len(err.Error()); n > 400 {
		t.Errorf("CheckResume(huge room) error is %d bytes long, want at most 400", n)
	}
}

func TestDecode_DataIsCompacted(t *testing.T) {
	t.Parallel()
	data := "{\n\t\"text\" : \"tab\\there\\nline\",\r\n\t\"list\": [ 1,\n 2.50 ,\t{\"a\" :null} ],\n\"s\": \"  keep  spaces  \"\n}"
	in := `{"type":"publish","id":1,"room":"general","data":` + data + `}`
	f, err := protocol.Decode([]byte(in))
	if err != nil {
		t.Fatalf("Decode() error = %v", err)
	}
	if i := bytes.IndexAny(f.Data, "\r\n\t"); i >= 0 {
		t.Errorf("Data = %q still holds a raw %q at %d", f.Data, f.Data[i], i)
	}
	if !json.Valid(f.Data) {
		t.Fatalf("Data = %q is not valid JSON", f.Data)
	}
	if got, want := decodeJSON(t, f.Data), decodeJSON(t, []byte(data)); !reflect.DeepEqual(got, want) {
		t.Errorf("Data decodes to %#v, want %#v", got, want)
	}
	if want := `{"text":"tab\there\nline","list":[1,2.50,{"a":null}],"s":"  keep  spaces  "}`; string(f.Data) != want {
		t.Errorf("Data = %s, want %s", f.Data, want)
	}
}

// TestDecode_DataOwnsItsBytes checks that the decoded frame does not alias the
// input buffer, which a WebSocket library may reuse for the next frame.
func TestDecode_DataOwnsItsBytes(t *testing.T) {
	t.Parallel()
	in := []byte(`{"type":"publish","id":1,"room":"general","data":{"a":1}}`)
	f, err := protocol.Decode(in)
	if err != nil {
		t.Fatalf("Decode() error = %v", err)
	}
	for i := range in {
		in[i] = 'X'
	}
	if string(f.Data) != `{"a":1}` || string(f.ID) != `1` || f.Room != "general" {
		t.Errorf("after overwriting the input, frame = %+v", f)
	}
}

// decodeJSON decodes b keeping numbers as written, for semantic comparison.
func decodeJSON(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	if d.More() {
		t.Fatalf("decode %q: more than one value", b)
	}
	return v
}

// Bad hello.resume entries do not fail the hello: each is refused on its own
// with CheckResume, as a join of that room would be.
func TestCheckResume(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		code string // empty: every entry is accepted
	}{
		{name: "Good", in: `{"type":"hello","resume":{"general":{"epoch":"e","offset":1},"@alice":{"epoch":"e2","offset":0}}}`},
		{name: "BadRoom", in: `{"type":"hello","id":1,"resume":{"bad room":{"epoch":"e","offset":1}}}`, code: protocol.CodeBadRoom},
		{name: "BadInbox", in: `{"type":"hello","resume":{"@":{"epoch":"e","offset":1}}}`, code: protocol.CodeBadRoom},
		{name: "WithoutEpoch", in: `{"type":"hello","resume":{"general":{"offset":1}}}`, code: protocol.CodeBadRequest},
		{name: "NullPosition", in: `{"type":"hello","resume":{"general":null}}`, code: protocol.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := protocol.Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode(%s) = %v, want a hello", tt.in, err)
			}
			for room, pos := range f.Resume {
				err := protocol.CheckResume(room, pos)
				var pe *protocol.Error
				switch {
				case tt.code == "" && err != nil:
					t.Errorf("CheckResume(%q, %+v) = %v, want nil", room, pos, err)
				case tt.code != "" && (!errors.As(err, &pe) || pe.Code != tt.code):
					t.Errorf("CheckResume(%q, %+v) = %v, want code %s", room, pos, err, tt.code)
				}
			}
		})
	}
}

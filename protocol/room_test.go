package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
)

func TestValidRoom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		room string
		want bool
	}{
		{"OneChar", "a", true},
		{"Lower", "general", true},
		{"Upper", "GENERAL", true},
		{"Digits", "0123456789", true},
		{"Underscore", "a_b", true},
		{"Dot", "a.b", true},
		{"Colon", "a:b", true},
		{"Dash", "a-b", true},
		{"OnlyPunctuation", "_.:-", true},
		{"Mixed", "org:42.team-a_chat", true},
		{"Exactly128", strings.Repeat("r", 128), true},
		{"Empty", "", false},
		{"129", strings.Repeat("r", 129), false},
		{"Space", "a b", false},
		{"OnlySpace", " ", false},
		{"LeadingSpace", " a", false},
		{"TrailingNewline", "a\n", false},
		{"Tab", "a\tb", false},
		{"NUL", "a\x00", false},
		{"Slash", "a/b", false},
		{"Backslash", `a\b`, false},
		{"At", "a@b", false},
		{"Inbox", "@alice", false},
		{"Star", "a*", false},
		{"Question", "a?", false},
		{"Hash", "a#b", false},
		{"Comma", "a,b", false},
		{"Braces", "{a}", false},
		{"Quote", `a"b`, false},
		{"Plus", "a+b", false},
		{"Tilde", "a~b", false},
		{"DEL", "a\x7f", false},
		{"Unicode", "café", false},
		{"Emoji", "chat🙂", false},
		{"InvalidUTF8", "a\xff", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := protocol.ValidRoom(tt.room); got != tt.want {
				t.Errorf("ValidRoom(%q) = %v, want %v", tt.room, got, tt.want)
			}
		})
	}
}

// TestValidRoom_EveryASCIIByte pins the character set of PROTOCOL.md:
// [A-Za-z0-9_.:-] and nothing else.
func TestValidRoom_EveryASCIIByte(t *testing.T) {
	t.Parallel()
	const allowed = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(allowed, byte(c)) >= 0
		if got := protocol.ValidRoom("x" + string([]byte{byte(c)})); got != want {
			t.Errorf("ValidRoom(%q) = %v, want %v", "x"+string([]byte{byte(c)}), got, want)
		}
	}
}

func TestValidUser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		user string
		want bool
	}{
		{"Simple", "alice", true},
		{"OneChar", "a", true},
		{"Email", "alice@example.com", true},
		{"Auth0", "auth0|123", true},
		{"PunctuationMix", `!#$%&'()*+,-./:;<=>?@[\]^_` + "`|~\"", true},
		{"Exactly127", strings.Repeat("u", 127), true},
		{"Empty", "", false},
		{"128", strings.Repeat("u", 128), false},
		{"Space", "bad user", false},
		{"OnlySpace", " ", false},
		{"OpenBrace", "a{", false},
		{"CloseBrace", "a}", false},
		{"HashTag", "{alice}", false},
		{"Tab", "a\tb", false},
		{"Newline", "a\n", false},
		{"NUL", "\x00", false},
		{"DEL", "a\x7f", false},
		{"Unicode", "zoë", false},
		{"InvalidUTF8", "\xff", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := protocol.ValidUser(tt.user); got != tt.want {
				t.Errorf("ValidUser(%q) = %v, want %v", tt.user, got, tt.want)
			}
		})
	}
}

// TestValidUser_EveryASCIIByte: printable ASCII other than space and braces.
func TestValidUser_EveryASCIIByte(t *testing.T) {
	t.Parallel()
	for c := 0; c < 256; c++ {
		want := c > ' ' && c <= '~' && c != '{' && c != '}'
		if got := protocol.ValidUser(string([]byte{byte(c)})); got != want {
			t.Errorf("ValidUser(%q) = %v, want %v", string([]byte{byte(c)}), got, want)
		}
	}
}

func TestParseRoom(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		room   string
		wantOK bool
	}{
		{"Room", "general", true},
		{"Room128", strings.Repeat("r", 128), true},
		{"Inbox", "@alice", true},
		{"InboxEmail", "@alice@example.com", true},
		{"InboxAuth0", "@auth0|123", true},
		{"InboxOfAt", "@@", true},
		{"Inbox128", "@" + strings.Repeat("u", 127), true},
		{"Empty", "", false},
		{"Room129", strings.Repeat("r", 129), false},
		{"Space", "my room", false},
		{"Unicode", "café", false},
		{"AtAlone", "@", false},
		{"InboxWithSpace", "@bad user", false},
		{"InboxWithBraces", "@{alice}", false},
		{"InboxWithOpenBrace", "@alice{", false},
		{"Inbox129", "@" + strings.Repeat("u", 128), false},
		{"InboxUnicode", "@zoë", false},
		{"AtInside", "a@b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := protocol.ParseRoom(tt.room)
			if tt.wantOK {
				if err != nil {
					t.Errorf("ParseRoom(%q) = %v, want nil", tt.room, err)
				}
				return
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) {
				t.Fatalf("ParseRoom(%q) = %v (%T), want *protocol.Error", tt.room, err, err)
			}
			if pe.Code != protocol.CodeBadRoom {
				t.Errorf("ParseRoom(%q) code = %q, want %q", tt.room, pe.Code, protocol.CodeBadRoom)
			}
			if pe.Message == "" {
				t.Errorf("ParseRoom(%q) message is empty", tt.room)
			}
		})
	}
}

func TestParseRoom_LongNameIsClipped(t *testing.T) {
	t.Parallel()
	for _, name := range []string{strings.Repeat("r", 100000), "@" + strings.Repeat("u u", 100000)} {
		err := protocol.ParseRoom(name)
		if err == nil {
			t.Fatalf("ParseRoom(%d bytes) = nil", len(name))
		}
		if n := len(err.Error()); n > 400 {
			t.Errorf("ParseRoom(%d bytes) error is %d bytes long, want at most 400", len(name), n)
		}
	}
}

func TestInbox(t *testing.T) {
	t.Parallel()
	tests := []struct {
		user string
		want string
	}{
		{"alice", "@alice"},
		{"alice@example.com", "@alice@example.com"},
		{"", "@"},
	}
	for _, tt := range tests {
		if got := protocol.Inbox(tt.user); got != tt.want {
			t.Errorf("Inbox(%q) = %q, want %q", tt.user, got, tt.want)
		}
	}
}

func TestInboxUser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		room     string
		wantUser string
		wantOK   bool
	}{
		{"Inbox", "@alice", "alice", true},
		{"InboxEmail", "@a@b.c", "a@b.c", true},
		{"AtAlone", "@", "", true},
		{"Room", "general", "", false},
		{"AtInside", "a@b", "", false},
		{"Empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			user, ok := protocol.InboxUser(tt.room)
			if user != tt.wantUser || ok != tt.wantOK {
				t.Errorf("InboxUser(%q) = %q, %v, want %q, %v", tt.room, user, ok, tt.wantUser, tt.wantOK)
			}
		})
	}
}

// TestInbox_RoundTrip: every valid user has an inbox that ParseRoom accepts,
// that is at most MaxRoomLen bytes, and that maps back to the user.
func TestInbox_RoundTrip(t *testing.T) {
	t.Parallel()
	for _, user := range []string{"a", "alice", "auth0|123", strings.Repeat("u", protocol.MaxUserLen)} {
		room := protocol.Inbox(user)
		if len(room) > protocol.MaxRoomLen {
			t.Errorf("Inbox(%q) is %d bytes, want at most %d", user, len(room), protocol.MaxRoomLen)
		}
		if err := protocol.ParseRoom(room); err != nil {
			t.Errorf("ParseRoom(Inbox(%q)) = %v", user, err)
		}
		if got, ok := protocol.InboxUser(room); !ok || got != user {
			t.Errorf("InboxUser(Inbox(%q)) = %q, %v", user, got, ok)
		}
	}
}

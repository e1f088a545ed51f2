package auth

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		room    string
		want    bool
	}{
		{"LiteralEqual", "general", "general", true},
		{"LiteralDiffers", "general", "generals", false},
		{"LiteralPrefixOnly", "general", "gen", false},
		{"LiteralCaseSensitive", "General", "general", false},
		{"EmptyBoth", "", "", true},
		{"EmptyPatternNonEmptyRoom", "", "a", false},
		{"StarMatchesEmpty", "*", "", true},
		{"StarMatchesAnything", "*", "chat:a.b-c_d", true},
		{"PrefixStarMatchesSuffix", "chat:*", "chat:a", true},
		{"PrefixStarMatchesEmptySuffix", "chat:*", "chat:", true},
		{"PrefixStarCrossesSeparators", "chat:*", "chat:team.a:b", true},
		{"PrefixStarNeedsPrefix", "chat:*", "chat", false},
		{"PrefixStarOtherPrefix", "chat:*", "chit:a", false},
		{"StarSuffix", "*:admin", "ops:admin", true},
		{"StarSuffixEmptyPrefix", "*:admin", ":admin", true},
		{"StarSuffixNested", "*:admin", "a:b:admin", true},
		{"StarSuffixMissing", "*:admin", "ops:admins", false},
		{"StarSuffixNotAdmin", "*:admin", "ops:user", false},
		{"QuestionOne", "a?c", "abc", true},
		{"QuestionSeparator", "a?c", "a:c", true},
		{"QuestionNotZero", "a?c", "ac", false},
		{"QuestionNotTwo", "a?c", "abbc", false},
		{"QuestionsOnly", "???", "abc", true},
		{"QuestionsTooShort", "???", "ab", false},
		{"StarInMiddle", "a*z", "abcz", true},
		{"StarInMiddleEmpty", "a*z", "az", true},
		{"StarInMiddleWrongEnd", "a*z", "abcy", false},
		{"TwoStars", "a*b*c", "aXXbYYc", true},
		{"TwoStarsAdjacentParts", "a*b*c", "abc", true},
		{"TwoStarsMissingPart", "a*b*c", "aXXc", false},
		{"TwoStarsBacktrack", "*a*b", "xaxaxb", true},
		{"BacktrackLastStar", "*ab", "aab", true},
		{"BacktrackRepeated", "*aab", "aaaab", true},
		{"BacktrackFails", "*aab", "aaaba", false},
		{"StarsBothEnds", "*room*", "my-room-1", true},
		{"StarsBothEndsExact", "*room*", "room", true},
		{"StarsBothEndsAbsent", "*room*", "roo", false},
		{"ConsecutiveStars", "a**b", "ab", true},
		{"ConsecutiveStarsLong", "a***b", "a-x-b", true},
		{"StarQuestion", "*?", "", false},
		{"StarQuestionOne", "*?", "a", true},
		{"QuestionStar", "?*", "abc", true},
		{"StarThenQuestionSuffix", "chat:*.?", "chat:a.b", true},
		{"StarThenQuestionSuffixTooLong", "chat:*.?", "chat:a.bc", false},
		{"StarThenQuestionSuffixDotInStar", "chat:*.?", "chat:a.b.c", true},
		{"StarThenQuestionSuffixNoDot", "chat:*.?", "chat:ab", false},
		{"TrailingLiteralAfterStar", "a*", "b", false},
		{"PatternLongerThanRoom", "abc*", "ab", false},
		{"DotIsLiteral", "a.c", "abc", false},
		{"DashRange", "room-?", "room-7", true},
		{"NoBracketClasses", "[ab]", "a", false},
		{"BracketLiteral", "[ab]", "[ab]", true},
		{"SlashNotSpecial", "a*", "a/b", true},
		{"InboxLiteral", "@alice", "@alice", true},
		{"StarOverInbox", "*", "@alice", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Match(tt.pattern, tt.room); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.room, got, tt.want)
			}
		})
	}
}

func TestMatch_Pathological(t *testing.T) {
	t.Parallel()
	// Exponential matchers take ages here; ours is quadratic at worst.
	pattern := strings.Repeat("a*", 60) + "b"
	room := strings.Repeat("a", 128)
	if Match(pattern, room) {
		t.Errorf("Match(%q, %q) = true, want false", pattern, room)
	}
	if !Match(pattern, room+"b") {
		t.Errorf("Match(%q, %q) = false, want true", pattern, room+"b")
	}
}

func TestValidPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern string
		ok      bool
	}{
		{"Literal", "general", true},
		{"AllRoomChars", "Az09_.:-", true},
		{"Star", "*", true},
		{"Question", "?", true},
		{"Mixed", "chat:*:?-x", true},
		{"MaxLen", strings.Repeat("*", MaxPatternLen), true},
		{"Empty", "", false},
		{"TooLong", strings.Repeat("a", MaxPatternLen+1), false},
		{"Inbox", "@alice", false},
		{"InboxWildcard", "@*", false},
		{"Space", "a b", false},
		{"Slash", "a/b", false},
		{"Bracket", "[ab]", false},
		{"Brace", "{a}", false},
		{"NonASCII", "caf\u00e9", false},
		{"NUL", "a\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidPattern(tt.pattern)
			if tt.ok && err != nil {
				t.Errorf("ValidPattern(%q) = %v, want nil", tt.pattern, err)
			}
			if !tt.ok && !errors.Is(err, ErrBadPattern) {
				t.Errorf("ValidPattern(%q) = %v, want ErrBadPattern", tt.pattern, err)
			}
		})
	}
}

// FuzzMatch checks Match against a regular expression built from the same
// pattern.
func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"chat:*", "chat:a"}, {"*:admin", "x:admin"}, {"a?c", "abc"},
		{"*a*b", "xaxaxb"}, {"*aab", "aaaab"}, {"a**b", "ab"}, {"", ""},
		{"*?*", "q"}, {"?", ""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, room string) {
		if len(pattern) > MaxPatternLen || len(room) > 2*MaxPatternLen {
			t.Skip()
		}
		var re strings.Builder
		re.WriteString(`^`)
		for i := 0; i < len(pattern); i++ {
			switch pattern[i] {
			case '*':
				re.WriteString(`[\x00-\xff]*`)
			case '?':
				re.WriteString(`[\x00-\xff]`)
			default:
				re.WriteString(regexp.QuoteMeta(string(rune(pattern[i]))))
			}
		}
		re.WriteString(`$`)
		// Compare on Latin-1 runes so that regexp sees one rune per byte,
		// as Match does.
		want := regexp.MustCompile(re.String()).MatchString(latin1(room))
		if got := Match(pattern, room); got != want {
			t.Errorf("Match(%q, %q) = %v, regexp %q says %v", pattern, room, got, re.String(), want)
		}
	})
}

// latin1 maps each byte of s to the rune of the same value.
func latin1(s string) string {
	r := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		r[i] = rune(s[i])
	}
	return string(r)
}

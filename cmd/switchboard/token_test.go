package main

import (
	"bytes"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/auth"
)

const testSecret = "0123456789abcdef-token-test"

// verifyToken checks that out is one line holding a token valid for secret
// and returns its claims.
func verifyToken(t *testing.T, out, secret string) auth.Claims {
	t.Helper()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("token output = %q, want one line", out)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Secret: []byte(secret), RequireExp: true})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	c, err := v.Verify(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("Verify(%q) = %v", out, err)
	}
	return c
}

func TestToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		ttl        time.Duration
		rooms      []string
		hasRooms   bool
		publish    []string
		hasPublish bool
	}{
		{
			name:  "RoomsAndTTL",
			args:  []string{"--user", "alice", "--jwt-secret", testSecret, "--rooms", "chat:*,lobby", "--ttl", "2m"},
			ttl:   2 * time.Minute,
			rooms: []string{"chat:*", "lobby"}, hasRooms: true,
		},
		{
			name:  "Publish",
			args:  []string{"--user", "alice", "--jwt-secret", testSecret, "--rooms", "chat:*,lobby", "--publish", "chat:*", "--ttl", "2m"},
			ttl:   2 * time.Minute,
			rooms: []string{"chat:*", "lobby"}, hasRooms: true,
			publish: []string{"chat:*"}, hasPublish: true,
		},
		{
			name: "DefaultsToEveryRoomForAnHour",
			args: []string{"--user", "alice", "--jwt-secret", testSecret},
			ttl:  time.Hour,
		},
		{
			name: "EmptyRoomsMeansNoRoom",
			args: []string{"--user", "alice", "--jwt-secret", testSecret, "--rooms", ""},
			ttl:  time.Hour, hasRooms: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"token"}, tt.args...)
			start := time.Now()
			code, stdout, stderr := runCmd(t, args...)
			if code != 0 || stderr != "" {
				t.Fatalf("run(%q) = %d, stderr %q, want 0", args, code, stderr)
			}
			c := verifyToken(t, stdout, testSecret)
			if c.User != "alice" {
				t.Errorf("User = %q, want alice", c.User)
			}
			if c.HasRooms != tt.hasRooms || len(c.Rooms) != len(tt.rooms) || len(tt.rooms) > 0 && !reflect.DeepEqual(c.Rooms, tt.rooms) {
				t.Errorf("Rooms = %q (HasRooms %v), want %q (%v)", c.Rooms, c.HasRooms, tt.rooms, tt.hasRooms)
			}
			if c.HasPublish != tt.hasPublish || len(c.Publish) != len(tt.publish) || len(tt.publish) > 0 && !reflect.DeepEqual(c.Publish, tt.publish) {
				t.Errorf("Publish = %q (HasPublish %v), want %q (%v)", c.Publish, c.HasPublish, tt.publish, tt.hasPublish)
			}
			// exp is truncated to the second.
			lo, hi := start.Add(tt.ttl).Add(-time.Second), time.Now().Add(tt.ttl).Add(time.Second)
			if c.Expires.Before(lo) || c.Expires.After(hi) {
				t.Errorf("Expires = %v, want about now+%v (%v..%v)", c.Expires, tt.ttl, lo, hi)
			}
		})
	}
}

func TestToken_SecretFromEnv(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	env := fakeEnv{"SWITCHBOARD_JWT_SECRET": testSecret}
	if err := token([]string{"--user", "bob"}, env.lookup, &out); err != nil {
		t.Fatalf("token(--user bob) with SWITCHBOARD_JWT_SECRET = %v", err)
	}
	if c := verifyToken(t, out.String(), testSecret); c.User != "bob" {
		t.Errorf("User = %q, want bob", c.User)
	}
}

func TestToken_CommandLineSecretWinsOverEnv(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	env := fakeEnv{"SWITCHBOARD_JWT_SECRET": "another-secret-from-env"}
	if err := token([]string{"--user", "bob", "--jwt-secret", testSecret}, env.lookup, &out); err != nil {
		t.Fatalf("token = %v", err)
	}
	verifyToken(t, out.String(), testSecret)
}

func TestToken_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  fakeEnv
		flag string
	}{
		{"MissingUser", []string{"--jwt-secret", testSecret}, nil, "user"},
		{"MissingSecret", []string{"--user", "alice"}, nil, "jwt-secret"},
		{"EmptySecretInEnv", []string{"--user", "alice"}, fakeEnv{"SWITCHBOARD_JWT_SECRET": ""}, "jwt-secret"},
		{"UserWithSpace", []string{"--user", "al ice", "--jwt-secret", testSecret}, nil, "user"},
		{"UserWithBraces", []string{"--user", "{alice}", "--jwt-secret", testSecret}, nil, "user"},
		{"UserTooLong", []string{"--user", strings.Repeat("a", 128), "--jwt-secret", testSecret}, nil, "user"},
		{"TTLZero", []string{"--user", "alice", "--jwt-secret", testSecret, "--ttl", "0s"}, nil, "ttl"},
		{"TTLMalformed", []string{"--user", "alice", "--jwt-secret", testSecret, "--ttl", "xx"}, nil, "ttl"},
		{"TTLFromEnvMalformed", []string{"--user", "alice", "--jwt-secret", testSecret}, fakeEnv{"SWITCHBOARD_TTL": "xx"}, "ttl"},
		{"UserGivenTwice", []string{"--user", "a", "--user", "b", "--jwt-secret", testSecret}, nil, "user"},
		{"UnknownFlag", []string{"--user", "alice", "--jwt-secret", testSecret, "--room", "x"}, nil, "room"},
		{"BadRoomPattern", []string{"--user", "alice", "--jwt-secret", testSecret, "--rooms", "chat room"}, nil, "rooms"},
		{"BadPublishPattern", []string{"--user", "alice", "--jwt-secret", testSecret, "--publish", "@bob"}, nil, "publish"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			err := token(tt.args, tt.env.lookup, &out)
			wantFlagErr(t, err, tt.flag)
			if out.Len() != 0 {
				t.Errorf("token(%q) printed %q, want nothing", tt.args, out.String())
			}
		})
	}
}

func TestRun_TokenErrors(t *testing.T) {
	t.Parallel()
	if _, ok := os.LookupEnv("SWITCHBOARD_JWT_SECRET"); ok {
		t.Skip("SWITCHBOARD_JWT_SECRET is set in this environment")
	}
	tests := []struct {
		name string
		args []string
		flag string
	}{
		{"MissingUser", []string{"--jwt-secret", testSecret}, "user"},
		{"MissingSecret", []string{"--user", "alice"}, "jwt-secret"},
		{"InvalidUser", []string{"--user", "al ice", "--jwt-secret", testSecret}, "user"},
		{"TTLMalformed", []string{"--user", "alice", "--jwt-secret", testSecret, "--ttl", "xx"}, "ttl"},
		{"BadRoomPattern", []string{"--user", "alice", "--jwt-secret", testSecret, "--rooms", "chat room"}, "rooms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"token"}, tt.args...)
			code, stdout, stderr := runCmd(t, args...)
			wantFlagError(t, args, code, stdout, stderr, tt.flag)
		})
	}
}

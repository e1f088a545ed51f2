package protocol_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
)

func TestCloseCodeReconnects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		code int
		want bool
	}{
		{"Normal", protocol.CloseNormal, false},
		{"GoingAway", 1001, true},
		{"Abnormal", 1006, true},
		{"Policy", protocol.ClosePolicy, false},
		{"TooLarge", protocol.CloseTooLarge, false},
		{"Restarting", protocol.CloseRestarting, true},
		{"Unauthorized", protocol.CloseUnauthorized, true},
		{"Disconnected", protocol.CloseDisconnected, false},
		{"SlowConsumer", protocol.CloseSlowConsumer, true},
		{"RateLimited", protocol.CloseRateLimited, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := protocol.CloseCodeReconnects(tt.code); got != tt.want {
				t.Errorf("CloseCodeReconnects(%d) = %v, want %v", tt.code, got, tt.want)
			}
		})
	}
}

func TestErrorf(t *testing.T) {
	t.Parallel()
	err := protocol.Errorf(protocol.CodeTooLarge, "frame of %d bytes", 70000)
	if err.Code != protocol.CodeTooLarge || err.Message != "frame of 70000 bytes" {
		t.Errorf("Errorf() = %+v", err)
	}
	if got, want := err.Error(), "too_large: frame of 70000 bytes"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	// Without arguments the format is still a format: vet wants "%%".
	if got := protocol.Errorf(protocol.CodeUnavailable, "queue 100%% full"); got.Message != "queue 100% full" {
		t.Errorf(`Errorf("queue 100%%%% full") message = %q, want "queue 100%% full"`, got.Message)
	}
	if got := protocol.Errorf(protocol.CodeUnavailable, "broker down"); got.Message != "broker down" {
		t.Errorf(`Errorf("broker down") message = %q`, got.Message)
	}

	wrapped := fmt.Errorf("publish to %q: %w", "general", err)
	var pe *protocol.Error
	if !errors.As(wrapped, &pe) || pe != err {
		t.Errorf("errors.As(wrapped) = %v, want the *Error", pe)
	}
}

package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	closed := func(code int) error { return &CloseError{Code: code, Reason: "r"} }
	after := 750 * time.Millisecond
	tests := []struct {
		name           string
		out            outcome
		everWelcomed   bool
		reconnectOn404 bool
		stop           bool
		delay          delayKind
		wait           time.Duration
	}{
		{name: "Normal", out: outcome{welcomed: true, err: closed(1000)}, everWelcomed: true, stop: true},
		{name: "Policy", out: outcome{welcomed: true, err: closed(1008)}, everWelcomed: true, stop: true},
		{name: "TooLarge", out: outcome{welcomed: true, err: closed(1009)}, everWelcomed: true, stop: true},
		{name: "Disconnected", out: outcome{welcomed: true, err: closed(4004)}, everWelcomed: true, stop: true},
		{name: "DisconnectedReconnects", out: outcome{welcomed: true, err: closed(4004)}, everWelcomed: true, reconnectOn404: true, delay: delayBackoff},
		{name: "DrainWaitsReconnectAfter", out: outcome{welcomed: true, err: closed(4001), reconnectAfter: &after}, everWelcomed: true, delay: delayExact, wait: after},
		{name: "DrainWithoutReconnectFrame", out: outcome{welcomed: true, err: closed(4001)}, everWelcomed: true, delay: delayBackoff},
		{name: "ExpiredToken", out: outcome{welcomed: true, err: closed(4003)}, everWelcomed: true, delay: delayBackoff},
		{name: "RefusedTokenLater", out: outcome{err: closed(4003)}, everWelcomed: true, delay: delayBackoff},
		{name: "RefusedTokenAtDial", out: outcome{err: closed(4003)}, stop: true},
		{name: "SlowConsumer", out: outcome{welcomed: true, err: closed(4008)}, everWelcomed: true, delay: delayBackoff},
		{name: "RateLimited", out: outcome{welcomed: true, err: closed(4029)}, everWelcomed: true, delay: delayLong},
		{name: "GoingAway", out: outcome{welcomed: true, err: closed(1001)}, everWelcomed: true, delay: delayBackoff},
		{name: "TryAgainLater", out: outcome{err: closed(1013)}, delay: delayBackoff},
		{name: "Abnormal", out: outcome{welcomed: true, err: closed(1006)}, everWelcomed: true, delay: delayBackoff},
		{name: "NetworkError", out: outcome{err: fmt.Errorf("dial: %w", io.ErrUnexpectedEOF)}, delay: delayBackoff},
		{name: "DeadConnection", out: outcome{welcomed: true, err: errDeadConnection}, everWelcomed: true, delay: delayBackoff},
		{name: "HandshakeTimeout", out: outcome{err: errHandshakeTimeout}, delay: delayBackoff},
		{name: "TokenErrorAtDial", out: outcome{err: &TokenError{Err: io.EOF}}, stop: true},
		{name: "TokenErrorLater", out: outcome{err: &TokenError{Err: io.EOF}}, everWelcomed: true, delay: delayBackoff},
		{name: "UpgradeRefusedAtDial", out: outcome{err: &UpgradeError{StatusCode: 401}}, stop: true},
		{name: "UpgradeRefusedLater", out: outcome{err: &UpgradeError{StatusCode: 404}}, everWelcomed: true, stop: true},
		{name: "NoUpgradeAtDial", out: outcome{err: &UpgradeError{StatusCode: 200}}, stop: true},
		{name: "NoUpgradeLater", out: outcome{err: &UpgradeError{StatusCode: 200}}, everWelcomed: true, stop: true},
		{name: "Redirect", out: outcome{err: &UpgradeError{StatusCode: 302}}, stop: true},
		{name: "BadHandshake101", out: outcome{err: &UpgradeError{StatusCode: 101}}, stop: true},
		{name: "Draining503AtDial", out: outcome{err: &UpgradeError{StatusCode: 503}}, delay: delayBackoff},
		{name: "Draining503Later", out: outcome{err: &UpgradeError{StatusCode: 503}}, everWelcomed: true, delay: delayBackoff},
		{name: "RetryAfterIsTheFloor", out: outcome{err: &UpgradeError{StatusCode: 503, RetryAfter: 3 * time.Second}}, delay: delayBackoff, wait: 3 * time.Second},
		{name: "BadGateway", out: outcome{err: &UpgradeError{StatusCode: 502}}, delay: delayBackoff},
		{name: "InternalServerError", out: outcome{err: &UpgradeError{StatusCode: 500}}, delay: delayBackoff},
		{name: "RequestTimeout", out: outcome{err: &UpgradeError{StatusCode: 408}}, delay: delayBackoff},
		{name: "TooManyRequests", out: outcome{err: &UpgradeError{StatusCode: 429, RetryAfter: time.Second}}, delay: delayBackoff, wait: time.Second},
		{name: "UntrustedCertificateAtDial", out: outcome{err: fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: io.EOF})}, stop: true},
		{name: "UntrustedCertificateLater", out: outcome{err: fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: io.EOF})}, everWelcomed: true, delay: delayBackoff},
		{name: "NotTLSAtDial", out: outcome{err: fmt.Errorf("dial: %w", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"})}, stop: true},
		{name: "UserChanged", out: outcome{err: fmt.Errorf("%w: x", errUserChanged)}, everWelcomed: true, stop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := decide(tt.out, tt.everWelcomed, tt.reconnectOn404)
			if (d.stop != nil) != tt.stop {
				t.Fatalf("decide(%v) stop = %v, want stop %v", tt.out.err, d.stop, tt.stop)
			}
			if tt.stop {
				if !errors.Is(d.stop, tt.out.err) {
					t.Errorf("stop error %v does not wrap %v", d.stop, tt.out.err)
				}
				return
			}
			if d.delay != tt.delay || d.wait != tt.wait {
				t.Errorf("decide(%v) = delay kind %d wait %v, want %d %v", tt.out.err, d.delay, d.wait, tt.delay, tt.wait)
			}
		})
	}
}

// The close codes that stop the client agree with the protocol package.
func TestDecide_AgreesWithProtocol(t *testing.T) {
	t.Parallel()
	for _, code := range []int{1000, 1001, 1006, 1008, 1009, 1011, 1013, 4001, 4003, 4004, 4008, 4029} {
		d := decide(outcome{welcomed: true, err: &CloseError{Code: code}}, true, false)
		if got, want := d.stop == nil, protocol.CloseCodeReconnects(code); got != want {
			t.Errorf("code %d: client reconnects %v, protocol.CloseCodeReconnects %v", code, got, want)
		}
	}
}

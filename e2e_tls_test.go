package switchboard_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestTLS_Reload: an instance serving wss:// itself reads its certificate
// and key again on ReloadTLS (SIGHUP in `switchboard serve`): new
// connections get the new pair, sessions already open go on, and a broken
// pair on disk keeps the one in use.
func TestTLS_Reload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certA, keyA, poolA, err := wstest.WriteCertificate(dir, "a")
	if err != nil {
		t.Fatal(err)
	}
	srv := wstest.Start(t, switchboard.Config{TLSCertFile: certA, TLSKeyFile: keyA})
	addr := srv.URL[len("https://"):]
	commonName := func(pool *x509.CertPool) string {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := commonName(poolA); got != "a" {
		t.Fatalf("serving %q, want a", got)
	}
	d := wstest.Dialer()
	d.TLSClientConfig = &tls.Config{RootCAs: poolA}
	alice := wstest.DialWith(t, d, srv.WS, wstest.Hello{User: "alice"})
	alice.Join("general")

	// The pair is replaced on disk, as a certificate manager would.
	certB, keyB, poolB, err := wstest.WriteCertificate(t.TempDir(), "b")
	if err != nil {
		t.Fatal(err)
	}
	replace := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	replace(certB, certA)
	replace(keyB, keyA)
	if err := srv.ReloadTLS(); err != nil {
		t.Fatalf("ReloadTLS: %v", err)
	}
	if got := commonName(poolB); got != "b" {
		t.Fatalf("after the reload serving %q, want b", got)
	}
	// The session opened before the reload goes on.
	if f := alice.Publish("general", 1); f.Type != protocol.TypeAck {
		t.Fatalf("publish after the reload: %s", wstest.Describe(f))
	}

	// A broken pair is refused and the current one stays.
	if err := os.WriteFile(filepath.Join(dir, "a.key"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.ReloadTLS(); err == nil {
		t.Fatal("ReloadTLS of a broken key = nil, want an error")
	}
	if got := commonName(poolB); got != "b" {
		t.Fatalf("after a failed reload serving %q, want b still", got)
	}
}

// TestTLS_RefusesHalfAPair: a certificate without its key (or the other way
// round) is a configuration error, not a plain-text server.
func TestTLS_RefusesHalfAPair(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := wstest.TLSFiles(t)
	for _, cfg := range []switchboard.Config{{Dev: true, TLSCertFile: certFile}, {Dev: true, TLSKeyFile: keyFile}} {
		if _, err := switchboard.New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

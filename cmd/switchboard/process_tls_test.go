package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProcess_TLSReloadOnSIGHUP: `switchboard serve --tls-cert --tls-key`
// serves wss:// itself and reads the pair again on SIGHUP, without
// dropping its sessions.
func TestProcess_TLSReloadOnSIGHUP(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	dir := t.TempDir()
	// The instance starts with wstest's test certificate (which the
	// helpers trust), copied where the test can replace it.
	testCert, testKey, pool := wstest.TrustTestCertificate(t)
	certFile, keyFile := dir+"/tls.crt", dir+"/tls.key"
	copyFile(t, testCert, certFile)
	copyFile(t, testKey, keyFile)
	in := startInstance(t, "tls", "--tls-cert", certFile, "--tls-key", keyFile)
	commonName := func(pool *x509.CertPool) (string, error) {
		conn, err := tls.Dial("tcp", in.addr, &tls.Config{RootCAs: pool})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	if cn, err := commonName(pool); err != nil || cn != "wstest" {
		t.Fatalf("serving %q (%v), want the test certificate", cn, err)
	}
	c := in.dial(t, wstest.Hello{User: "alice"})

	newCert, newKey, newPool, err := wstest.WriteCertificate(t.TempDir(), "renewed")
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, newCert, certFile)
	copyFile(t, newKey, keyFile)
	in.signal(t, syscall.SIGHUP)
	eventually(t, 10*time.Second, func() string {
		if cn, err := commonName(newPool); err != nil || cn != "renewed" {
			return "the renewed certificate is not served yet"
		}
		return ""
	})
	// The process logs the reload after it swapped the certificate in.
	eventually(t, 10*time.Second, func() string {
		if !in.logs.contains("TLS certificate reloaded") {
			return "no log line for the reload"
		}
		return ""
	})
	// The session from before the reload is still there.
	if err := c.Conn().TrySend(wstest.Frame("send", "id", 1, "to", "alice", "data", "after the reload")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitFor(wstest.Timeout, "the ack of a send after the reload", func(f protocol.ServerFrame) bool {
		return f.Type == protocol.TypeAck && f.Room == "@alice"
	}); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

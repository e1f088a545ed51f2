package wstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TLSEnv is the environment variable that makes Start serve every
// instance over TLS (https:// and wss://), so that the same tests run over
// both transports: `SWITCHBOARD_TEST_TLS=1 go test ./...`.
const TLSEnv = "SWITCHBOARD_TEST_TLS"

// UseTLS reports whether Start serves over TLS.
func UseTLS() bool { return os.Getenv(TLSEnv) != "" }

// testCA is one self-signed certificate for 127.0.0.1 and localhost per
// test process, written to files an instance can load.
var testCA struct {
	once     sync.Once
	certFile string
	keyFile  string
	pool     *x509.CertPool
	err      error
}

// TLSFiles returns the paths of a certificate for 127.0.0.1 and localhost
// and its key, made once per test process, and a pool that trusts it.
func TLSFiles(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool, err := TestCertificate()
	if err != nil {
		t.Fatalf("test certificate: %v", err)
	}
	return certFile, keyFile, pool
}

// TestCertificate is TLSFiles for code outside a test's goroutine.
func TestCertificate() (certFile, keyFile string, pool *x509.CertPool, err error) {
	testCA.once.Do(func() {
		dir, err := os.MkdirTemp("", "wstest-tls-")
		if err != nil {
			testCA.err = err
			return
		}
		testCA.certFile, testCA.keyFile, testCA.pool, testCA.err = WriteCertificate(dir, "wstest")
	})
	return testCA.certFile, testCA.keyFile, testCA.pool, testCA.err
}

// WriteCertificate makes a self-signed certificate for 127.0.0.1 and
// localhost with the given common name, writes it and its key as PEM files
// in dir, and returns their paths and a pool that trusts it.
func WriteCertificate(dir, name string) (certFile, keyFile string, pool *x509.CertPool, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", "", nil, err
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool, nil
}

// TrustTestCertificate makes this package's clients trust the test
// certificate of TLSFiles, and returns the files and the pool, for tests
// that start instances of their own (processes) with it.
func TrustTestCertificate(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile, pool = TLSFiles(t)
	trustTestCertificate(pool)
	return certFile, keyFile, pool
}

// clientTLS is the TLS configuration of this package's clients: it trusts
// the test certificate (and nothing else) when TLS is in use.
var clientTLS struct {
	mu  sync.Mutex
	cfg *tls.Config
}

func trustTestCertificate(pool *x509.CertPool) {
	clientTLS.mu.Lock()
	defer clientTLS.mu.Unlock()
	if clientTLS.cfg == nil {
		clientTLS.cfg = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
}

func clientTLSConfig() *tls.Config {
	clientTLS.mu.Lock()
	defer clientTLS.mu.Unlock()
	if clientTLS.cfg == nil {
		return nil
	}
	return clientTLS.cfg.Clone()
}

// Dialer returns a WebSocket dialer for the instances Start runs: it
// trusts the test certificate when they serve TLS.
func Dialer() *websocket.Dialer {
	d := *websocket.DefaultDialer
	d.TLSClientConfig = clientTLSConfig()
	return &d
}

// HTTPClient returns an HTTP client for the instances Start runs, plain or
// TLS.
func HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = clientTLSConfig()
	return &http.Client{Transport: tr, Timeout: Timeout}
}

// NewServer starts an httptest server for h, over TLS with the test
// certificate when UseTLS says so, and returns it; the caller closes it.
// Its WebSocket URLs start with ws:// or wss:// accordingly (see WSURL).
func NewServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	if !UseTLS() {
		return httptest.NewServer(h)
	}
	certFile, keyFile, pool := TLSFiles(t)
	trustTestCertificate(pool)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}}
	srv.StartTLS()
	return srv
}

// WSURL turns an http:// or https:// base URL into the ws:// or wss:// URL
// of path.
func WSURL(base, path string) string {
	return "ws" + strings.TrimPrefix(base, "http") + path
}

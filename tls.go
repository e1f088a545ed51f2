package switchboard

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
)

// certificate holds the TLS certificate an instance serves, swapped as a
// whole on reload so that handshakes in progress keep the pair they began
// with.
type certificate struct {
	certFile, keyFile string
	current           atomic.Pointer[tls.Certificate]
}

// newCertificate loads the pair; both files or neither must be given.
func newCertificate(certFile, keyFile string) (*certificate, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("switchboard: TLSCertFile and TLSKeyFile go together: set both or neither")
	}
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the pair again; on error the previous pair stays in use.
func (c *certificate) reload() error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("switchboard: load TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	c.current.Store(&pair)
	return nil
}

// config returns the server's TLS configuration: TLS 1.2 or later, HTTP/1.1
// only (a WebSocket upgrade is an HTTP/1.1 request), the current pair.
func (c *certificate) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.current.Load(), nil
		},
	}
}

// ReloadTLS reads the instance's certificate and key files again, for new
// connections (`switchboard serve` calls it on SIGHUP). On error the pair
// in use stays. It is a no-op without TLS.
func (i *Instance) ReloadTLS() error {
	if i.cert == nil {
		return nil
	}
	return i.cert.reload()
}

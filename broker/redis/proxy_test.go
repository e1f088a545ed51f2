package redis

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy is a TCP proxy in front of a redis-server, for faults that Redis
// cannot be asked for: a pub/sub connection that stays open but delivers
// nothing, or a failover to another server behind the same address.
type proxy struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	target string
	conns  map[*proxyConn]bool
}

// proxyConn is one proxied connection.
type proxyConn struct {
	client, server net.Conn
	pubsub         atomic.Bool // the client sent SUBSCRIBE on it
	frozen         atomic.Bool // server→client bytes are dropped
}

func (c *proxyConn) close() {
	c.client.Close()
	c.server.Close()
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: make(map[*proxyConn]bool)}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.dropAll()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) URL() string { return "redis://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		server, err := net.Dial("tcp", target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server}
		p.mu.Lock()
		p.conns[c] = true
		p.mu.Unlock()
		p.wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 {
					if bytes.Contains(buf[:n], []byte("SUBSCRIBE")) {
						c.pubsub.Store(true)
					}
					if _, werr := server.Write(buf[:n]); werr != nil {
						err = errors.Join(err, werr)
					}
				}
				if err != nil {
					c.close()
					return
				}
			}
		})
		p.wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 && !c.frozen.Load() {
					if _, werr := client.Write(buf[:n]); werr != nil {
						err = errors.Join(err, werr)
					}
				}
				if err != nil {
					c.close()
					p.mu.Lock()
					delete(p.conns, c)
					p.mu.Unlock()
					return
				}
			}
		})
	}
}

// freezePubSub makes every open pub/sub connection silent: it stays open,
// but nothing the server sends on it arrives. It returns how many it froze.
func (p *proxy) freezePubSub() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		if c.pubsub.Load() {
			c.frozen.Store(true)
			n++
		}
	}
	return n
}

// switchTo sends new connections to target and closes the open ones, as a
// failover behind a stable address does.
func (p *proxy) switchTo(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
	p.dropAll()
}

func (p *proxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.close()
	}
}

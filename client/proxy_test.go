package client

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// proxy is a TCP proxy in front of a server that a test can cut or freeze,
// to play network faults.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	links map[*link]struct{}
	// accepted counts the connections made to the proxy.
	accepted atomic.Int64
	// refuse closes new connections at once, as if the server were down.
	refuse atomic.Bool
}

type link struct {
	client, server net.Conn
	// frozen swallows bytes in both directions; down swallows the
	// server's bytes only.
	frozen, down atomic.Bool
}

// newProxy forwards to the host of wsURL and stops when the test ends.
func newProxy(t *testing.T, wsURL string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(wsURL, "ws://")
	host = host[:strings.IndexByte(host, '/')]
	p := &proxy{ln: ln, target: host, links: make(map[*link]struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// URL is the WebSocket URL through the proxy.
func (p *proxy) URL() string { return "ws://" + p.ln.Addr().String() + "/ws" }

func (p *proxy) accept() {
	for {
		cc, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		if p.refuse.Load() {
			_ = cc.Close()
			continue
		}
		sc, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = cc.Close()
			continue
		}
		l := &link{client: cc, server: sc}
		p.mu.Lock()
		p.links[l] = struct{}{}
		p.mu.Unlock()
		var both sync.WaitGroup
		both.Add(2)
		p.wg.Go(func() {
			defer both.Done()
			p.pipe(l, cc, sc, true)
		})
		p.wg.Go(func() {
			defer both.Done()
			p.pipe(l, sc, cc, false)
		})
		p.wg.Go(func() {
			both.Wait()
			p.mu.Lock()
			delete(p.links, l)
			p.mu.Unlock()
		})
	}
}

// pipe copies src to dst unless the link swallows it; when either side
// ends, both do.
func (p *proxy) pipe(l *link, dst, src net.Conn, fromServer bool) {
	defer func() {
		_ = l.client.Close()
		_ = l.server.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.frozen.Load() && !(fromServer && l.down.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or closed: the deferred closes end the other side
		}
	}
}

func (p *proxy) each(f func(*link)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		f(l)
	}
}

// Cut drops every current connection, as a network fault would.
func (p *proxy) Cut() {
	p.each(func(l *link) {
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

// Freeze makes every current connection silent in both directions while
// it stays open: a dead connection. New connections work.
func (p *proxy) Freeze() { p.each(func(l *link) { l.frozen.Store(true) }) }

// DropDown swallows what the server sends on every current connection,
// while what the client sends still arrives.
func (p *proxy) DropDown() { p.each(func(l *link) { l.down.Store(true) }) }

// Refuse makes the proxy close new connections at once, or not.
func (p *proxy) Refuse(on bool) { p.refuse.Store(on) }

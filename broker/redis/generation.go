package redis

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// A generation names one stretch of the Redis server's life during which
// its data only grew: it is a hash of the server's run_id (which changes on
// every restart) and master_replid (which changes when a replica is
// promoted). Scripts store the generation with each room's epoch and start a
// new epoch when it differs (see ensureEpoch), so no epoch continues across
// a restart or failover that may have lost the tail of its history.
type generation struct {
	id string
	// version counts the changes this Broker has seen; a call that ran
	// while it moved may have used a stale id.
	version uint64
}

// unknownGeneration is used when the server does not tell its run_id or
// replication id (a Redis-compatible server, or an ACL that forbids INFO).
const unknownGeneration = "unknown"

// errGenerationChanged refuses a connection to a server of another
// generation than the one the Broker knew: commands prepared for the old
// one must not run on it. The next connection is accepted.
var errGenerationChanged = errors.New("redis server generation changed (restart or failover)")

// generationOf derives a generation from the text of INFO server and INFO
// replication.
func generationOf(info string) string {
	runID, replID := infoField(info, "run_id"), infoField(info, "master_replid")
	if runID == "" && replID == "" {
		return unknownGeneration
	}
	h := fnv.New64a()
	_, _ = io.WriteString(h, runID+"/"+replID)
	return strconv.FormatUint(h.Sum64(), 36)
}

// infoField returns the value of field in INFO text.
func infoField(info, field string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// observeGeneration records id as the server's generation and reports
// whether it replaced another one.
func (b *Broker) observeGeneration(id string) (changed bool) {
	for {
		cur := b.gen.Load()
		if cur.id == id {
			return false
		}
		if b.gen.CompareAndSwap(cur, &generation{id: id, version: cur.version + 1}) {
			if cur.id == "" {
				return false
			}
			b.log.Warn("redis server generation changed: new epochs for every room", "from", cur.id, "to", id)
			select {
			case b.genChanged <- struct{}{}:
			default:
			}
			// The server may have lost presence entries (a restart without
			// persistence, a failover that lost writes).
			b.requestRestore()
			return true
		}
	}
}

// checkGeneration reads the server's generation over the command
// connection.
func (b *Broker) checkGeneration(ctx context.Context) error {
	ctx, cancel := b.timeout(ctx)
	defer cancel()
	res := b.client.DoMulti(ctx,
		b.client.B().Info().Section("server").Build(),
		b.client.B().Info().Section("replication").Build())
	var info strings.Builder
	for _, r := range res {
		s, err := r.ToString()
		if err != nil {
			if _, ok := rueidis.IsRedisErr(err); ok {
				// INFO refused (ACL): carry on without the check.
				b.observeGeneration(unknownGeneration)
				return nil
			}
			return b.fail("check server generation", ctx, err)
		}
		info.WriteString(s)
	}
	b.observeGeneration(generationOf(info.String()))
	return nil
}

// askGenerationCheck asks the controller to check the generation soon.
func (b *Broker) askGenerationCheck() {
	select {
	case b.genCheck <- struct{}{}:
	default:
	}
}

// dialer wraps the connection setup of opt: each new connection first asks
// the server for its generation (in plain RESP2, before rueidis's own
// handshake) and is refused if the generation changed. A command whose
// arguments carry the old generation therefore never reaches a server of
// the new one through a fresh connection; the Broker's commands are
// prepared again with the new one.
func (b *Broker) dialer(opt rueidis.ClientOption) func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) {
	base := opt.DialCtxFn
	if base == nil {
		base = func(ctx context.Context, addr string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
			if cfg != nil {
				return (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", addr)
			}
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	user, pass := opt.Username, opt.Password
	return func(ctx context.Context, addr string, d *net.Dialer, cfg *tls.Config) (net.Conn, error) {
		conn, err := base(ctx, addr, d, cfg)
		if err != nil {
			return nil, err
		}
		id, err := handshakeGeneration(conn, user, pass, time.Now().Add(b.cfg.Timeout))
		if err != nil {
			conn.Close()
			return nil, err
		}
		if b.observeGeneration(id) {
			conn.Close()
			return nil, errGenerationChanged
		}
		return conn, nil
	}
}

// handshakeGeneration authenticates if needed and reads the server's
// generation over a fresh connection.
func handshakeGeneration(conn net.Conn, user, pass string, deadline time.Time) (string, error) {
	if err := conn.SetDeadline(deadline); err != nil {
		return "", err
	}
	var req []byte
	auth := pass != ""
	if auth {
		if user != "" {
			req = appendCommand(req, "AUTH", user, pass)
		} else {
			req = appendCommand(req, "AUTH", pass)
		}
	}
	req = appendCommand(req, "INFO", "server")
	req = appendCommand(req, "INFO", "replication")
	if _, err := conn.Write(req); err != nil {
		return "", fmt.Errorf("generation handshake: %w", err)
	}
	r := bufio.NewReader(conn)
	if auth {
		line, err := readLine(r)
		if err != nil {
			return "", fmt.Errorf("generation handshake: %w", err)
		}
		if strings.HasPrefix(line, "-") {
			return "", fmt.Errorf("generation handshake: AUTH: %s", line[1:])
		}
	}
	var info strings.Builder
	refused := false
	for range 2 {
		s, ok, err := readBulk(r)
		if err != nil {
			return "", fmt.Errorf("generation handshake: %w", err)
		}
		refused = refused || !ok
		info.WriteString(s)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return "", err
	}
	if refused {
		return unknownGeneration, nil
	}
	return generationOf(info.String()), nil
}

func appendCommand(buf []byte, args ...string) []byte {
	buf = append(buf, '*')
	buf = strconv.AppendInt(buf, int64(len(args)), 10)
	buf = append(buf, "\r\n"...)
	for _, a := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(a)), 10)
		buf = append(buf, "\r\n"...)
		buf = append(buf, a...)
		buf = append(buf, "\r\n"...)
	}
	return buf
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\r\n"), nil
}

// readBulk reads a bulk string reply; ok is false for an error reply.
func readBulk(r *bufio.Reader) (s string, ok bool, err error) {
	line, err := readLine(r)
	if err != nil {
		return "", false, err
	}
	switch {
	case strings.HasPrefix(line, "-"):
		return "", false, nil
	case strings.HasPrefix(line, "$"):
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 || n > 1<<20 {
			return "", false, fmt.Errorf("unexpected reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", false, err
		}
		return string(buf[:n]), true, nil
	}
	return "", false, fmt.Errorf("unexpected reply %q", line)
}

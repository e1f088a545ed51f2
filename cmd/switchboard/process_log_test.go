package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/redistest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// jsonKeys returns the top-level keys of the JSON object line, in order,
// with repeats.
func jsonKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object (%v)", err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return keys, err
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return keys, err
		}
	}
	_, err := dec.Token()
	return keys, err
}

// TestProcess_JSONLogs checks that with --log-format json every line an
// instance writes is one JSON object whose keys are unique (STYLE.md:
// "attach identity once"): log pipelines keep only one of two equal keys,
// or reject the line. The instance uses Redis, serves a session, loses its
// pub/sub connection and drains, so that every component logs.
func TestProcess_JSONLogs(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	rs := redistest.Start(t)
	in := startInstance(t, "A", redisFlags(rs, "--log-level", "debug")...)
	cl := connect(t, in, "u")
	cl.join(t, "r", nil)
	in.mustPublish(t, "r", payload{P: "api", N: 1}, "", "")
	if err := waitReached(cl.cur(), waitLong, "u", "r", "", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Do("CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		if len(in.logs.times("pub/sub connected")) < 2 {
			return "the instance has not logged its new pub/sub connection"
		}
		return ""
	})
	in.signal(t, syscall.SIGTERM)
	if code, err := cl.cur().WaitClosed(waitLong); err != nil || code != protocol.CloseRestarting {
		t.Fatalf("session ended with %d %v, want %d", code, err, protocol.CloseRestarting)
	}
	if code, err := in.waitExit(waitLong); err != nil || code != 0 {
		t.Fatalf("exit %d %v, want 0", code, err)
	}

	bad := map[string]int{} // problem → lines
	var example = map[string]string{}
	lines := 0
	for line := range bytes.Lines([]byte(in.logs.tail(1 << 30))) {
		lines++
		keys, err := jsonKeys(line)
		if err != nil {
			bad[err.Error()]++
			example[err.Error()] = string(line)
			continue
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				why := fmt.Sprintf("key %q appears twice", k)
				bad[why]++
				example[why] = string(bytes.TrimSpace(line))
			}
			seen[k] = true
		}
	}
	for why, n := range bad {
		t.Errorf("%d of %d log lines: %s, e.g. %s", n, lines, why, example[why])
	}
}

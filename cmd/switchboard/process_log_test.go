package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
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

// TestProcess_IOUringFlag: an instance says once at start how it writes
// its sockets, and does what it says: through io_uring by default where
// the kernel allows it (every Linux machine `make test` runs on must:
// SWITCHBOARD_TEST_IO_URING=required), one write(2) each with
// --io-uring=false (SWITCHBOARD_IO_URING=false). Messages arrive either
// way.
func TestProcess_IOUringFlag(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	for _, c := range []struct {
		name  string
		flags []string
		want  bool
	}{
		{"Default", nil, true},
		{"Off", []string{"--io-uring=false"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			in := startInstance(t, "W"+c.name, c.flags...)
			type writesLine struct {
				Msg     string `json:"msg"`
				IOUring *bool  `json:"io_uring"`
				Reason  string `json:"reason"`
			}
			var said *writesLine
			for line := range bytes.Lines([]byte(in.logs.tail(1 << 20))) {
				var rec writesLine
				if json.Unmarshal(line, &rec) == nil && rec.Msg == "socket writes" {
					if said != nil {
						t.Fatalf("a second \"socket writes\" line: %s", line)
					}
					said = &rec
				}
			}
			if said == nil || said.IOUring == nil {
				t.Fatal("no \"socket writes\" line with io_uring at start")
			}
			want := c.want
			if want && *said.IOUring != want && os.Getenv("SWITCHBOARD_TEST_IO_URING") != "required" {
				t.Skipf("no io_uring here: %s", said.Reason)
			}
			if *said.IOUring != want || (!want && said.Reason == "") {
				t.Fatalf("logged io_uring=%v (%q), want %v with a reason when false", *said.IOUring, said.Reason, want)
			}

			const members, messages = 40, 20
			clients := make([]*client, members)
			for i := range clients {
				clients[i] = connect(t, in, fmt.Sprintf("u%d", i))
				clients[i].join(t, "r", nil)
			}
			for n := 1; n <= messages; n++ {
				in.mustPublish(t, "r", payload{P: "api", N: n}, "", "")
			}
			for i, cl := range clients {
				if err := waitReached(cl.cur(), waitLong, fmt.Sprintf("u%d", i), "r", "", messages); err != nil {
					t.Fatal(err)
				}
			}
			submissions := in.mustMetric(t, "switchboard_io_uring_submissions_total")
			if (submissions > 0) != want {
				t.Errorf("%v io_uring submissions; want some: %v", submissions, want)
			}
		})
	}
}

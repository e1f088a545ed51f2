package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-rt/switchboard/bench"
)

// childFlag starts a worker process of `bench --procs N`; it is not listed
// in the help.
const childFlag = "--bench-child"

const benchUsage = `usage: switchboard bench idle|fanout|rooms [flags]
Load-tests running instances on this machine (loopback only). Run
'switchboard bench fanout -h' for the flags.
`

// benchCmd runs `switchboard bench`: flags in, a bench.Config out. It
// reads no environment variables: serve's SWITCHBOARD_RATE is not the
// publish rate of a benchmark.
func benchCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == childFlag {
		// A child ignores Ctrl-C: the parent stops it in order.
		signal.Ignore(os.Interrupt)
		if code := bench.RunChild(context.Background(), os.Stdin, os.Stdout); code != 0 {
			return errors.New("child failed")
		}
		return nil
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprint(stdout, benchUsage)
			return nil
		}
		fmt.Fprint(stderr, benchUsage)
		return errUsage
	}
	cfg, jsonOut, err := parseBenchFlags(args[0], args[1:], stdout)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	cfg.ChildCommand = []string{exe, "bench", childFlag}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, cfg, stderr)
	if err != nil {
		// run prints "switchboard bench: "; the package's own prefix
		// would repeat it.
		return &prefixTrimmed{err: err, msg: strings.TrimPrefix(err.Error(), "bench: ")}
	}
	if jsonOut != "" {
		f, err := os.Create(jsonOut)
		if err != nil {
			return fmt.Errorf("json-out: %w", err)
		}
		werr := res.WriteJSON(f)
		if err := errors.Join(werr, f.Close()); err != nil {
			return fmt.Errorf("json-out: %w", err)
		}
	}
	switch {
	case cfg.JSON:
		return res.WriteJSON(stdout)
	case cfg.Markdown:
		return res.WriteMarkdown(stdout)
	default:
		return res.WriteText(stdout)
	}
}

// parseBenchFlags turns the flags of `bench <workload>` into a Config,
// and the file named by --json-out.
func parseBenchFlags(workload string, args []string, help io.Writer) (bench.Config, string, error) {
	cfg := bench.Config{Workload: bench.Workload(workload)}
	noEnv := func(string) (string, bool) { return "", false }
	fs := newFlagSet("bench "+workload, noEnv)
	fs.help = help
	fs.about = "usage: switchboard bench " + workload + " [flags]\n\n" +
		"Load-tests running instances on this machine (loopback only). Reads no\n" +
		"environment variables.\n"
	var (
		urls, apis                         listValue
		target                             string
		rate                               float64
		ladder, srcIPs, pids, jsonOut      string
		brokerPIDs                         string
		payload                            int
		batch                              = true
		duration, drain, maxDrain, ttl, dt time.Duration
		warmup                             time.Duration
	)
	fs.Var(&urls, "url", "WebSocket URLs of the instances, comma-separated or repeated (ws://127.0.0.1:8080)")
	fs.Var(&apis, "api", "HTTP base URLs for API publishing and /metrics (default: from --url)")
	fs.StringVar(&cfg.APIKey, "api-key", "", "API key (Switchboard: Bearer; Centrifugo: X-API-Key)")
	fs.StringVar(&target, "target", "switchboard", "server protocol: switchboard or centrifugo")
	fs.IntVar(&cfg.Conns, "conns", 0, "connections (idle; rooms when --rooms is not given) (default 1000)")
	fs.IntVar(&cfg.Rooms, "rooms", 0, "rooms (fanout default 1; rooms default conns/members)")
	fs.IntVar(&cfg.Members, "members", 0, "members per room (fanout default 100; rooms default 2)")
	fs.Float64Var(&rate, "rate", 0, "publish rate, messages per second over all rooms (default 10)")
	fs.StringVar(&ladder, "ladder", "", "comma-separated rates, one step each, e.g. 10,25,50,100")
	fs.DurationVar(&duration, "duration", bench.DefaultDuration, "length of each step; how long idle holds its connections")
	fs.DurationVar(&drain, "drain", bench.DefaultDrain, "wait after each step before counting loss")
	fs.DurationVar(&maxDrain, "max-drain", bench.DefaultMaxDrain, "longest wait after a step while deliveries keep arriving")
	fs.IntVar(&payload, "payload", bench.DefaultPayload, "bytes of message data (at least 64)")
	fs.StringVar(&cfg.Publish, "publish", "", "api or ws (fanout default api; rooms always ws)")
	fs.BoolVar(&batch, "batch", true, "ask Switchboard for batched frames")
	fs.StringVar(&cfg.Receiver, "receiver", bench.ReceivePooled, "how clients read: pooled (pooled buffer, byte search), scan (ReadMessage, split lines, scan each), decode (ReadMessage, full JSON decode of each object)")
	fs.IntVar(&cfg.APIWorkers, "api-workers", bench.DefaultAPIWorkers, "concurrent HTTP publishers (publish api)")
	fs.IntVar(&cfg.APIQueue, "api-queue", 0, "publishes that may wait for a busy API worker; 0: a publish no worker takes on time is skipped")
	fs.DurationVar(&warmup, "warmup", 0, "run a warm-up step this long before the ladder (not in the summary)")
	fs.Float64Var(&cfg.WarmupRate, "warmup-rate", bench.DefaultWarmupRate, "publish rate of the warm-up step")
	fs.BoolVar(&cfg.Continuous, "continuous", false, "run the steps back to back (one drain at the end), as a user's load generator does")
	fs.BoolVar(&cfg.Saturate, "saturate", false, "after the ladder, double the rate until deliveries/s stop growing or publishes are skipped")
	fs.IntVar(&cfg.Procs, "procs", 1, "spread connections over this many processes")
	fs.StringVar(&srcIPs, "src-ips", "", "loopback source addresses for client sockets, e.g. 127.0.0.1-127.0.0.8")
	fs.StringVar(&cfg.Token, "token", "", "token every connection sends")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", "", "mint an HS256 token per user with this secret")
	fs.DurationVar(&ttl, "token-ttl", bench.DefaultTokenTTL, "lifetime of minted tokens")
	fs.StringVar(&pids, "server-pids", "", "comma-separated server process ids, for CPU per step (and memory from /proc for idle, one per --url)")
	fs.StringVar(&brokerPIDs, "broker-pids", "", "comma-separated broker (Redis) process ids: CPU reported apart, deliveries per core-second also with them")
	fs.StringVar(&cfg.Label, "label", "", "label of the run in reports")
	fs.DurationVar(&dt, "dial-timeout", bench.DefaultDialTimeout, "bound on each connection's dial and handshake")
	fs.IntVar(&cfg.Concurrency, "concurrency", bench.DefaultConcurrency, "connections each process opens at once")
	fs.BoolVar(&cfg.FullLadder, "full-ladder", false, "run every step even after an overloaded one")
	fs.BoolVar(&cfg.JSON, "json", false, "print the result as JSON")
	fs.BoolVar(&cfg.Markdown, "markdown", false, "print the result as Markdown tables")
	fs.StringVar(&jsonOut, "json-out", "", "also write the result as JSON to this file")
	fs.BoolVar(&cfg.Quiet, "quiet", false, "no progress line")
	if err := fs.parse(mergeRepeated(args, "url", "api")); err != nil {
		return cfg, "", err
	}
	cfg.Target = bench.Target(target)
	cfg.URLs, cfg.APIs = urls, apis
	cfg.Duration, cfg.Drain, cfg.MaxDrain, cfg.TokenTTL, cfg.DialTimeout = duration, drain, maxDrain, ttl, dt
	cfg.PayloadBytes, cfg.Batch, cfg.Warmup = payload, batch, warmup
	var err error
	switch {
	case ladder != "" && rate != 0:
		return cfg, "", &flagError{flag: "ladder", err: errors.New("give --rate or --ladder, not both")}
	case ladder != "":
		if cfg.Ladder, err = bench.ParseLadder(ladder); err != nil {
			return cfg, "", &flagError{flag: "ladder", err: err}
		}
	case rate != 0:
		if rate < 0 {
			return cfg, "", &flagError{flag: "rate", err: errors.New("must be positive")}
		}
		cfg.Ladder = []float64{rate}
	}
	if srcIPs != "" {
		if cfg.SrcIPs, err = bench.ParseSrcIPs(srcIPs); err != nil {
			return cfg, "", &flagError{flag: "src-ips", err: err}
		}
	}
	if pids != "" {
		if cfg.ServerPIDs, err = bench.ParsePIDs(pids); err != nil {
			return cfg, "", &flagError{flag: "server-pids", err: err}
		}
	}
	if brokerPIDs != "" {
		if cfg.BrokerPIDs, err = bench.ParsePIDs(brokerPIDs); err != nil {
			return cfg, "", &flagError{flag: "broker-pids", err: err}
		}
	}
	switch cfg.Receiver {
	case bench.ReceivePooled, bench.ReceiveScan, bench.ReceiveDecode:
	default:
		return cfg, "", &flagError{flag: "receiver", err: errors.New("want pooled, scan or decode")}
	}
	if cfg.APIWorkers <= 0 {
		return cfg, "", &flagError{flag: "api-workers", err: errors.New("must be positive")}
	}
	if cfg.APIQueue < 0 {
		return cfg, "", &flagError{flag: "api-queue", err: errors.New("must not be negative")}
	}
	if warmup < 0 {
		return cfg, "", &flagError{flag: "warmup", err: errors.New("must not be negative")}
	}
	if cfg.WarmupRate <= 0 {
		return cfg, "", &flagError{flag: "warmup-rate", err: errors.New("must be positive")}
	}
	if len(cfg.URLs) == 0 {
		return cfg, "", &flagError{flag: "url", err: errors.New("is required")}
	}
	return cfg, jsonOut, nil
}

// mergeRepeated joins repeated occurrences of the named list flags into
// one comma-separated value, so that --url a --url b means --url a,b
// while every other flag may still be given once only.
func mergeRepeated(args []string, names ...string) []string {
	values := map[string][]string{}
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		matched := false
		for _, name := range names {
			for _, prefix := range []string{"--" + name, "-" + name} {
				if v, ok := strings.CutPrefix(a, prefix+"="); ok {
					values[name] = append(values[name], v)
					matched = true
				} else if a == prefix && i+1 < len(args) {
					values[name] = append(values[name], args[i+1])
					i++
					matched = true
				}
			}
		}
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if !matched {
			out = append(out, a)
		}
	}
	for _, name := range names {
		if len(values[name]) > 0 {
			out = append(out, "--"+name+"="+strings.Join(values[name], ","))
		}
	}
	return out
}

// prefixTrimmed is err with a shorter message.
type prefixTrimmed struct {
	err error
	msg string
}

func (e *prefixTrimmed) Error() string { return e.msg }
func (e *prefixTrimmed) Unwrap() error { return e.err }

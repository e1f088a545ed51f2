package main

import (
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// serveField reads one flag's value out of serveFlags.
type serveField func(*serveFlags) any

var serveFields = map[string]serveField{
	"listen":           func(f *serveFlags) any { return f.listen },
	"advertise":        func(f *serveFlags) any { return string(f.advertise) },
	"redis":            func(f *serveFlags) any { return f.redis },
	"redis-cluster":    func(f *serveFlags) any { return f.redisCluster },
	"redis-sentinel":   func(f *serveFlags) any { return f.redisSentinel },
	"redis-prefix":     func(f *serveFlags) any { return f.redisPrefix },
	"instance-id":      func(f *serveFlags) any { return f.instanceID },
	"jwt-secret":       func(f *serveFlags) any { return f.jwtSecret },
	"jwt-public-key":   func(f *serveFlags) any { return f.jwtPublicKey },
	"api-key":          func(f *serveFlags) any { return f.apiKey },
	"dev":              func(f *serveFlags) any { return f.dev },
	"allowed-origins":  func(f *serveFlags) any { return []string(f.allowedOrigins) },
	"no-direct":        func(f *serveFlags) any { return f.noDirect },
	"history-size":     func(f *serveFlags) any { return f.historySize },
	"history-ttl":      func(f *serveFlags) any { return f.historyTTL },
	"idempotency-ttl":  func(f *serveFlags) any { return f.idempotencyTTL },
	"max-frame":        func(f *serveFlags) any { return int64(f.maxFrame) },
	"max-rooms":        func(f *serveFlags) any { return f.maxRooms },
	"rate":             func(f *serveFlags) any { return f.rate },
	"burst":            func(f *serveFlags) any { return f.burst },
	"send-queue":       func(f *serveFlags) any { return int64(f.sendQueue) },
	"hello-timeout":    func(f *serveFlags) any { return f.helloTimeout },
	"heartbeat":        func(f *serveFlags) any { return f.heartbeat },
	"drain-timeout":    func(f *serveFlags) any { return f.drainTimeout },
	"drain-spread":     func(f *serveFlags) any { return f.drainSpread },
	"log-level":        func(f *serveFlags) any { return f.logLevel },
	"log-format":       func(f *serveFlags) any { return f.logFormat },
	"tls-cert":         func(f *serveFlags) any { return f.tlsCert },
	"tls-key":          func(f *serveFlags) any { return f.tlsKey },
	"max-queued-bytes": func(f *serveFlags) any { return int64(f.maxQueuedBytes) },
	"max-write-delay":  func(f *serveFlags) any { return f.maxWriteDelay },
	"io-uring":         func(f *serveFlags) any { return f.ioURing },
	"max-header-bytes": func(f *serveFlags) any { return int64(f.maxHeaderBytes) },
	"header-timeout":   func(f *serveFlags) any { return f.headerTimeout },
	"idle-timeout":     func(f *serveFlags) any { return f.idleTimeout },
	"max-body":         func(f *serveFlags) any { return int64(f.maxBody) },
	"admin-listen":     func(f *serveFlags) any { return f.adminListen },

	// Memory bounds (issue 12).
	"history-max-bytes": func(f *serveFlags) any { return int64(f.historyMax) },
	// Admission.
	"max-conns":          func(f *serveFlags) any { return f.maxConns },
	"max-conns-per-ip":   func(f *serveFlags) any { return f.maxConnsPerIP },
	"max-conns-per-user": func(f *serveFlags) any { return f.maxConnsPerUser },
	"trusted-proxies":    func(f *serveFlags) any { return []string(f.trustedProxies) },
	"accept-rate":        func(f *serveFlags) any { return f.acceptRate },
	"accept-burst":       func(f *serveFlags) any { return f.acceptBurst },
	"accept-queue":       func(f *serveFlags) any { return f.acceptQueue },
}

func TestParseServeFlags_Defaults(t *testing.T) {
	t.Parallel()
	// PROTOCOL.md, "Command line"; --dev stands in for a key.
	f, err := parseServeFlags([]string{"--dev"}, noEnv)
	if err != nil {
		t.Fatalf("parseServeFlags(--dev) = %v", err)
	}
	tests := []struct {
		flag string
		want any
	}{
		{"listen", ":8080"},
		{"advertise", ""},
		{"redis", ""},
		{"redis-cluster", false},
		{"redis-sentinel", ""},
		{"redis-prefix", "sb"},
		{"instance-id", ""},
		{"jwt-secret", ""},
		{"jwt-public-key", ""},
		{"api-key", ""},
		{"allowed-origins", []string(nil)},
		{"no-direct", false},
		{"history-size", 100},
		{"history-ttl", 5 * time.Minute},
		{"idempotency-ttl", 5 * time.Minute},
		{"max-frame", int64(65536)},
		{"max-rooms", 128},
		{"rate", 50.0},
		{"burst", 100},
		{"send-queue", int64(1048576)},
		{"hello-timeout", 5 * time.Second},
		{"heartbeat", 25 * time.Second},
		{"drain-timeout", 10 * time.Second},
		{"drain-spread", 2 * time.Second},
		{"log-level", "info"},
		{"log-format", "text"},
		{"tls-cert", ""},
		{"tls-key", ""},
		{"max-queued-bytes", int64(1 << 30)},
		{"max-write-delay", 64 * time.Millisecond},
		{"io-uring", true},
		{"max-header-bytes", int64(8 << 10)},
		{"header-timeout", 5 * time.Second},
		{"idle-timeout", 60 * time.Second},
		{"max-body", int64(1 << 20)},
		{"admin-listen", ""},
		{"history-max-bytes", int64(256 << 20)},
		{"max-conns", 0},
		{"max-conns-per-ip", 0},
		{"max-conns-per-user", 0},
		{"trusted-proxies", []string(nil)},
		{"accept-rate", 5000.0},
		{"accept-burst", 0},
		{"accept-queue", 0},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			t.Parallel()
			if got := serveFields[tt.flag](f); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("default --%s = %#v, want %#v", tt.flag, got, tt.want)
			}
		})
	}
}

// serveEnvCases sets each serve flag from its environment variable.
var serveEnvCases = []struct {
	flag  string
	value string
	want  any
}{
	{"listen", "127.0.0.1:9000", "127.0.0.1:9000"},
	{"advertise", "sb-1.internal:8080", "sb-1.internal:8080"},
	{"redis", "redis://cache:6379/2", "redis://cache:6379/2"},
	{"redis-prefix", "app", "app"},
	{"instance-id", "i-7", "i-7"},
	{"jwt-secret", "0123456789abcdef", "0123456789abcdef"},
	{"jwt-public-key", "/etc/sb/key.pem", "/etc/sb/key.pem"},
	{"api-key", "k3y", "k3y"},
	{"dev", "true", true},
	{"allowed-origins", "https://a.example, https://b.example", []string{"https://a.example", "https://b.example"}},
	{"no-direct", "true", true},
	{"history-size", "7", 7},
	{"history-ttl", "1m", time.Minute},
	{"idempotency-ttl", "90s", 90 * time.Second},
	{"max-frame", "1KiB", int64(1024)},
	{"max-rooms", "3", 3},
	{"rate", "2.5", 2.5},
	{"burst", "4", 4},
	{"send-queue", "2MiB", int64(2 << 20)},
	{"hello-timeout", "1s", time.Second},
	{"heartbeat", "3s", 3 * time.Second},
	{"drain-timeout", "4s", 4 * time.Second},
	{"drain-spread", "500ms", 500 * time.Millisecond},
	{"log-level", "debug", "debug"},
	{"log-format", "json", "json"},
	{"max-queued-bytes", "512MiB", int64(512 << 20)},
	{"max-write-delay", "0", time.Duration(0)},
	{"io-uring", "false", false},
	{"max-header-bytes", "16KiB", int64(16 << 10)},
	{"header-timeout", "2s", 2 * time.Second},
	{"idle-timeout", "30s", 30 * time.Second},
	{"max-body", "64KiB", int64(64 << 10)},
	{"admin-listen", "127.0.0.1:9090", "127.0.0.1:9090"},
	{"history-max-bytes", "64MiB", int64(64 << 20)},
	{"max-conns", "900", 900},
	{"max-conns-per-ip", "20", 20},
	{"max-conns-per-user", "5", 5},
	{"trusted-proxies", "10.0.0.0/8, 192.168.1.7", []string{"10.0.0.0/8", "192.168.1.7"}},
	{"accept-rate", "250.5", 250.5},
	{"accept-burst", "300", 300},
	{"accept-queue", "1000", 1000},
}

func TestParseServeFlags_Env(t *testing.T) {
	t.Parallel()
	for _, tt := range serveEnvCases {
		t.Run(tt.flag, func(t *testing.T) {
			t.Parallel()
			name := envName(tt.flag)
			if want := "SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(tt.flag, "-", "_")); name != want {
				t.Fatalf("envName(%q) = %q, want %q", tt.flag, name, want)
			}
			env := fakeEnv{name: tt.value}
			args := []string{"--dev"}
			if tt.flag == "dev" {
				args = nil // the environment alone turns dev mode on
			}
			f, err := parseServeFlags(args, env.lookup)
			if err != nil {
				t.Fatalf("parseServeFlags with %s=%q = %v", name, tt.value, err)
			}
			if got := serveFields[tt.flag](f); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s=%q: --%s = %#v, want %#v", name, tt.value, tt.flag, got, tt.want)
			}
		})
	}
}

// --redis-cluster and --redis-sentinel need --redis, so they are read from
// the environment together with it.
func TestParseServeFlags_EnvRedisModes(t *testing.T) {
	t.Parallel()
	seeds := "127.0.0.1:7000,redis://127.0.0.1:7001"
	f, err := parseServeFlags([]string{"--dev"}, fakeEnv{"SWITCHBOARD_REDIS_CLUSTER": "true", "REDIS_URL": seeds}.lookup)
	if err != nil || !f.redisCluster || f.redis != seeds {
		t.Errorf("SWITCHBOARD_REDIS_CLUSTER=true, REDIS_URL=%q: cluster %v, redis %q, %v", seeds, f != nil && f.redisCluster, serveFields["redis"](f), err)
	}
	f, err = parseServeFlags([]string{"--dev"}, fakeEnv{"SWITCHBOARD_REDIS_SENTINEL": "mymaster", "SWITCHBOARD_REDIS": seeds}.lookup)
	if err != nil || f.redisSentinel != "mymaster" || f.redis != seeds {
		t.Errorf("SWITCHBOARD_REDIS_SENTINEL=mymaster: %+v, %v", f, err)
	}
}

// Cluster seeds and sentinels are lists of URLs or bare host:port.
func TestParseServeFlags_RedisLists(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--redis-cluster", "--redis", "127.0.0.1:7000,127.0.0.1:7001, 127.0.0.1:7002"},
		{"--redis-cluster", "--redis", "redis://:secret@10.0.0.1:7000,10.0.0.2:7000"},
		{"--redis-cluster", "--redis", "rediss://node-1.example:7000"},
		{"--redis-sentinel", "mymaster", "--redis", "127.0.0.1:26379,127.0.0.1:26380"},
		{"--redis", "redis://127.0.0.1:26379?master_set=mymaster&addr=127.0.0.1:26380"},
	} {
		f, err := parseServeFlags(append([]string{"--dev"}, args...), noEnv)
		if err != nil {
			t.Errorf("parseServeFlags(%q) = %v", args, err)
			continue
		}
		cfg, err := f.config(nil)
		if err != nil || cfg.Redis != f.redis || cfg.RedisCluster != f.redisCluster || cfg.RedisSentinel != f.redisSentinel {
			t.Errorf("config of %q = Redis %q, cluster %v, sentinel %q, %v", args, cfg.Redis, cfg.RedisCluster, cfg.RedisSentinel, err)
		}
	}
}

// The TLS pair comes from the environment too.
func TestParseServeFlags_EnvTLSIsRead(t *testing.T) {
	t.Parallel()
	env := fakeEnv{"SWITCHBOARD_TLS_CERT": "c.pem", "SWITCHBOARD_TLS_KEY": "k.pem"}
	f, err := parseServeFlags([]string{"--dev"}, env.lookup)
	if err != nil || f.tlsCert != "c.pem" || f.tlsKey != "k.pem" {
		t.Fatalf("parseServeFlags = %+v, %v; want the TLS pair from the environment", f, err)
	}
}

// Every flag the parser looks up in the environment has a case above.
func TestParseServeFlags_EnvCoversEveryFlag(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]bool{}
	env := func(name string) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		seen[name] = true
		return "", false
	}
	if _, err := parseServeFlags([]string{"--dev"}, env); err != nil {
		t.Fatalf("parseServeFlags(--dev) = %v", err)
	}
	// The TLS pair is read together; TestParseServeFlags_EnvTLSIsRead
	// covers it, as TestParseServeFlags_EnvRedisModes covers the Redis
	// modes.
	tested := map[string]bool{envName("redis-cluster"): true, envName("redis-sentinel"): true, "REDIS_URL": true, envName("tls-cert"): true, envName("tls-key"): true}
	for _, c := range serveEnvCases {
		tested[envName(c.flag)] = true
	}
	for name := range seen {
		if !tested[name] {
			t.Errorf("the parser reads %s, but no test sets it", name)
		}
	}
	for name := range tested {
		if name != envName("dev") && !seen[name] {
			t.Errorf("%s is never read", name)
		}
	}
	for flag := range serveFields {
		if !seen[envName(flag)] && flag != "dev" {
			t.Errorf("--%s is not read from %s", flag, envName(flag))
		}
	}
}

func TestParseServeFlags_RedisEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  fakeEnv
		want string
	}{
		{"REDIS_URLAlone", nil, fakeEnv{"REDIS_URL": "redis://u:6379/1"}, "redis://u:6379/1"},
		{"SwitchboardRedisWinsOverREDIS_URL", nil,
			fakeEnv{"REDIS_URL": "redis://u:6379/1", "SWITCHBOARD_REDIS": "redis://s:6379/2"}, "redis://s:6379/2"},
		{"EmptySwitchboardRedisFallsBackToREDIS_URL", nil,
			fakeEnv{"REDIS_URL": "redis://u:6379/1", "SWITCHBOARD_REDIS": ""}, "redis://u:6379/1"},
		{"CommandLineWinsOverBoth", []string{"--redis", "redis://c:6379/3"},
			fakeEnv{"REDIS_URL": "redis://u:6379/1", "SWITCHBOARD_REDIS": "redis://s:6379/2"}, "redis://c:6379/3"},
		{"EmptyCommandLineWinsOverBoth", []string{"--redis="},
			fakeEnv{"REDIS_URL": "redis://u:6379/1", "SWITCHBOARD_REDIS": "redis://s:6379/2"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Repeat: an order that came from map iteration would show.
			for range 50 {
				f, err := parseServeFlags(append([]string{"--dev"}, tt.args...), tt.env.lookup)
				if err != nil {
					t.Fatalf("parseServeFlags(%q) with %v = %v", tt.args, tt.env, err)
				}
				if f.redis != tt.want {
					t.Fatalf("parseServeFlags(%q) with %v: --redis = %q, want %q", tt.args, tt.env, f.redis, tt.want)
				}
			}
		})
	}
}

func TestParseServeFlags_CommandLineWins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  fakeEnv
		flag string
		want any
	}{
		{"String", []string{"--dev", "--listen", ":2"}, fakeEnv{"SWITCHBOARD_LISTEN": ":1"}, "listen", ":2"},
		{"Duration", []string{"--dev", "--heartbeat", "2s"}, fakeEnv{"SWITCHBOARD_HEARTBEAT": "9s"}, "heartbeat", 2 * time.Second},
		{"Size", []string{"--dev", "--send-queue", "4MiB"}, fakeEnv{"SWITCHBOARD_SEND_QUEUE": "2MiB"}, "send-queue", int64(4 << 20)},
		{"Float", []string{"--dev", "--rate", "5"}, fakeEnv{"SWITCHBOARD_RATE": "7"}, "rate", 5.0},
		{"BoolFalseOnCommandLine", []string{"--dev", "--no-direct=false"}, fakeEnv{"SWITCHBOARD_NO_DIRECT": "true"}, "no-direct", false},
		{"BoolTrueOnCommandLine", []string{"--dev"}, fakeEnv{"SWITCHBOARD_DEV": "false"}, "dev", true},
		{"List", []string{"--dev", "--allowed-origins", "https://c"}, fakeEnv{"SWITCHBOARD_ALLOWED_ORIGINS": "https://e"}, "allowed-origins", []string{"https://c"}},
		{"MalformedEnvIgnored", []string{"--dev", "--rate", "5"}, fakeEnv{"SWITCHBOARD_RATE": "abc"}, "rate", 5.0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := parseServeFlags(tt.args, tt.env.lookup)
			if err != nil {
				t.Fatalf("parseServeFlags(%q) with %v = %v", tt.args, tt.env, err)
			}
			if got := serveFields[tt.flag](f); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseServeFlags(%q) with %v: --%s = %#v, want %#v", tt.args, tt.env, tt.flag, got, tt.want)
			}
		})
	}
}

func TestParseServeFlags_EnvErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  fakeEnv
		flag string
		// from is the variable a value that fails to parse is blamed on;
		// empty for values that parse but fail validation.
		from string
	}{
		{"DurationXX", fakeEnv{"SWITCHBOARD_HISTORY_TTL": "xx"}, "history-ttl", "SWITCHBOARD_HISTORY_TTL"},
		{"RateABC", fakeEnv{"SWITCHBOARD_RATE": "abc"}, "rate", "SWITCHBOARD_RATE"},
		{"BoolMaybe", fakeEnv{"SWITCHBOARD_NO_DIRECT": "maybe"}, "no-direct", "SWITCHBOARD_NO_DIRECT"},
		{"SizeMB", fakeEnv{"SWITCHBOARD_SEND_QUEUE": "1MB"}, "send-queue", "SWITCHBOARD_SEND_QUEUE"},
		{"IntABC", fakeEnv{"SWITCHBOARD_MAX_ROOMS": "abc"}, "max-rooms", "SWITCHBOARD_MAX_ROOMS"},
		{"REDIS_URLNotParsedHere", fakeEnv{"REDIS_URL": "localhost:6379"}, "redis", ""},
		{"NegativeDuration", fakeEnv{"SWITCHBOARD_HEARTBEAT": "-1s"}, "heartbeat", ""},
		{"UnknownLogLevel", fakeEnv{"SWITCHBOARD_LOG_LEVEL": "loud"}, "log-level", ""},
		{"RedisPrefixWithBraces", fakeEnv{"SWITCHBOARD_REDIS_PREFIX": "{sb}"}, "redis-prefix", ""},
		{"ShortJWTSecret", fakeEnv{"SWITCHBOARD_JWT_SECRET": "short"}, "jwt-secret", ""},
		{"AdvertiseWildcard", fakeEnv{"SWITCHBOARD_ADVERTISE": "0.0.0.0:8080"}, "advertise", "SWITCHBOARD_ADVERTISE"},
		{"AdvertiseNoPort", fakeEnv{"SWITCHBOARD_ADVERTISE": "sb-1.internal"}, "advertise", "SWITCHBOARD_ADVERTISE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseServeFlags([]string{"--dev"}, tt.env.lookup)
			wantFlagErr(t, err, tt.flag)
			if tt.from != "" && err != nil && !strings.Contains(err.Error(), tt.from) {
				t.Errorf("err = %q, want it to name %s", err, tt.from)
			}
			if err != nil && strings.Count(err.Error(), "invalid value") > 1 {
				t.Errorf("err = %q, says \"invalid value\" more than once", err)
			}
		})
	}
}

func TestRun_ServeFlagErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		flag string
	}{
		{"DurationXX", []string{"--dev", "--history-ttl", "xx"}, "history-ttl"},
		{"RateABC", []string{"--dev", "--rate", "abc"}, "rate"},
		{"RateZero", []string{"--dev", "--rate", "0"}, "rate"},
		{"BurstZero", []string{"--dev", "--burst", "0"}, "burst"},
		{"HistorySizeABC", []string{"--dev", "--history-size", "abc"}, "history-size"},
		{"HistorySizeNegative", []string{"--dev", "--history-size", "-1"}, "history-size"},
		{"MaxRoomsZero", []string{"--dev", "--max-rooms", "0"}, "max-rooms"},
		{"BoolMaybe", []string{"--dev=maybe"}, "dev"},
		{"BoolMaybeOther", []string{"--dev", "--no-direct=maybe"}, "no-direct"},
		{"BoolGivenTwice", []string{"--dev", "--dev"}, "dev"},
		{"SizeMB", []string{"--dev", "--send-queue", "1MB"}, "send-queue"},
		{"SizeNegative", []string{"--dev", "--max-frame", "-5"}, "max-frame"},
		{"SizeZero", []string{"--dev", "--max-frame", "0"}, "max-frame"},
		{"SizeABC", []string{"--dev", "--send-queue", "abc"}, "send-queue"},
		{"MaxFrameTooSmall", []string{"--dev", "--max-frame", "100"}, "max-frame"},
		{"NegativeHistoryTTL", []string{"--dev", "--history-ttl", "-5s"}, "history-ttl"},
		{"ZeroIdempotencyTTL", []string{"--dev", "--idempotency-ttl", "0s"}, "idempotency-ttl"},
		{"NegativeHelloTimeout", []string{"--dev", "--hello-timeout=-1s"}, "hello-timeout"},
		{"NegativeHeartbeat", []string{"--dev", "--heartbeat", "-1s"}, "heartbeat"},
		{"NegativeDrainTimeout", []string{"--dev", "--drain-timeout", "-1s"}, "drain-timeout"},
		{"NegativeDrainSpread", []string{"--dev", "--drain-spread", "-1s"}, "drain-spread"},
		{"UnknownLogLevel", []string{"--dev", "--log-level", "verbose"}, "log-level"},
		{"UnknownLogFormat", []string{"--dev", "--log-format", "xml"}, "log-format"},
		{"TLSCertWithoutKey", []string{"--dev", "--tls-cert", "cert.pem"}, "tls-key"},
		{"TLSKeyWithoutCert", []string{"--dev", "--tls-key", "key.pem"}, "tls-cert"},
		{"MaxQueuedBytesABC", []string{"--dev", "--max-queued-bytes", "lots"}, "max-queued-bytes"},
		{"MaxWriteDelayNegative", []string{"--dev", "--max-write-delay", "-5ms"}, "max-write-delay"},
		{"MaxWriteDelayTiny", []string{"--dev", "--max-write-delay", "100us"}, "max-write-delay"},
		{"MaxWriteDelayHuge", []string{"--dev", "--max-write-delay", "2s"}, "max-write-delay"},
		{"HistoryMaxBytesABC", []string{"--dev", "--history-max-bytes", "lots"}, "history-max-bytes"},
		{"HistoryMaxBytesBelowMaxFrame", []string{"--dev", "--history-max-bytes", "1KiB"}, "history-max-bytes"},
		{"RedisWithoutScheme", []string{"--dev", "--redis", "localhost:6379"}, "redis"},
		{"RedisIPWithoutScheme", []string{"--dev", "--redis", "127.0.0.1:6379"}, "redis"},
		{"RedisHTTPScheme", []string{"--dev", "--redis", "http://localhost:6379"}, "redis"},
		{"RedisClusterWithoutRedis", []string{"--dev", "--redis-cluster"}, "redis-cluster"},
		{"RedisSentinelWithoutRedis", []string{"--dev", "--redis-sentinel", "m"}, "redis-sentinel"},
		{"RedisClusterAndSentinel", []string{"--dev", "--redis", "a:1", "--redis-cluster", "--redis-sentinel", "m"}, "redis-sentinel"},
		{"RedisListWithoutMode", []string{"--dev", "--redis", "redis://a:1,redis://b:2"}, "redis"},
		{"RedisClusterBadSeed", []string{"--dev", "--redis-cluster", "--redis", "redis://a:1,http://b:2"}, "redis"},
		{"RedisClusterEmptySeed", []string{"--dev", "--redis-cluster", "--redis", "redis://a:1,,redis://b:2"}, "redis"},
		{"RedisPrefixWithBraces", []string{"--dev", "--redis-prefix", "a{b}"}, "redis-prefix"},
		{"RedisPrefixEmpty", []string{"--dev", "--redis-prefix="}, "redis-prefix"},
		{"SendQueueBelowMaxFrame", []string{"--dev", "--max-frame", "1MiB", "--send-queue", "512KiB"}, "send-queue"},
		{"JWTSecretShort", []string{"--jwt-secret", "fifteen-bytes!!"}, "jwt-secret"},
		{"NoKeyWithoutDev", []string{"--listen", "127.0.0.1:0"}, "jwt-secret"},
		{"ListenWithoutPort", []string{"--dev", "--listen", "localhost"}, "listen"},
		{"AdvertiseWildcard", []string{"--dev", "--advertise", "0.0.0.0:8080"}, "advertise"},
		{"AdvertiseIPv6Wildcard", []string{"--dev", "--advertise", "[::]:8080"}, "advertise"},
		{"AdvertiseWithoutHost", []string{"--dev", "--advertise", ":8080"}, "advertise"},
		{"AdvertiseWithoutPort", []string{"--dev", "--advertise", "10.0.0.5"}, "advertise"},
		{"AdvertisePortZero", []string{"--dev", "--advertise", "10.0.0.5:0"}, "advertise"},
		{"AdvertiseEmpty", []string{"--dev", "--advertise="}, "advertise"},
		{"GivenTwice", []string{"--dev", "--listen", ":1", "--listen", ":2"}, "listen"},
		{"UnknownFlag", []string{"--dev", "--no-such-flag"}, "no-such-flag"},
		{"MissingValue", []string{"--dev", "--listen"}, "listen"},
		{"MaxConnsBelowMinusOne", []string{"--dev", "--max-conns", "-2"}, "max-conns"},
		{"MaxConnsABC", []string{"--dev", "--max-conns", "many"}, "max-conns"},
		{"MaxConnsPerIPNegative", []string{"--dev", "--max-conns-per-ip", "-1"}, "max-conns-per-ip"},
		{"MaxConnsPerUserNegative", []string{"--dev", "--max-conns-per-user", "-1"}, "max-conns-per-user"},
		{"TrustedProxiesHostName", []string{"--dev", "--trusted-proxies", "10.0.0.1,proxy.internal"}, "trusted-proxies"},
		{"TrustedProxiesBadCIDR", []string{"--dev", "--trusted-proxies", "10.0.0.0/40"}, "trusted-proxies"},
		{"AcceptRateNegative", []string{"--dev", "--accept-rate", "-1"}, "accept-rate"},
		{"AcceptRateInfinite", []string{"--dev", "--accept-rate", "+Inf"}, "accept-rate"},
		{"AcceptBurstNegative", []string{"--dev", "--accept-burst", "-1"}, "accept-burst"},
		{"AcceptQueueNegative", []string{"--dev", "--accept-queue", "-3"}, "accept-queue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Never start a real server: the arguments must fail to parse.
			if _, err := parseServeFlags(tt.args, noEnv); err == nil {
				t.Fatalf("parseServeFlags(%q) = nil, want an error", tt.args)
			}
			args := append([]string{"serve"}, tt.args...)
			code, stdout, stderr := runCmd(t, args...)
			wantFlagError(t, args, code, stdout, stderr, tt.flag)
		})
	}
}

// A stray word after the flags is a usage error like an unknown command:
// exit 2, not 1.
func TestRun_ServeUnexpectedArgument(t *testing.T) {
	t.Parallel()
	args := []string{"serve", "--dev", "extra"}
	code, stdout, stderr := runCmd(t, args...)
	if code != 2 {
		t.Errorf("run(%q) = %d, want 2", args, code)
	}
	if stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "extra") {
		t.Errorf("run(%q) stdout %q, stderr %q, want one line on stderr naming %q", args, stdout, stderr, "extra")
	}
}

func TestCheckAdvertise(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in string
		ok bool
	}{
		{"10.0.0.5:8080", true},
		{"sb-1.internal:8080", true},
		{"sb-1.internal.:8080", true},
		{"localhost:1", true},
		{"node_7:65535", true},
		{"[2001:db8::1]:443", true},
		{"[fd00::2]:8080", true},
		{"", false},
		{"10.0.0.5", false},
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"[::ffff:0.0.0.0]:8080", false},
		{"10.0.0.5:0", false},
		{"10.0.0.5:65536", false},
		{"10.0.0.5:http", false},
		{"10.0.0.5:-1", false},
		{"[fe80::1%eth0]:8080", false},
		{"224.0.0.1:8080", false},
		{"256.1.1.1:8080", false},
		{"1.2.3:8080", false},
		{"bad host:8080", false},
		{"-sb.internal:8080", false},
		{"sb..internal:8080", false},
		{"sb/1:8080", false},
		{"http://sb-1:8080", false},
		{strings.Repeat("a", 64) + ".example:80", false},
		{"2001:db8::1:443", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			if err := checkAdvertise(tt.in); (err == nil) != tt.ok {
				t.Errorf("checkAdvertise(%q) = %v, want ok %v", tt.in, err, tt.ok)
			}
		})
	}
}

// serve -h prints the usage on stdout and exits 0: every flag once, with
// its environment variable and its default, each default once.
func TestRun_ServeHelpListsFlags(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help", "-help"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCmd(t, "serve", arg)
			if code != 0 || stderr != "" {
				t.Fatalf("run(serve %s) = %d, stderr %q; want 0 and nothing on stderr", arg, code, stderr)
			}
			checkServeHelp(t, stdout)
		})
	}
}

// checkServeHelp checks the usage of serve: the same for the in-process
// command and the built binary.
func checkServeHelp(t *testing.T, help string) {
	t.Helper()
	if !strings.HasPrefix(help, "usage: switchboard serve") {
		t.Errorf("help starts %q, want the usage line", help[:min(len(help), 40)])
	}
	for name := range serveFields {
		entry := regexp.MustCompile(`(?m)^  --` + name + `( .*)?$`)
		lines := entry.FindAllString(help, -1)
		if len(lines) != 1 {
			t.Errorf("--%s is listed %d times, want once", name, len(lines))
			continue
		}
		if env := regexp.MustCompile(`\b` + envName(name) + `\b`); !env.MatchString(lines[0]) || len(env.FindAllString(help, -1)) != 1 {
			t.Errorf("--%s is listed as %q, want %s beside it, once in the help", name, lines[0], envName(name))
		}
	}
	if line := regexp.MustCompile(`(?m)^  --redis .*$`).FindString(help); !strings.HasSuffix(line, ", REDIS_URL") {
		t.Errorf("--redis is listed as %q, want REDIS_URL beside it", line)
	}
	for _, entry := range strings.Split(help, "\n  --")[1:] {
		if n := strings.Count(entry, "default"); n > 1 {
			t.Errorf("flag entry %q names its default %d times, want once", entry, n)
		}
	}
	for want, n := range map[string]int{
		"(default :8080)": 1, "(default 65536)": 1, "(default 1MiB)": 2, "(default: random)": 1,
		"(default 25s)": 1, "(default 5m)": 2, "(default 1048576)": 0, "5m0s": 0,
	} {
		if got := strings.Count(help, want); got != n {
			t.Errorf("help holds %q %d times, want %d", want, got, n)
		}
	}
}

// The admission flags reach the instance's Config: --accept-rate 0 turns
// the accept rate off (Config's 0 would be its default), and
// --trusted-proxies is parsed.
func TestServeFlags_AdmissionConfig(t *testing.T) {
	t.Parallel()
	f, err := parseServeFlags([]string{"--dev", "--accept-rate", "0", "--trusted-proxies", "10.0.0.0/8,192.168.1.7",
		"--max-conns", "-1", "--max-conns-per-ip", "3", "--max-conns-per-user", "4", "--accept-queue", "9"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AcceptRate >= 0 || cfg.MaxConns != -1 || cfg.MaxConnsPerIP != 3 || cfg.MaxConnsPerUser != 4 || cfg.AcceptQueue != 9 {
		t.Errorf("config = rate %v, max %d, per ip %d, per user %d, queue %d", cfg.AcceptRate, cfg.MaxConns, cfg.MaxConnsPerIP, cfg.MaxConnsPerUser, cfg.AcceptQueue)
	}
	if len(cfg.TrustedProxies) != 2 || cfg.TrustedProxies[1].String() != "192.168.1.7/32" {
		t.Errorf("trusted proxies = %v", cfg.TrustedProxies)
	}
	f, err = parseServeFlags([]string{"--dev"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _ = f.config(nil); cfg.AcceptRate != 5000 || cfg.MaxConns != 0 {
		t.Errorf("default config: accept rate %v, max conns %d; want 5000 and 0 (derived)", cfg.AcceptRate, cfg.MaxConns)
	}
}

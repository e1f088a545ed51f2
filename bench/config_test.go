package bench

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseSrcIPs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{name: "Range", in: "127.0.0.1-127.0.0.4", want: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}},
		{name: "List", in: "127.0.0.1, 127.0.0.9", want: []string{"127.0.0.1", "127.0.0.9"}},
		{name: "RangeAndSingle", in: "127.0.0.8-127.0.0.9,127.1.0.1", want: []string{"127.0.0.8", "127.0.0.9", "127.1.0.1"}},
		{name: "AcrossOctet", in: "127.0.0.255-127.0.1.0", want: []string{"127.0.0.255", "127.0.1.0"}},
		{name: "IPv6Loopback", in: "::1", want: []string{"::1"}},
		{name: "OneAddressRange", in: "127.0.0.3-127.0.0.3", want: []string{"127.0.0.3"}},
		{name: "NotLoopback", in: "10.0.0.1", wantErr: "not a loopback"},
		{name: "RangeLeavesLoopback", in: "127.255.255.255-128.0.0.1", wantErr: "not a loopback"},
		{name: "Reversed", in: "127.0.0.9-127.0.0.1", wantErr: "ends before"},
		{name: "Garbage", in: "127.0.0.x", wantErr: "not an IP"},
		{name: "Empty", in: " , ", wantErr: "no address"},
		{name: "IPv6Range", in: "::1-::2", wantErr: "IPv4 only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSrcIPs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSrcIPs(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSrcIPs(%q): %v", tt.in, err)
			}
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			if !slices.Equal(s, tt.want) {
				t.Errorf("ParseSrcIPs(%q) = %v, want %v", tt.in, s, tt.want)
			}
		})
	}
}

func TestParseLadder(t *testing.T) {
	t.Parallel()
	got, err := ParseLadder("10, 25,50,100,0.5")
	if err != nil || !slices.Equal(got, []float64{10, 25, 50, 100, 0.5}) {
		t.Errorf("ParseLadder = %v, %v", got, err)
	}
	for _, bad := range []string{"", "10,-1", "0", "ten", "1e9"} {
		if got, err := ParseLadder(bad); err == nil {
			t.Errorf("ParseLadder(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParsePIDs(t *testing.T) {
	t.Parallel()
	got, err := ParsePIDs("12, 345")
	if err != nil || !slices.Equal(got, []int{12, 345}) {
		t.Errorf("ParsePIDs = %v, %v", got, err)
	}
	if _, err := ParsePIDs("12,x"); err == nil {
		t.Error("ParsePIDs(12,x) succeeded")
	}
}

func TestConfig_Defaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{
			name: "SwitchboardPathAndAPI", cfg: Config{Workload: Fanout, URLs: []string{"ws://127.0.0.1:8080"}},
			check: func(t *testing.T, c Config) {
				if c.URLs[0] != "ws://127.0.0.1:8080/ws" || c.APIs[0] != "http://127.0.0.1:8080" {
					t.Errorf("URLs %v APIs %v", c.URLs, c.APIs)
				}
				if c.Conns != DefaultMembers || c.Publish != PublishAPI || c.Ladder[0] != DefaultRate || c.Procs != 1 {
					t.Errorf("defaults not applied: %+v", c)
				}
			},
		},
		{
			name: "CentrifugoPath", cfg: Config{Workload: Idle, Target: Centrifugo, URLs: []string{"ws://localhost:8000"}},
			check: func(t *testing.T, c Config) {
				if c.URLs[0] != "ws://localhost:8000/connection/websocket" {
					t.Errorf("URL %v", c.URLs[0])
				}
			},
		},
		{
			name: "RoomsFromConns", cfg: Config{Workload: Rooms, Conns: 10_001, URLs: []string{"ws://[::1]:1/ws"}},
			check: func(t *testing.T, c Config) {
				if c.Rooms != 5000 || c.Members != 2 || c.Conns != 10_000 || c.Publish != PublishWS {
					t.Errorf("rooms %d members %d conns %d publish %s", c.Rooms, c.Members, c.Conns, c.Publish)
				}
			},
		},
		{name: "RemoteHostRefused", cfg: Config{Workload: Idle, URLs: []string{"ws://example.com:80/ws"}}, wantErr: "loopback"},
		{
			name: "TLS", cfg: Config{Workload: Idle, URLs: []string{"wss://127.0.0.1:8443"}},
			check: func(t *testing.T, c Config) {
				if c.URLs[0] != "wss://127.0.0.1:8443/ws" || c.APIs[0] != "https://127.0.0.1:8443" {
					t.Errorf("URLs %v APIs %v", c.URLs, c.APIs)
				}
			},
		},
		{name: "RemoteTLSRefused", cfg: Config{Workload: Idle, URLs: []string{"wss://example.com:443"}}, wantErr: "loopback"},
		{name: "PrivateAddressRefused", cfg: Config{Workload: Idle, URLs: []string{"ws://127.0.0.1:1", "ws://192.168.1.2:8080"}}, wantErr: "loopback"},
		{name: "RemoteAPIRefused", cfg: Config{Workload: Idle, URLs: []string{"ws://127.0.0.1:1"}, APIs: []string{"http://10.0.0.1:80"}}, wantErr: "loopback"},
		{name: "RemoteSrcIPRefused", cfg: Config{Workload: Idle, URLs: []string{"ws://127.0.0.1:1"}, SrcIPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}, wantErr: "loopback"},
		{name: "NoURL", cfg: Config{Workload: Idle}, wantErr: "url"},
		{name: "HTTPURL", cfg: Config{Workload: Idle, URLs: []string{"http://127.0.0.1:1"}}, wantErr: "ws://"},
		{name: "BadWorkload", cfg: Config{Workload: "soak", URLs: []string{"ws://127.0.0.1:1"}}, wantErr: "workload"},
		{name: "BadTarget", cfg: Config{Workload: Idle, Target: "nats", URLs: []string{"ws://127.0.0.1:1"}}, wantErr: "target"},
		{name: "SmallPayload", cfg: Config{Workload: Fanout, PayloadBytes: 10, URLs: []string{"ws://127.0.0.1:1"}}, wantErr: "payload"},
		{name: "RoomsPublishAPI", cfg: Config{Workload: Rooms, Publish: PublishAPI, URLs: []string{"ws://127.0.0.1:1"}}, wantErr: "publish"},
		{name: "ProcsWithoutCommand", cfg: Config{Workload: Idle, Procs: 2, URLs: []string{"ws://127.0.0.1:1"}}, wantErr: "procs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := tt.cfg.withDefaults()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("withDefaults() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("withDefaults(): %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestCheckLoopback_IsErrNotLoopback(t *testing.T) {
	t.Parallel()
	if err := checkLoopback("8.8.8.8:53"); !errors.Is(err, errNotLoopback) {
		t.Errorf("checkLoopback(8.8.8.8:53) = %v, want errNotLoopback", err)
	}
	for _, ok := range []string{"127.0.0.1:80", "127.5.6.7", "localhost:1", "[::1]:8080"} {
		if err := checkLoopback(ok); err != nil {
			t.Errorf("checkLoopback(%q) = %v", ok, err)
		}
	}
}

func TestConfig_LoadOptions(t *testing.T) {
	t.Parallel()
	base := Config{Workload: Fanout, URLs: []string{"ws://127.0.0.1:1"}}
	c, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Receiver != ReceivePooled || c.APIWorkers != DefaultAPIWorkers || c.APIQueue != 0 || c.Warmup != 0 {
		t.Errorf("defaults: receiver %q, api workers %d, queue %d, warmup %v", c.Receiver, c.APIWorkers, c.APIQueue, c.Warmup)
	}
	w := base
	w.Warmup = 6 * time.Second
	if c, err = w.withDefaults(); err != nil || c.WarmupRate != DefaultWarmupRate {
		t.Errorf("warm-up without a rate: rate %v, err %v; want %v", c.WarmupRate, err, DefaultWarmupRate)
	}

	tests := []struct {
		name    string
		change  func(c *Config)
		wantErr string
	}{
		{name: "UnknownReceiver", change: func(c *Config) { c.Receiver = "parse" }, wantErr: "receiver"},
		{name: "NegativeWorkers", change: func(c *Config) { c.APIWorkers = -1 }, wantErr: "api-workers"},
		{name: "NegativeQueue", change: func(c *Config) { c.APIQueue = -1 }, wantErr: "api-queue"},
		{name: "NegativeWarmup", change: func(c *Config) { c.Warmup = -time.Second }, wantErr: "warmup"},
		{name: "NegativeWarmupRate", change: func(c *Config) { c.WarmupRate = -1 }, wantErr: "warmup-rate"},
		{name: "IdleHasNoLadder", change: func(c *Config) { c.Workload = Idle; c.Continuous = true }, wantErr: "not idle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := base
			tt.change(&c)
			if _, err := c.withDefaults(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("withDefaults = %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

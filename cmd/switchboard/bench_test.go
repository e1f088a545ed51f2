package main

import (
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/bench"
)

func TestParseBenchFlags(t *testing.T) {
	t.Parallel()
	url := []string{"--url", "ws://127.0.0.1:1/ws"}
	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		cfg, _, err := parseBenchFlags("fanout", url, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Receiver != bench.ReceivePooled || cfg.APIWorkers != bench.DefaultAPIWorkers || cfg.APIQueue != 0 ||
			cfg.Warmup != 0 || cfg.Continuous || cfg.Saturate || !cfg.Batch || cfg.BrokerPIDs != nil {
			t.Errorf("defaults: %+v", cfg)
		}
	})
	t.Run("W2API", func(t *testing.T) {
		t.Parallel()
		args := append(slices.Clone(url), "--receiver", "scan", "--api-workers", "32", "--api-queue", "8",
			"--warmup", "6s", "--warmup-rate", "5", "--continuous", "--saturate", "--ladder", "25,100",
			"--server-pids", "11,12", "--broker-pids", "13")
		cfg, _, err := parseBenchFlags("fanout", args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Receiver != bench.ReceiveScan || cfg.APIWorkers != 32 || cfg.APIQueue != 8 || cfg.Warmup != 6*time.Second ||
			cfg.WarmupRate != 5 || !cfg.Continuous || !cfg.Saturate || !slices.Equal(cfg.Ladder, []float64{25, 100}) ||
			!slices.Equal(cfg.ServerPIDs, []int{11, 12}) || !slices.Equal(cfg.BrokerPIDs, []int{13}) {
			t.Errorf("parsed: %+v", cfg)
		}
	})
	bad := []struct {
		name string
		args []string
		flag string
	}{
		{name: "UnknownReceiver", args: []string{"--receiver", "parse"}, flag: "receiver"},
		{name: "ZeroWorkers", args: []string{"--api-workers", "0"}, flag: "api-workers"},
		{name: "NegativeQueue", args: []string{"--api-queue", "-1"}, flag: "api-queue"},
		{name: "NegativeWarmup", args: []string{"--warmup", "-1s"}, flag: "warmup"},
		{name: "ZeroWarmupRate", args: []string{"--warmup-rate", "0"}, flag: "warmup-rate"},
		{name: "BadBrokerPIDs", args: []string{"--broker-pids", "redis"}, flag: "broker-pids"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := parseBenchFlags("fanout", append(slices.Clone(url), tt.args...), io.Discard)
			var fe *flagError
			if !errors.As(err, &fe) || fe.flag != tt.flag {
				t.Errorf("parseBenchFlags(%v) = %v, want an error naming --%s", tt.args, err, tt.flag)
			}
		})
	}
}

package bench

import (
	"fmt"
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range: latencies are recorded in microseconds from 1 µs to
// 5 minutes with 3 significant digits (0.1 % resolution).
const (
	histMin    = 1
	histMax    = 300_000_000
	histDigits = 3
	// histShards spreads concurrent recording over independent locks.
	histShards = 8
)

func newHDR() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// latencies records latencies from many goroutines: each records into one
// of a few shards, chosen by the caller (its connection number), and the
// shards are merged when read.
type latencies struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

// record adds one latency in microseconds; values out of range are clamped.
func (l *latencies) record(shard int, us int64) {
	us = min(max(us, histMin), histMax)
	s := &l.shards[shard%histShards]
	s.mu.Lock()
	if s.h == nil {
		s.h = newHDR()
	}
	_ = s.h.RecordValue(us)
	s.mu.Unlock()
}

// merged returns one histogram with every shard's values.
func (l *latencies) merged() *hdrhistogram.Histogram {
	out := newHDR()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		if s.h != nil {
			out.Merge(s.h)
		}
		s.mu.Unlock()
	}
	return out
}

// encodeHist encodes h for a parent process (HdrHistogram's compressed V2
// format, base64).
func encodeHist(h *hdrhistogram.Histogram) (string, error) {
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", fmt.Errorf("encode histogram: %w", err)
	}
	return string(b), nil
}

// decodeHist decodes what encodeHist returned; empty is an empty histogram.
func decodeHist(s string) (*hdrhistogram.Histogram, error) {
	if s == "" {
		return newHDR(), nil
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("decode histogram: %w", err)
	}
	return h, nil
}

// Latency summarizes a latency distribution in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	P999  float64 `json:"p999Ms"`
	Max   float64 `json:"maxMs"`
	Mean  float64 `json:"meanMs"`
}

// summarize reads the percentiles of h (recorded in microseconds).
func summarize(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
		Mean:  h.Mean() / 1000,
	}
}

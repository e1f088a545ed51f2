package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"sync"
	"testing"
)

func TestLatencies_Percentiles(t *testing.T) {
	t.Parallel()
	var l latencies
	var wg sync.WaitGroup
	// 1..1000 ms, recorded in µs from several goroutines.
	for g := range 4 {
		wg.Go(func() {
			for v := g + 1; v <= 1000; v += 4 {
				l.record(g, int64(v)*1000)
			}
		})
	}
	wg.Wait()
	got := summarize(l.merged())
	checks := []struct {
		name      string
		got, want float64
	}{
		{"p50", got.P50, 500}, {"p90", got.P90, 900}, {"p99", got.P99, 990}, {"max", got.Max, 1000}, {"mean", got.Mean, 500.5},
	}
	if got.Count != 1000 {
		t.Errorf("Count = %d, want 1000", got.Count)
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > c.want*0.002 {
			t.Errorf("%s = %v ms, want %v ms ± 0.2%%", c.name, c.got, c.want)
		}
	}
}

func TestLatencies_ClampsOutOfRange(t *testing.T) {
	t.Parallel()
	var l latencies
	l.record(0, -5)         // clock skew between processes
	l.record(1, 10*histMax) // beyond the range
	if n := l.merged().TotalCount(); n != 2 {
		t.Errorf("recorded %d values, want 2", n)
	}
}

func TestHist_EncodeDecode(t *testing.T) {
	t.Parallel()
	var l latencies
	for v := range int64(500) {
		l.record(int(v), 100+v*7)
	}
	h := l.merged()
	s, err := encodeHist(h)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeHist(s)
	if err != nil {
		t.Fatal(err)
	}
	if back.TotalCount() != h.TotalCount() || back.ValueAtQuantile(99) != h.ValueAtQuantile(99) || back.Max() != h.Max() {
		t.Errorf("decoded histogram differs: count %d/%d p99 %d/%d", back.TotalCount(), h.TotalCount(), back.ValueAtQuantile(99), h.ValueAtQuantile(99))
	}
	empty, err := decodeHist("")
	if err != nil || empty.TotalCount() != 0 {
		t.Errorf(`decodeHist("") = %v, %v; want an empty histogram`, empty, err)
	}
	if _, err := decodeHist("not base64!"); err == nil {
		t.Error("decodeHist of garbage succeeded")
	}
}

func TestSummarizeSteps(t *testing.T) {
	t.Parallel()
	steps := []StepResult{
		{Rate: 10, Expected: 100, Received: 100, DeliveredPerSec: 20, Latency: Latency{P99: 5}},
		{Rate: 25, Expected: 250, Received: 250, DeliveredPerSec: 50, Latency: Latency{P99: 40}, PerCoreSecond: 900},
		{Rate: 50, Expected: 500, Received: 500, DeliveredPerSec: 100, Latency: Latency{P99: 150}},            // too slow
		{Rate: 100, Expected: 1000, Received: 990, Lost: 10, DeliveredPerSec: 198, Latency: Latency{P99: 20}}, // lossy
		{Rate: 200, Expected: 2000, Received: 1000, Lost: 1000, DeliveredPerSec: 150, Latency: Latency{P99: 20}},
	}
	s := summarizeSteps(steps)
	if s.CleanRate != 25 {
		t.Errorf("CleanRate = %v, want 25", s.CleanRate)
	}
	if s.PeakDeliveredPerSec != 198 || s.PeakRate != 100 {
		t.Errorf("peak = %v at %v, want 198 at 100", s.PeakDeliveredPerSec, s.PeakRate)
	}
	if s.PeakPerCoreSecond != 900 {
		t.Errorf("PeakPerCoreSecond = %v, want 900", s.PeakPerCoreSecond)
	}
}

func TestResult_Write(t *testing.T) {
	t.Parallel()
	r := &Result{
		Workload: Fanout, Target: Switchboard, Label: "sb", URLs: []string{"ws://127.0.0.1:1/ws"}, Conns: 2000, Rooms: 1, Members: 2000,
		Publish: PublishAPI, Payload: 100, Procs: 2, StepSeconds: 5,
		Connect: ConnectResult{Opened: 2000, Seconds: 1, PerSecond: 2000},
		Steps: []StepResult{{Rate: 800, Sent: 4000, Expected: 8_000_000, Received: 8_000_000, DeliveredPerSec: 1_600_000,
			Latency: Latency{P50: 1.234, P90: 12.5, P99: 123.4, Max: 1234}, ServerCores: 1.5, PerCoreSecond: 1_000_000}},
		Notes: map[string]int64{"error rate_limited": 3},
	}
	r.Summary = summarizeSteps(r.Steps)
	var text, md, js bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1,600,000", "1.23", "12.5", "123", "1234", "1.50", "1,000,000", "error rate_limited ×3"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, text.String())
		}
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown output lacks %q:\n%s", want, md.String())
		}
	}
	if !strings.Contains(md.String(), "| ---: |") {
		t.Errorf("markdown output has no table:\n%s", md.String())
	}
	cols := -1
	for line := range strings.SplitSeq(md.String(), "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		if n := strings.Count(line, "|"); cols == -1 {
			cols = n
		} else if n != cols {
			t.Errorf("markdown row has %d cells, the header %d: %s", n-1, cols-1, line)
		}
	}
	var back Result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON output does not decode: %v", err)
	}
	if back.Steps[0].Latency.P99 != 123.4 || back.Summary.PeakDeliveredPerSec != 1_600_000 {
		t.Errorf("JSON round trip lost values: %+v", back.Steps[0])
	}
}

func TestNum(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]string{0: "0", 7: "7", 2.5: "2.5", 999.6: "1,000", 1234567: "1,234,567"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestResult_WriteW2API(t *testing.T) {
	t.Parallel()
	pl := Latency{P50: 3.5, P99: 271}
	r := &Result{
		Workload: Fanout, Target: Switchboard, Label: "W2-API", URLs: []string{"ws://127.0.0.1:1/ws"}, Rooms: 1, Members: 2000,
		Publish: PublishAPI, APIWorkers: 64, Receiver: ReceiveScan, Continuous: true, Payload: 100, Procs: 2, StepSeconds: 6,
		Steps: []StepResult{
			{Rate: 10, Warmup: true, Sent: 60, Acked: 60, AcceptedPerSec: 10, PublishLatency: &pl},
			{Rate: 400, Due: 2400, Sent: 1440, Missed: 960, Acked: 1440, AcceptedPerSec: 240, DeliveredPerSec: 480_000,
				PublishLatency: &pl, ServerCPU: 6, ServerCores: 1, BrokerCPU: 1.2, BrokerCores: 0.2, PerCoreSecond: 480_000, PerCoreSecondWithBroker: 400_000},
		},
	}
	r.Summary = summarizeSteps(r.Steps)
	var md bytes.Buffer
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	out := md.String()
	for _, want := range []string{"10 (warm-up)", "skipped", "accepted/s", "publish p99 ms", "271", "broker cores", "incl. broker", "400,000",
		"64 workers", "scan receivers", "back to back", "skipped from 400 msg/s on", "at most 240 publishes/s accepted"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	cols := -1
	for line := range strings.SplitSeq(out, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		if n := strings.Count(line, "|"); cols == -1 {
			cols = n
		} else if n != cols {
			t.Errorf("markdown row has %d cells, the header %d: %s", n-1, cols-1, line)
		}
	}
}

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what a run measured. It is printed as a table, as Markdown or
// as JSON (--json).
type Result struct {
	Workload Workload  `json:"workload"`
	Target   Target    `json:"target"`
	Label    string    `json:"label"`
	Started  time.Time `json:"started"`
	URLs     []string  `json:"urls"`
	Conns    int       `json:"conns"`
	Rooms    int       `json:"rooms,omitempty"`
	Members  int       `json:"members,omitempty"`
	Publish  string    `json:"publish,omitempty"`
	Payload  int       `json:"payloadBytes,omitempty"`
	Procs    int       `json:"procs"`
	// Receiver is how the clients read (pooled, scan, decode); APIWorkers
	// how many API publishes were in flight at most; Continuous whether
	// the steps ran back to back.
	Receiver   string `json:"receiver,omitempty"`
	APIWorkers int    `json:"apiWorkers,omitempty"`
	Continuous bool   `json:"continuous,omitempty"`
	// StepSeconds is the length of each ladder step.
	StepSeconds float64 `json:"stepSeconds,omitempty"`

	Connect ConnectResult  `json:"connect"`
	Memory  []ServerMemory `json:"memory,omitempty"`
	Steps   []StepResult   `json:"steps,omitempty"`
	Summary *Summary       `json:"summary,omitempty"`
	// Notes counts noteworthy events: error codes, resets, dropped
	// connections, disconnect pushes.
	Notes map[string]int64 `json:"notes,omitempty"`
	// Warnings are problems with the measurement itself.
	Warnings []string `json:"warnings,omitempty"`
}

// ConnectResult describes how the connections were opened.
type ConnectResult struct {
	Opened int `json:"opened"`
	Failed int `json:"failed"`
	// Seconds is the time until every connection was open and joined.
	Seconds float64 `json:"seconds"`
	// PerSecond is Opened/Seconds.
	PerSecond float64  `json:"perSecond"`
	Errors    []string `json:"errors,omitempty"`
}

// ServerMemory is one server's resident memory around an idle run.
type ServerMemory struct {
	URL          string  `json:"url"`
	Conns        int     `json:"conns"`
	BeforeBytes  int64   `json:"beforeBytes"`
	AfterBytes   int64   `json:"afterBytes"`
	PerConnBytes float64 `json:"perConnBytes"`
	// Source says where the numbers come from: /metrics or /proc.
	Source string `json:"source"`
}

// StepResult is one ladder step.
type StepResult struct {
	// Rate is the offered publish rate, messages per second.
	Rate float64 `json:"rate"`
	// Warmup marks the warm-up step, which the summary leaves out.
	Warmup bool `json:"warmup,omitempty"`
	// Seconds is the step's length.
	Seconds float64 `json:"seconds,omitempty"`
	// Due, Sent and Missed count publishes: asked for by the schedule,
	// handed to a sender, and skipped: not handed over on time (the pacer
	// fell more than 100 ms behind, or no sender was free).
	Due    int64 `json:"due"`
	Sent   int64 `json:"sent"`
	Missed int64 `json:"missed"`
	// Acked publishes were accepted by the server; PubErrors were refused
	// or failed. AcceptedPerSec is Acked over the step's length.
	Acked          int64   `json:"acked"`
	PubErrors      int64   `json:"pubErrors"`
	AcceptedPerSec float64 `json:"acceptedPerSec"`
	// PublishLatency is the round trip of API publishes (request written
	// to answer read); nil for WebSocket publishing.
	PublishLatency *Latency `json:"publishLatency,omitempty"`
	// Expected deliveries (acked publishes × receivers), distinct
	// deliveries Received, Lost = Expected − Received (after the drain),
	// and duplicates.
	Expected int64 `json:"expected"`
	Received int64 `json:"received"`
	Lost     int64 `json:"lost"`
	Dups     int64 `json:"dups"`
	// DeliveredPerSec is Received over the step's duration; in a
	// continuous run, the deliveries that arrived during the step (from
	// any step) over its wall-clock length.
	DeliveredPerSec float64 `json:"deliveredPerSec"`
	Latency         Latency `json:"latency"`
	// ServerCPU is the CPU seconds the --server-pids used during the step
	// and its drain (kernel work in softirq context is charged to nobody,
	// see MachineCores); ServerCores the same per second of wall time; and
	// PerCoreSecond the deliveries per server CPU second.
	ServerCPU     float64 `json:"serverCPUSeconds,omitempty"`
	ServerCores   float64 `json:"serverCores,omitempty"`
	PerCoreSecond float64 `json:"deliveriesPerCoreSecond,omitempty"`
	// BrokerCPU and BrokerCores are the same for the --broker-pids, and
	// PerCoreSecondWithBroker the deliveries per CPU second of servers and
	// broker together.
	BrokerCPU               float64 `json:"brokerCPUSeconds,omitempty"`
	BrokerCores             float64 `json:"brokerCores,omitempty"`
	PerCoreSecondWithBroker float64 `json:"deliveriesPerCoreSecondWithBroker,omitempty"`
	// BenchCores is the load generator's own CPU use (all its processes),
	// and MachineCores the whole machine's (kernel work included).
	BenchCores   float64 `json:"benchCores,omitempty"`
	MachineCores float64 `json:"machineCores,omitempty"`
	// DrainSeconds is how long the step waited for late deliveries.
	DrainSeconds float64 `json:"drainSeconds"`
}

// Summary condenses a ladder.
type Summary struct {
	// PeakDeliveredPerSec is the highest delivery rate of any step, at
	// PeakRate.
	PeakDeliveredPerSec float64 `json:"peakDeliveredPerSec"`
	PeakRate            float64 `json:"peakRate"`
	// PeakPerCoreSecond is the highest deliveries per server CPU second,
	// and PeakPerCoreSecondWithBroker per CPU second of servers and broker.
	PeakPerCoreSecond           float64 `json:"peakPerCoreSecond,omitempty"`
	PeakPerCoreSecondWithBroker float64 `json:"peakPerCoreSecondWithBroker,omitempty"`
	// CleanRate is the highest rate whose step lost nothing, had no
	// duplicates, skipped no publish and kept p99 under CleanP99Ms.
	CleanRate  float64 `json:"cleanRate"`
	CleanP99Ms float64 `json:"cleanP99Ms"`
	// PeakAcceptedPerSec is the most publishes a second any step had
	// accepted; FirstSkipRate the lowest rate whose step skipped a
	// publish (0: none did).
	PeakAcceptedPerSec float64 `json:"peakAcceptedPerSec"`
	FirstSkipRate      float64 `json:"firstSkipRate,omitempty"`
}

// cleanP99 is the latency bound of Summary.CleanRate.
const cleanP99 = 100 * time.Millisecond

func summarizeSteps(steps []StepResult) *Summary {
	s := &Summary{CleanP99Ms: float64(cleanP99.Milliseconds())}
	for _, st := range steps {
		if st.Warmup {
			continue
		}
		if st.DeliveredPerSec > s.PeakDeliveredPerSec {
			s.PeakDeliveredPerSec, s.PeakRate = st.DeliveredPerSec, st.Rate
		}
		s.PeakPerCoreSecond = max(s.PeakPerCoreSecond, st.PerCoreSecond)
		s.PeakPerCoreSecondWithBroker = max(s.PeakPerCoreSecondWithBroker, st.PerCoreSecondWithBroker)
		s.PeakAcceptedPerSec = max(s.PeakAcceptedPerSec, st.AcceptedPerSec)
		if st.Missed > 0 && s.FirstSkipRate == 0 {
			s.FirstSkipRate = st.Rate
		}
		if st.Lost == 0 && st.Dups == 0 && st.Missed == 0 && st.PubErrors == 0 && st.Expected > 0 &&
			st.Latency.P99 < s.CleanP99Ms && st.Rate > s.CleanRate {
			s.CleanRate = st.Rate
		}
	}
	return s
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r as aligned tables.
func (r *Result) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "%s %s (%s): %s\n", r.Workload, r.Label, r.Target, r.describe())
	fmt.Fprintf(w, "connect: %d open, %d failed in %.2fs (%.0f conn/s)\n",
		r.Connect.Opened, r.Connect.Failed, r.Connect.Seconds, r.Connect.PerSecond)
	for _, e := range r.Connect.Errors {
		fmt.Fprintf(w, "  connect error: %s\n", e)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(r.Memory) > 0 {
		fmt.Fprintln(tw, "server\tconns\tRSS before\tRSS after\tper conn\tsource\t")
		for _, m := range r.Memory {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", m.URL, m.Conns, mib(m.BeforeBytes), mib(m.AfterBytes), kib(m.PerConnBytes), m.Source)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Steps) > 0 {
		head, rows := r.stepTable()
		fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
		for _, row := range rows {
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if r.Summary != nil {
		fmt.Fprintf(w, "peak %s deliveries/s at %s msg/s", num(r.Summary.PeakDeliveredPerSec), num(r.Summary.PeakRate))
		if r.Summary.PeakPerCoreSecond > 0 {
			fmt.Fprintf(w, "; peak %s deliveries per server core-second", num(r.Summary.PeakPerCoreSecond))
		}
		fmt.Fprintf(w, "; highest clean rate (no loss, p99 < %.0f ms): %s msg/s%s\n", r.Summary.CleanP99Ms, num(r.Summary.CleanRate), r.skipSummary())
	}
	writeNotes(w, r.Notes, r.Warnings)
	return nil
}

// WriteMarkdown writes r as Markdown tables, for BENCHMARKS.md.
func (r *Result) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "**%s, %s** (%s): %s\n\n", r.Workload, r.Label, r.Target, r.describe())
	switch {
	case len(r.Memory) > 0:
		fmt.Fprintln(w, "| server | conns | connect rate | RSS before | RSS after | per conn |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: |")
		for _, m := range r.Memory {
			fmt.Fprintf(w, "| %s | %d | %.0f conn/s | %s | %s | %s |\n", m.URL, m.Conns, r.Connect.PerSecond, mib(m.BeforeBytes), mib(m.AfterBytes), kib(m.PerConnBytes))
		}
	case len(r.Steps) > 0:
		head, rows := r.stepTable()
		fmt.Fprintln(w, "| "+strings.Join(head, " | ")+" |")
		fmt.Fprintln(w, "|"+strings.Repeat(" ---: |", len(head)))
		for _, row := range rows {
			fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
		}
	}
	if r.Connect.Failed > 0 {
		fmt.Fprintf(w, "\n%d connections failed: %s\n", r.Connect.Failed, strings.Join(r.Connect.Errors, "; "))
	}
	if r.Summary != nil {
		fmt.Fprintf(w, "\nPeak %s deliveries/s at %s msg/s", num(r.Summary.PeakDeliveredPerSec), num(r.Summary.PeakRate))
		if r.Summary.PeakPerCoreSecond > 0 {
			fmt.Fprintf(w, ", peak %s deliveries per server core-second", num(r.Summary.PeakPerCoreSecond))
		}
		fmt.Fprintf(w, "; highest clean rate (no loss, p99 < %.0f ms): %s msg/s%s.\n", r.Summary.CleanP99Ms, num(r.Summary.CleanRate), r.skipSummary())
	}
	if len(r.Notes) > 0 || len(r.Warnings) > 0 {
		fmt.Fprintln(w)
		writeNotes(w, r.Notes, r.Warnings)
	}
	fmt.Fprintln(w)
	return nil
}

// skipSummary tells the most publishes accepted per second and where
// publishes were first skipped.
func (r *Result) skipSummary() string {
	out := fmt.Sprintf("; at most %s publishes/s accepted", num(r.Summary.PeakAcceptedPerSec))
	if r.Summary.FirstSkipRate > 0 {
		out += fmt.Sprintf(", skipped from %s msg/s on", num(r.Summary.FirstSkipRate))
	} else {
		out += ", none skipped"
	}
	return out
}

// stepTable returns the column heads and the cells of the steps table.
// API publish round trips and broker columns appear only when measured.
func (r *Result) stepTable() (head []string, rows [][]string) {
	var withPub, withBroker bool
	for _, s := range r.Steps {
		withPub = withPub || s.PublishLatency != nil
		withBroker = withBroker || s.BrokerCPU > 0
	}
	head = []string{"rate msg/s", "sent", "skipped", "errors", "accepted/s", "lost", "dups", "deliveries/s", "p50 ms", "p90 ms", "p99 ms", "max ms"}
	if withPub {
		head = append(head, "publish p50 ms", "publish p99 ms")
	}
	head = append(head, "server cores")
	if withBroker {
		head = append(head, "broker cores")
	}
	head = append(head, "deliveries/core-s")
	if withBroker {
		head = append(head, "incl. broker")
	}
	head = append(head, "bench cores", "machine cores", "drain s")
	for _, s := range r.Steps {
		rate := num(s.Rate)
		if s.Warmup {
			rate += " (warm-up)"
		}
		row := []string{rate, fmt.Sprint(s.Sent), fmt.Sprint(s.Missed), fmt.Sprint(s.PubErrors), num(s.AcceptedPerSec),
			fmt.Sprint(s.Lost), fmt.Sprint(s.Dups), num(s.DeliveredPerSec),
			ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.Max)}
		if withPub {
			var pl Latency
			if s.PublishLatency != nil {
				pl = *s.PublishLatency
			}
			row = append(row, ms(pl.P50), ms(pl.P99))
		}
		row = append(row, cores(s.ServerCores))
		if withBroker {
			row = append(row, cores(s.BrokerCores))
		}
		row = append(row, perCore(s.PerCoreSecond))
		if withBroker {
			row = append(row, perCore(s.PerCoreSecondWithBroker))
		}
		row = append(row, cores(s.BenchCores), cores(s.MachineCores), fmt.Sprintf("%.1f", s.DrainSeconds))
		rows = append(rows, row)
	}
	return head, rows
}

func writeNotes(w io.Writer, notes map[string]int64, warnings []string) {
	for _, k := range slices.Sorted(maps.Keys(notes)) {
		fmt.Fprintf(w, "note: %s ×%d\n", k, notes[k])
	}
	for _, s := range warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
}

func (r *Result) describe() string {
	var parts []string
	switch r.Workload {
	case Idle:
		parts = append(parts, fmt.Sprintf("%d connections", r.Conns))
	default:
		parts = append(parts, fmt.Sprintf("%d rooms × %d members", r.Rooms, r.Members))
		pub := "publish " + r.Publish
		if r.Publish == PublishAPI && r.APIWorkers > 0 {
			pub += fmt.Sprintf(" (%d workers)", r.APIWorkers)
		}
		parts = append(parts, pub, fmt.Sprintf("%d-byte payload", r.Payload), fmt.Sprintf("%gs steps", r.StepSeconds))
		if r.Continuous {
			parts = append(parts, "back to back")
		}
	}
	if r.Receiver != "" {
		parts = append(parts, r.Receiver+" receivers")
	}
	parts = append(parts, fmt.Sprintf("%d instance(s)", len(r.URLs)), fmt.Sprintf("%d process(es)", r.Procs))
	return strings.Join(parts, ", ")
}

func num(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return commas(int64(v + 0.5))
	case v == float64(int64(v)):
		return fmt.Sprintf("%d", int64(v))
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

// commas formats n with thousands separators.
func commas(n int64) string {
	s := fmt.Sprintf("%d", n)
	if n < 0 {
		return "-" + commas(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func ms(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func perCore(v float64) string {
	if v == 0 {
		return "-"
	}
	return num(v)
}

func cores(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b float64) string {
	return fmt.Sprintf("%.1f KiB", b/1024)
}

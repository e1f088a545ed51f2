package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// rssMetric is the resident memory metric of Prometheus' process
// collector, which both Switchboard and Centrifugo export.
const rssMetric = "process_resident_memory_bytes"

// idle opens the connections, holds them for Duration and reports the
// connect rate and each server's memory per connection.
func (r *runner) idle(ctx context.Context) error {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: loopbackTLS()}}
	before := make([]ServerMemory, len(r.cfg.URLs))
	for i := range r.cfg.URLs {
		m, err := r.serverRSS(ctx, client, i)
		if err != nil {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("memory of %s before: %v", r.cfg.URLs[i], err))
		}
		before[i] = m
	}
	if err := r.connect(ctx); err != nil {
		return err
	}
	r.setPhase("holding %s", r.cfg.Duration)
	if err := sleep(ctx, r.cfg.Duration); err != nil {
		return err
	}
	for i := range r.cfg.URLs {
		after, err := r.serverRSS(ctx, client, i)
		if err != nil {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("memory of %s after: %v", r.cfg.URLs[i], err))
			continue
		}
		m := ServerMemory{URL: r.cfg.URLs[i], Conns: r.plan.perURL[i], BeforeBytes: before[i].AfterBytes, AfterBytes: after.AfterBytes, Source: after.Source}
		if m.Conns > 0 && m.BeforeBytes > 0 {
			m.PerConnBytes = float64(m.AfterBytes-m.BeforeBytes) / float64(m.Conns)
		}
		r.res.Memory = append(r.res.Memory, m)
	}
	if r.res.Connect.Failed > 0 {
		r.res.Warnings = append(r.res.Warnings, "some connections failed: per-connection memory divides by the planned count")
	}
	r.collectNotes(ctx)
	return nil
}

// serverRSS reads the resident memory of instance i into AfterBytes: from
// its /metrics, or from /proc when that has no RSS and --server-pids names
// one process per URL.
func (r *runner) serverRSS(ctx context.Context, client *http.Client, i int) (ServerMemory, error) {
	m := ServerMemory{URL: r.cfg.URLs[i]}
	v, err := scrapeMetric(ctx, client, r.cfg.APIs[i%len(r.cfg.APIs)], rssMetric)
	if err == nil {
		m.AfterBytes, m.Source = int64(v), "/metrics"
		return m, nil
	}
	if len(r.cfg.ServerPIDs) >= len(r.cfg.URLs) {
		rss, perr := procRSS(r.cfg.ServerPIDs[i])
		if perr == nil {
			m.AfterBytes, m.Source = rss, fmt.Sprintf("/proc/%d", r.cfg.ServerPIDs[i])
			return m, nil
		}
		err = errors.Join(err, perr)
	}
	return m, err
}

// collectNotes gathers the workers' event counts into the result.
func (r *runner) collectNotes(ctx context.Context) {
	replies, _ := r.all(ctx, func(int) (request, bool) { return request{Op: "stats", Step: 0}, true })
	for _, rep := range replies {
		if rep.Stats != nil {
			r.addNotes(rep.Stats.Notes)
		}
	}
}

func (r *runner) addNotes(notes map[string]int64) {
	for k, v := range notes {
		if r.res.Notes == nil {
			r.res.Notes = map[string]int64{}
		}
		r.res.Notes[k] += v
	}
}

// planIdle places N connections, each in its inbox and one shared room.
func planIdle(cfg Config, runID string, add planAdder) {
	n := len(cfg.URLs)
	room := fmt.Sprintf("idle-%s", runID)
	for g := range cfg.Conns {
		add((g/n)%cfg.Procs, connSpec{Index: g, User: userName(runID, g), Rooms: []string{room}, Inbox: true}, g%n)
	}
}

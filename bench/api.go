package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// apiJob is one publish through the HTTP API.
type apiJob struct {
	step      int
	room      string
	roomIdx   int
	seq       int64
	base      string
	receivers int
}

// apiPublisher publishes benchmark messages through the servers' HTTP API
// (POST /api/publish on both targets), in an open loop fed by Pace, from a
// fixed number of workers, each with one request in flight at most. A
// publish that finds no idle worker (and no room in the queue, if one was
// configured) when it is due is skipped. Each step's stats record the
// publishes' round trips (request written to answer read).
type apiPublisher struct {
	target Target
	key    string
	size   int
	client *http.Client
	steps  []*stepStats
	jobs   chan apiJob
	wg     sync.WaitGroup

	sent, acked, errors atomic.Int64
	idle                atomic.Int64 // workers waiting for a publish

	nmu   sync.Mutex
	notes map[string]int64
}

// newAPIPublisher starts cfg.APIWorkers workers, with counters for steps
// steps.
func newAPIPublisher(cfg Config, steps int) *apiPublisher {
	p := &apiPublisher{
		target: cfg.Target, key: cfg.APIKey, size: cfg.PayloadBytes,
		client: &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: cfg.APIWorkers,
				DisableCompression:  true,
				TLSClientConfig:     loopbackTLS(),
			},
		},
		jobs:  make(chan apiJob, cfg.APIQueue),
		notes: map[string]int64{},
	}
	for range max(steps, 1) {
		p.steps = append(p.steps, &stepStats{})
	}
	for range cfg.APIWorkers {
		p.wg.Go(func() {
			p.idle.Add(1)
			for job := range p.jobs {
				p.idle.Add(-1)
				p.publish(job)
				p.idle.Add(1)
			}
		})
	}
	// The first publishes must not be skipped because a worker had not
	// started yet.
	for p.idle.Load() < int64(cfg.APIWorkers) {
		runtime.Gosched()
	}
	return p
}

// offer hands a publish to an idle worker (or the queue); false when there
// is none.
func (p *apiPublisher) offer(job apiJob) bool {
	select {
	case p.jobs <- job:
		p.sent.Add(1)
		return true
	default:
		return false
	}
}

// close stops the senders after the queued publishes.
func (p *apiPublisher) close() {
	close(p.jobs)
	p.wg.Wait()
	p.client.CloseIdleConnections()
}

func (p *apiPublisher) note(what string) {
	p.nmu.Lock()
	p.notes[what]++
	p.nmu.Unlock()
}

// publish sends one message and counts the answer.
func (p *apiPublisher) publish(job apiJob) {
	st := p.steps[job.step]
	start := time.Now()
	data := appendPayload(make([]byte, 0, p.size+8), job.step, job.seq, start.UnixNano(), -1-job.roomIdx, p.size)
	err := p.post(context.Background(), job.base, job.room, data)
	st.lat.record(int(job.seq), time.Since(start).Microseconds())
	if err != nil {
		st.pubErrors.Add(1)
		p.errors.Add(1)
		p.note("api: " + err.Error())
		return
	}
	st.acked.Add(1)
	st.expected.Add(int64(job.receivers))
	p.acked.Add(1)
}

// post publishes data to room at the server at base.
func (p *apiPublisher) post(ctx context.Context, base, room string, data []byte) error {
	var body []byte
	switch p.target {
	case Centrifugo:
		body = append(body, `{"channel":`...)
		body = strconv.AppendQuote(body, centrifugoChannel(room))
	default:
		body = append(body, `{"room":`...)
		body = strconv.AppendQuote(body, room)
	}
	body = append(body, `,"data":`...)
	body = append(body, data...)
	body = append(body, '}')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if p.key != "" {
		if p.target == Centrifugo {
			req.Header.Set("X-API-Key", p.key)
		} else {
			req.Header.Set("Authorization", "Bearer "+p.key)
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("request failed: %s", failure(err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("HTTP %d %s", resp.StatusCode, e.Error.Code)
	}
	if p.target == Centrifugo {
		// Centrifugo answers API errors with 200 and an error object.
		var r struct {
			Error *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &r) == nil && r.Error != nil {
			return fmt.Errorf("error %d %s", r.Error.Code, r.Error.Message)
		}
	}
	return nil
}

// failure names the kind of a failed request in a few words, so that the
// run's notes group alike failures (the error's text names ports).
func failure(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before the answer"
	}
	return "other"
}

// stats reports step i's publish counts.
func (p *apiPublisher) stats(i int) workerStats {
	st := p.steps[i]
	return workerStats{
		Due: st.due.Load(), Sent: st.sent.Load(), Missed: st.missed.Load(),
		Acked: st.acked.Load(), PubErrors: st.pubErrors.Load(), Expected: st.expected.Load(),
	}
}

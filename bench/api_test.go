package bench

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestAPIPublisher_SkipsWhenNoWorkerIsFree checks the skip rule of the
// API publisher: with no queue, a publish is handed over only to an idle
// worker; while every worker waits for the server, offers fail.
func TestAPIPublisher_SkipsWhenNoWorkerIsFree(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		served.Add(1)
		_, _ = w.Write([]byte(`{"room":"r","epoch":"e","offset":1}`))
	}))
	defer srv.Close()
	p := newAPIPublisher(Config{Target: Switchboard, PayloadBytes: 100, APIWorkers: 2}, 1)
	defer p.close()
	defer close(release)
	job := apiJob{room: "r", base: srv.URL, receivers: 3}

	// The workers start idle; once both have taken a publish and wait for
	// the server, nothing more is taken.
	taken := 0
	deadline := time.Now().Add(5 * time.Second)
	for taken < 2 && time.Now().Before(deadline) {
		if p.offer(job) {
			taken++
		} else {
			time.Sleep(time.Millisecond)
		}
	}
	if taken != 2 {
		t.Fatalf("%d publishes handed to 2 idle workers, want 2", taken)
	}
	for range 50 {
		if p.offer(job) {
			t.Fatal("a publish was handed over while both workers were busy")
		}
	}
	release <- struct{}{}
	release <- struct{}{}
	deadline = time.Now().Add(5 * time.Second)
	for !p.offer(job) {
		if time.Now().After(deadline) {
			t.Fatal("no worker became free after the server answered")
		}
		time.Sleep(time.Millisecond)
	}
	release <- struct{}{}
	deadline = time.Now().Add(5 * time.Second)
	for p.stats(0).Acked != 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := p.stats(0)
	if st.Acked != 3 || st.Expected != 9 || st.PubErrors != 0 {
		t.Errorf("stats = %+v, want 3 acked, 9 expected deliveries", st)
	}
	if n := p.steps[0].lat.merged().TotalCount(); n != 3 {
		t.Errorf("%d publish round trips recorded, want 3", n)
	}
}

// TestAPIPublisher_QueueTakesWhatWorkersCannot checks that with a queue,
// publishes wait for a worker up to the queue's size.
func TestAPIPublisher_QueueTakesWhatWorkersCannot(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	p := newAPIPublisher(Config{Target: Switchboard, PayloadBytes: 100, APIWorkers: 1, APIQueue: 3}, 1)
	defer p.close()
	defer close(release)
	job := apiJob{room: "r", base: srv.URL}
	// One in the worker (eventually), three in the queue, then no more.
	taken := 0
	deadline := time.Now().Add(5 * time.Second)
	for taken < 4 && time.Now().Before(deadline) {
		if p.offer(job) {
			taken++
		}
	}
	if taken != 4 {
		t.Fatalf("took %d publishes, want 4 (1 worker + 3 queued)", taken)
	}
	// The worker may not have taken its first one from the queue yet:
	// wait until it has and the queue is full again.
	for len(p.jobs) < 3 {
		time.Sleep(time.Millisecond)
	}
	if p.offer(job) {
		t.Error("a publish was taken beyond the queue")
	}
}

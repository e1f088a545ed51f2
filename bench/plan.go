package bench

import "fmt"

// plan says which connections each worker opens and what the parent
// publishes through the API.
type plan struct {
	// perWorker lists each worker's connections.
	perWorker [][]connSpec
	// rooms are the benchmark rooms, and members their member counts
	// (receivers of an API publish).
	rooms   []string
	members []int
	// perURL counts the connections of each URL.
	perURL []int
	// pubsPerWorker counts each worker's publishing connections.
	pubsPerWorker []int
}

// makePlan spreads cfg's connections over URLs and workers: consecutive
// connections alternate between URLs, and between workers every len(URLs)
// connections, so that every worker talks to every instance.
func makePlan(cfg Config, runID string) plan {
	n := len(cfg.URLs)
	p := plan{perWorker: make([][]connSpec, cfg.Procs), perURL: make([]int, n), pubsPerWorker: make([]int, cfg.Procs)}
	add := func(worker int, s connSpec, urlIdx int) {
		s.URL = cfg.URLs[urlIdx]
		p.perURL[urlIdx]++
		p.perWorker[worker] = append(p.perWorker[worker], s)
		if s.PubRoom != "" {
			p.pubsPerWorker[worker]++
		}
	}
	switch cfg.Workload {
	case Idle:
		planIdle(cfg, runID, add)
	case Fanout:
		planFanout(cfg, runID, &p, add)
	case Rooms:
		planRooms(cfg, runID, &p, add)
	}
	return p
}

// planAdder places one connection on a worker and a URL.
type planAdder func(worker int, s connSpec, urlIdx int)

// userName is the user of connection g of run runID.
func userName(runID string, g int) string { return fmt.Sprintf("u%s-%d", runID, g) }

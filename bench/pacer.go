package bench

import (
	"context"
	"math"
	"time"
)

// Pacing bounds.
const (
	// minTick is the shortest ticker interval: faster rates issue several
	// sends per tick.
	minTick = time.Millisecond
	// maxLag is how far behind schedule the pacer may fall before it gives
	// up on the sends it is late for and counts them as missed: a stalled
	// generator does not turn into a burst that hides the stall.
	maxLag = 100 * time.Millisecond
)

// PaceStats counts what a pacer did.
type PaceStats struct {
	// Due is how many sends the schedule asked for.
	Due int64 `json:"due"`
	// Sent is how many sends were handed over.
	Sent int64 `json:"sent"`
	// Missed is how many were not: the pacer fell more than maxLag behind,
	// or the send refused (its queue was full).
	Missed int64 `json:"missed"`
}

// Pace calls send at rate per second for d, in an open loop: it never
// waits for a send to complete, so a slow server shows up as latency and
// missed sends, not as a lower offered rate. send is called from Pace's
// goroutine with the number of the send (0, 1, …); it must not block, and
// returns false when it cannot take the send now (counted as missed).
// Pace returns when d has passed or ctx is done.
func Pace(ctx context.Context, rate float64, d time.Duration, send func(n int64) bool) PaceStats {
	var st PaceStats
	if rate <= 0 || d <= 0 {
		return st
	}
	total := int64(math.Floor(rate * d.Seconds()))
	interval := max(time.Duration(float64(time.Second)/rate), minTick)
	lagLimit := max(int64(rate*maxLag.Seconds()), 1)
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	var issued int64 // sends accounted for: sent or missed
	issue := func(now time.Time) {
		// The schedule: send k is due at start + k/rate, the first at once.
		due := min(int64(now.Sub(start).Seconds()*rate)+1, total)
		if due-issued > lagLimit {
			skip := due - issued - lagLimit
			st.Missed += skip
			issued += skip
		}
		for ; issued < due; issued++ {
			if send(issued) {
				st.Sent++
			} else {
				st.Missed++
			}
		}
	}
	issue(start)
	for issued < total {
		select {
		case <-ctx.Done():
			st.Due = issued
			return st
		case now := <-t.C:
			issue(now)
		}
	}
	st.Due = total
	return st
}

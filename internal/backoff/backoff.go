// Package backoff computes jittered exponential back-off delays with full
// jitter: the delay before retry n is drawn uniformly from [0, ceiling(n)),
// where ceiling(n) = min(Max, Min·Factorⁿ). Full jitter spreads the retries
// of many clients that lost their server at the same moment, so that they do
// not come back at once (see "Exponential Backoff And Jitter", AWS
// Architecture Blog, 2015).
//
// A Backoff is a value without state: the caller counts its attempts. It is
// used by the Go client's reconnect loop and by broker reconnects.
package backoff

import (
	"math"
	"math/rand/v2"
	"time"
)

// Defaults of Backoff fields.
const (
	DefaultMin    = 200 * time.Millisecond
	DefaultMax    = 10 * time.Second
	DefaultFactor = 2.0
)

// Backoff describes a growing, capped, randomized delay. The zero value uses
// the defaults. It is safe for concurrent use if Rand is.
type Backoff struct {
	// Min is the ceiling of the first delay (attempt 0). Default: 200ms.
	Min time.Duration
	// Max caps every ceiling. A Max below Min is raised to Min.
	// Default: 10s.
	Max time.Duration
	// Factor multiplies the ceiling after each attempt. Values below 1 mean
	// the default. Default: 2.
	Factor float64
	// Rand returns a number in [0, 1). Default: math/rand/v2.Float64. Tests
	// set it to pin the jitter.
	Rand func() float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = DefaultMin
	}
	if b.Max <= 0 {
		b.Max = DefaultMax
	}
	if b.Max < b.Min {
		b.Max = b.Min
	}
	if b.Factor < 1 || math.IsNaN(b.Factor) || math.IsInf(b.Factor, 0) {
		b.Factor = DefaultFactor
	}
	if b.Rand == nil {
		b.Rand = rand.Float64
	}
	return b
}

// Ceiling returns the largest delay of attempt (0 for the first retry):
// min(Max, Min·Factor^attempt). A negative attempt counts as 0. It never
// overflows, however large attempt is.
func (b Backoff) Ceiling(attempt int) time.Duration {
	b = b.withDefaults()
	if attempt < 0 {
		attempt = 0
	}
	c := float64(b.Min) * math.Pow(b.Factor, float64(attempt))
	if math.IsInf(c, 0) || math.IsNaN(c) || c >= float64(b.Max) {
		return b.Max
	}
	return time.Duration(c)
}

// Delay returns the delay before attempt (0 for the first retry), drawn
// uniformly from [0, Ceiling(attempt)).
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.withDefaults()
	r := b.Rand()
	if r < 0 || r >= 1 || math.IsNaN(r) {
		r = 0
	}
	return time.Duration(r * float64(b.Ceiling(attempt)))
}

package main

import (
	"math"
	"testing"
	"time"
)

// sample is one measurement of a soak series: when, which segment it
// belongs to (see segmentedSlope) and the value.
type sample struct {
	at      time.Duration
	segment int
	value   float64
}

// segmentedSlope returns the least-squares slope of the samples per hour,
// fitted with one slope for all of them and an intercept of its own for
// each segment: a restart, or the sessions an instance takes over when
// another one drains, shifts the level of a series but not its trend. It
// returns 0 and false when fewer than two samples share a segment with
// another sample at a different time.
func segmentedSlope(samples []sample) (perHour float64, ok bool) {
	type acc struct {
		n, t, v float64
	}
	means := map[int]*acc{}
	for _, s := range samples {
		a := means[s.segment]
		if a == nil {
			a = &acc{}
			means[s.segment] = a
		}
		a.n++
		a.t += s.at.Hours()
		a.v += s.value
	}
	var num, den float64
	for _, s := range samples {
		a := means[s.segment]
		dt := s.at.Hours() - a.t/a.n
		num += dt * (s.value - a.v/a.n)
		den += dt * dt
	}
	if den == 0 {
		return 0, false
	}
	return num / den, true
}

// TestSegmentedSlope: the slope of a series is found whatever level each
// segment starts at, a flat series has none, and too few samples give no
// answer.
func TestSegmentedSlope(t *testing.T) {
	var rising, flat []sample
	for i := range 30 {
		at := time.Duration(i) * 10 * time.Second
		seg := 0
		level := 100.0
		if i >= 15 {
			seg, level = 1, 5000 // a restart far above the first level
		}
		rising = append(rising, sample{at: at, segment: seg, value: level + 36*at.Hours()})
		wobble := float64(i%3) - 1
		flat = append(flat, sample{at: at, segment: seg, value: level + wobble})
	}
	if got, ok := segmentedSlope(rising); !ok || math.Abs(got-36) > 1e-6 {
		t.Errorf("slope of a series rising by 36 an hour in two segments = %v, %v; want 36", got, ok)
	}
	if got, ok := segmentedSlope(flat); !ok || math.Abs(got) > 30 {
		t.Errorf("slope of a flat series = %v, %v; want about 0", got, ok)
	}
	if _, ok := segmentedSlope([]sample{{at: time.Second, value: 1}, {at: time.Minute, segment: 1, value: 2}}); ok {
		t.Error("a slope from one sample per segment")
	}
}

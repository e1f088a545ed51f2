package backoff_test

import (
	"math"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/internal/backoff"
)

func TestBackoff_Ceiling(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name    string
		b       backoff.Backoff
		attempt int
		want    time.Duration
	}{
		{"DefaultsFirst", backoff.Backoff{}, 0, 200 * ms},
		{"DefaultsSecond", backoff.Backoff{}, 1, 400 * ms},
		{"DefaultsFifth", backoff.Backoff{}, 5, 6400 * ms},
		{"DefaultsCapped", backoff.Backoff{}, 6, 10 * time.Second},
		{"NegativeAttemptIsFirst", backoff.Backoff{}, -3, 200 * ms},
		{"HugeAttemptDoesNotOverflow", backoff.Backoff{}, math.MaxInt, 10 * time.Second},
		{"Custom", backoff.Backoff{Min: 10 * ms, Max: time.Second, Factor: 3}, 2, 90 * ms},
		{"CustomCapped", backoff.Backoff{Min: 10 * ms, Max: time.Second, Factor: 3}, 5, time.Second},
		{"FactorOneIsConstant", backoff.Backoff{Min: 50 * ms, Max: time.Second, Factor: 1}, 40, 50 * ms},
		{"FactorBelowOneMeansDefault", backoff.Backoff{Min: 50 * ms, Max: time.Second, Factor: 0.5}, 2, 200 * ms},
		{"NaNFactorMeansDefault", backoff.Backoff{Min: 50 * ms, Max: time.Second, Factor: math.NaN()}, 1, 100 * ms},
		{"MaxBelowMinIsRaised", backoff.Backoff{Min: time.Second, Max: 10 * ms}, 3, time.Second},
		{"OnlyMaxSet", backoff.Backoff{Max: 300 * ms}, 4, 300 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.b.Ceiling(tt.attempt); got != tt.want {
				t.Errorf("Ceiling(%d) = %v, want %v", tt.attempt, got, tt.want)
			}
		})
	}
}

func TestBackoff_Delay(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name    string
		rand    float64
		attempt int
		want    time.Duration
	}{
		{"NoJitterDrawIsZero", 0, 3, 0},
		{"HalfOfFirst", 0.5, 0, 50 * ms},
		{"HalfOfThird", 0.5, 2, 200 * ms},
		{"AlmostAllOfCapped", 0.999, 10, 999 * ms},
		{"HalfOfCapped", 0.5, 100, 500 * ms},
		{"OutOfRangeDrawIsZero", 1.5, 2, 0},
		{"NegativeDrawIsZero", -0.5, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := backoff.Backoff{Min: 100 * ms, Max: time.Second, Factor: 2, Rand: func() float64 { return tt.rand }}
			if got := b.Delay(tt.attempt); got != tt.want {
				t.Errorf("Delay(%d) with draw %v = %v, want %v", tt.attempt, tt.rand, got, tt.want)
			}
		})
	}
}

// With the real random source every delay stays below its ceiling and the
// draws are spread over it (full jitter, not a fixed fraction).
func TestBackoff_DelayIsFullJitter(t *testing.T) {
	t.Parallel()
	b := backoff.Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for attempt := range 8 {
		ceiling := b.Ceiling(attempt)
		var low, high bool
		for range 1000 {
			d := b.Delay(attempt)
			if d < 0 || d >= ceiling {
				t.Fatalf("Delay(%d) = %v, want in [0, %v)", attempt, d, ceiling)
			}
			low = low || d < ceiling/4
			high = high || d > ceiling*3/4
		}
		if !low || !high {
			t.Errorf("Delay(%d) over 1000 draws: below a quarter %v, above three quarters %v; want both", attempt, low, high)
		}
	}
}

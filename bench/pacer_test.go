package bench

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestPace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		rate       float64
		d          time.Duration
		refuse     func(n int64) bool // true: the send is refused
		stall      func(n int64) time.Duration
		wantSent   int64
		wantMissed int64
	}{
		{name: "SteadyRate", rate: 100, d: time.Second, wantSent: 100},
		{name: "FastRateBatchesPerTick", rate: 5000, d: time.Second, wantSent: 5000},
		{name: "SlowRate", rate: 2, d: 3 * time.Second, wantSent: 6},
		{name: "RefusedSendsAreMissed", rate: 100, d: time.Second, refuse: func(n int64) bool { return n%10 == 0 }, wantSent: 90, wantMissed: 10},
		// A send that stalls the pacer for 500 ms at 100 msg/s leaves it
		// 50 sends behind; it catches up 10 (maxLag) and misses the rest.
		{name: "StallIsMissedNotBurst", rate: 100, d: time.Second, stall: func(n int64) time.Duration {
			if n == 10 {
				return 500 * time.Millisecond
			}
			return 0
		}, wantSent: 60, wantMissed: 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var got []int64
				st := Pace(t.Context(), tt.rate, tt.d, func(n int64) bool {
					if tt.stall != nil {
						time.Sleep(tt.stall(n))
					}
					if tt.refuse != nil && tt.refuse(n) {
						return false
					}
					got = append(got, n)
					return true
				})
				if st.Sent != tt.wantSent || st.Missed != tt.wantMissed {
					t.Errorf("Pace(%v/s, %v) = sent %d missed %d, want sent %d missed %d", tt.rate, tt.d, st.Sent, st.Missed, tt.wantSent, tt.wantMissed)
				}
				if st.Due != st.Sent+st.Missed {
					t.Errorf("Due = %d, want sent+missed = %d", st.Due, st.Sent+st.Missed)
				}
				for i := 1; i < len(got); i++ {
					if got[i] <= got[i-1] {
						t.Fatalf("send numbers not increasing: %d after %d", got[i], got[i-1])
					}
				}
			})
		})
	}
}

func TestPace_SpacesSendsEvenly(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var at []time.Duration
		Pace(t.Context(), 10, time.Second, func(int64) bool {
			at = append(at, time.Since(start))
			return true
		})
		if len(at) != 10 {
			t.Fatalf("sent %d, want 10", len(at))
		}
		for i, d := range at {
			want := time.Duration(i) * 100 * time.Millisecond
			if d != want {
				t.Errorf("send %d at %v, want %v", i, d, want)
			}
		}
	})
}

func TestPace_StopsWithContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		defer cancel()
		st := Pace(ctx, 100, 10*time.Second, func(int64) bool { return true })
		if st.Sent < 20 || st.Sent > 30 {
			t.Errorf("sent %d before the context ended, want about 25", st.Sent)
		}
	})
}

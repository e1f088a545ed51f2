package client

import "testing"

func TestNextURL(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 3, 5} {
		for last := range n {
			seen := make(map[int]bool)
			for range 200 {
				next := nextURL(last, n)
				if next < 0 || next >= n {
					t.Fatalf("nextURL(%d, %d) = %d, out of range", last, n, next)
				}
				if n > 1 && next == last {
					t.Fatalf("nextURL(%d, %d) = %d, the URL that just failed", last, n, next)
				}
				seen[next] = true
			}
			if want := max(n-1, 1); len(seen) != want {
				t.Errorf("nextURL(%d, %d) chose %d different URLs in 200 calls, want all %d others", last, n, len(seen), want)
			}
		}
	}
}

package hub

import (
	"fmt"
	"testing"
)

// TestMembers checks the member set on both sides of its switch from a
// slice to a map: every member set is found, replaced in place, and gone
// once removed, and all yields each member once.
func TestMembers(t *testing.T) {
	for _, n := range []int{1, fewMembers, fewMembers + 1, 3 * fewMembers} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var ms members
			ss := make([]*Session, n)
			for i := range ss {
				ss[i] = &Session{id: fmt.Sprint(i)}
				ms.set(ss[i], &member{next: uint64(i)})
			}
			if got := ms.len(); got != n {
				t.Fatalf("len = %d, want %d", got, n)
			}
			if (ms.many != nil) != (n > fewMembers) {
				t.Fatalf("%d members kept in a map: %v", n, ms.many != nil)
			}
			ms.set(ss[0], &member{next: 1000})
			if got := ms.get(ss[0]).next; got != 1000 {
				t.Fatalf("replaced member has next %d, want 1000", got)
			}
			if ms.len() != n {
				t.Fatalf("replacing a member changed len to %d", ms.len())
			}
			if ms.get(&Session{}) != nil {
				t.Fatal("a stranger is a member")
			}
			seen := map[*Session]bool{}
			for s, m := range ms.all() {
				if seen[s] {
					t.Fatalf("session %s yielded twice", s.id)
				}
				seen[s] = true
				if m != ms.get(s) {
					t.Fatalf("session %s yielded with another membership", s.id)
				}
			}
			if len(seen) != n {
				t.Fatalf("all yielded %d members, want %d", len(seen), n)
			}
			for i, s := range ss {
				ms.remove(s)
				ms.remove(s) // twice: a no-op
				if ms.get(s) != nil {
					t.Fatalf("member %d still there after remove", i)
				}
				if ms.len() != n-i-1 {
					t.Fatalf("after %d removes len = %d", i+1, ms.len())
				}
				for _, other := range ss[i+1:] {
					if ms.get(other) == nil {
						t.Fatalf("removing %s lost %s", s.id, other.id)
					}
				}
			}
		})
	}
}

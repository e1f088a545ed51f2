package smallmap

import (
	"fmt"
	"maps"
	"testing"
)

// TestMap checks a Map against a Go map while it grows past Few, has half
// its keys replaced and shrinks again: its entries, its length and All
// yielding each entry once.
func TestMap(t *testing.T) {
	var m Map[string, int]
	want := map[string]int{}
	check := func(step string) {
		t.Helper()
		got := map[string]int{}
		for k, v := range m.All() {
			if _, dup := got[k]; dup {
				t.Fatalf("%s: All yielded %s twice", step, k)
			}
			got[k] = v
		}
		if !maps.Equal(got, want) || m.Len() != len(want) {
			t.Fatalf("%s: got %v (len %d), want %v", step, got, m.Len(), want)
		}
		for k, v := range want {
			if g, ok := m.Get(k); !ok || g != v {
				t.Fatalf("%s: Get(%s) = %d, %v, want %d", step, k, g, ok, v)
			}
		}
		if _, ok := m.Get("stranger"); ok {
			t.Fatalf("%s: a key never set is there", step)
		}
	}
	for i := range 3 * Few {
		k := fmt.Sprint("k", i%(2*Few)) // the last third replaces
		m.Set(k, i)
		want[k] = i
		check(fmt.Sprint("set ", i))
	}
	for i := range 2 * Few {
		k := fmt.Sprint("k", i)
		m.Delete(k)
		m.Delete(k) // absent: a no-op
		delete(want, k)
		check(fmt.Sprint("delete ", i))
	}
}

// TestMapSwitch checks where the entries live: in the slice up to Few,
// in a map past it, with a replaced entry still counted once.
func TestMapSwitch(t *testing.T) {
	for _, n := range []int{1, Few, Few + 1, 3 * Few} {
		var m Map[int, int]
		for i := range n {
			m.Set(i, i)
		}
		m.Set(0, 1000)
		if v, _ := m.Get(0); v != 1000 || m.Len() != n {
			t.Fatalf("%d entries: after replacing 0, Get(0) = %d and Len = %d", n, v, m.Len())
		}
		if (m.many != nil) != (n > Few) {
			t.Fatalf("%d entries kept in a map: %v", n, m.many != nil)
		}
	}
}

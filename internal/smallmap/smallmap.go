// Package smallmap has a map for the many tiny sets of a server that holds
// one of them per connection: a user's inbox is a room with one member and
// one presence entry, and a Go map costs about 190 bytes even with a
// single entry. A Map keeps up to Few entries in a slice, searched in
// order, and switches to a map beyond that.
package smallmap

import (
	"iter"
	"slices"
)

// Few is the most entries a Map keeps in its slice.
const Few = 8

// Map is a map from K to V. The zero value is empty and ready to use. It is
// not safe for concurrent use.
type Map[K comparable, V any] struct {
	few  []entry[K, V] // while many is nil
	many map[K]V
}

type entry[K comparable, V any] struct {
	k K
	v V
}

// Get returns k's value and whether k is there.
func (m *Map[K, V]) Get(k K) (V, bool) {
	if m.many != nil {
		v, ok := m.many[k]
		return v, ok
	}
	for _, e := range m.few {
		if e.k == k {
			return e.v, true
		}
	}
	var zero V
	return zero, false
}

// Set adds k with v, or replaces k's value.
func (m *Map[K, V]) Set(k K, v V) {
	if m.many != nil {
		m.many[k] = v
		return
	}
	for i := range m.few {
		if m.few[i].k == k {
			m.few[i].v = v
			return
		}
	}
	if len(m.few) < Few {
		m.few = append(m.few, entry[K, V]{k, v})
		return
	}
	m.many = make(map[K]V, 2*Few)
	for _, e := range m.few {
		m.many[e.k] = e.v
	}
	m.many[k] = v
	m.few = nil
}

// Delete removes k, if it is there.
func (m *Map[K, V]) Delete(k K) {
	if m.many != nil {
		delete(m.many, k)
		return
	}
	m.few = slices.DeleteFunc(m.few, func(e entry[K, V]) bool { return e.k == k })
}

// Len returns the number of entries.
func (m *Map[K, V]) Len() int {
	if m.many != nil {
		return len(m.many)
	}
	return len(m.few)
}

// All yields every entry, in no particular order.
func (m *Map[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		if m.many != nil {
			for k, v := range m.many {
				if !yield(k, v) {
					return
				}
			}
			return
		}
		for _, e := range m.few {
			if !yield(e.k, e.v) {
				return
			}
		}
	}
}

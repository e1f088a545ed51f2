package bench

import (
	"bytes"
	"strconv"
	"strings"
)

// A message's data is one JSON string, so that both servers pass it through
// untouched and the receiver finds it with a byte search instead of a JSON
// decoder (the load generator shares the machine with the servers):
//
//	"~B<step>.<seq>.<unix ns>.<source>.xxxx…"
//
// step is the ladder step, seq the number of the message from its source,
// the time is when the frame or request was written, source the number of
// the publishing connection (-1-room for the HTTP API). Padding brings the
// JSON value to the configured payload size.

// payloadMark starts every benchmark payload.
var payloadMark = []byte(`"~B`)

// minPayload is the smallest payload that holds every field.
const minPayload = 64

// appendPayload appends a payload of size bytes (including the quotes).
func appendPayload(dst []byte, step int, seq, unixNano int64, source, size int) []byte {
	start := len(dst)
	dst = append(dst, payloadMark...)
	dst = strconv.AppendInt(dst, int64(step), 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, unixNano, 10)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(source), 10)
	dst = append(dst, '.')
	for len(dst)-start < size-1 {
		dst = append(dst, 'x')
	}
	return append(dst, '"')
}

// sample is one received benchmark message.
type sample struct {
	step   int
	seq    int64
	sent   int64 // unix ns
	source int
}

// nextSample finds the next payload in b and returns it with the rest of b
// after it. ok is false when b holds no (well-formed) payload.
func nextSample(b []byte) (s sample, rest []byte, ok bool) {
	for {
		i := bytes.Index(b, payloadMark)
		if i < 0 {
			return s, nil, false
		}
		b = b[i+len(payloadMark):]
		if s, n, ok := parseFields(b); ok {
			return s, b[n:], true
		}
	}
}

// sampleOf reads the payload from a decoded data string (the JSON string
// without its quotes).
func sampleOf(data string) (sample, bool) {
	rest, ok := strings.CutPrefix(data, string(payloadMark[1:]))
	if !ok {
		return sample{}, false
	}
	s, _, ok := parseFields([]byte(rest))
	return s, ok
}

// parseFields parses "<step>.<seq>.<unix ns>.<source>." at the start of b
// and returns how many bytes it took.
func parseFields(b []byte) (s sample, n int, ok bool) {
	var fields [4]int64
	got := 0
	j := 0
	for got < 4 && j < len(b) {
		neg := false
		if b[j] == '-' {
			neg = true
			j++
		}
		k := j
		var v int64
		for k < len(b) && b[k] >= '0' && b[k] <= '9' {
			v = v*10 + int64(b[k]-'0')
			k++
		}
		if k == j || k >= len(b) || b[k] != '.' {
			break
		}
		if neg {
			v = -v
		}
		fields[got] = v
		got++
		j = k + 1
	}
	if got < 4 {
		return sample{}, 0, false
	}
	return sample{step: int(fields[0]), seq: fields[1], sent: fields[2], source: int(fields[3])}, j, true
}

// seenWindow finds duplicates among the sequence numbers of one source: it
// remembers the last windowSeqs numbers below the highest seen. Older ones
// cannot be told apart and are taken as new (counted as late by the caller
// if it wants).
type seenWindow struct {
	hi      int64
	started bool
	bits    [windowSeqs / 64]uint64
}

const windowSeqs = 4096

// add records seq and reports whether it was seen before.
func (w *seenWindow) add(seq int64) (dup bool) {
	if seq < 0 {
		return false
	}
	if !w.started {
		w.started, w.hi = true, seq
		w.set(seq)
		return false
	}
	if seq > w.hi {
		if seq-w.hi >= windowSeqs {
			w.bits = [windowSeqs / 64]uint64{}
		} else {
			for s := w.hi + 1; s < seq; s++ {
				w.clear(s)
			}
		}
		w.hi = seq
		w.set(seq)
		return false
	}
	if w.hi-seq >= windowSeqs {
		return false
	}
	i := uint64(seq) % windowSeqs
	if w.bits[i/64]&(1<<(i%64)) != 0 {
		return true
	}
	w.set(seq)
	return false
}

func (w *seenWindow) set(seq int64) {
	i := uint64(seq) % windowSeqs
	w.bits[i/64] |= 1 << (i % 64)
}

func (w *seenWindow) clear(seq int64) {
	i := uint64(seq) % windowSeqs
	w.bits[i/64] &^= 1 << (i % 64)
}

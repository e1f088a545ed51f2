package protocol_test

import (
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
)

func BenchmarkDecodePublish(b *testing.B) {
	frames := []struct {
		name  string
		frame string
	}{
		{"Compact", `{"type":"publish","id":42,"room":"org:42.general","data":{"text":"hello, world","mentions":["bob","carol"],"n":3},"key":"c-7f3a9b2e-0001"}`},
		// Pretty-printed data takes the compaction path.
		{"Indented", "{\"type\":\"publish\",\"id\":42,\"room\":\"org:42.general\",\"data\":{\n\t\"text\": \"hello, world\",\n\t\"mentions\": [\"bob\", \"carol\"],\n\t\"n\": 3\n},\"key\":\"c-7f3a9b2e-0001\"}"},
	}
	for _, fr := range frames {
		b.Run(fr.name, func(b *testing.B) {
			frame := []byte(fr.frame)
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, err := protocol.Decode(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkAppendMessage(b *testing.B) {
	m := &protocol.Message{
		Room:   "org:42.general",
		Epoch:  "01JD7Q4W3K",
		Offset: 123456,
		From:   "alice@example.com",
		Data:   []byte(`{"text":"hello, world","mentions":["bob","carol"],"n":3}`),
		TS:     1764300000000,
	}
	size := len(protocol.AppendMessage(nil, m))

	// A server encodes each message once into a buffer it then shares, so
	// NewBuffer is the hot path; ReuseBuffer measures the encoder alone.
	b.Run("NewBuffer", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(size))
		for b.Loop() {
			_ = protocol.AppendMessage(make([]byte, 0, size), m)
		}
	})
	b.Run("ReuseBuffer", func(b *testing.B) {
		buf := make([]byte, 0, size)
		b.ReportAllocs()
		b.SetBytes(int64(size))
		for b.Loop() {
			buf = protocol.AppendMessage(buf[:0], m)
		}
	})
}

package transport

import (
	"bytes"
	"strings"
	"testing"
)

// TestConformance checks the server side of RFC 6455 over real sockets,
// plain TCP and TLS: every row sends raw client frames and expects either
// echoes (the test handler echoes each message as a text frame) or the
// close code the RFC asks for. Each row names its section.
func TestConformance(t *testing.T) {
	const maxMessage = 1 << 20
	tooBig := 1<<63 - 1
	tests := []struct {
		section string
		name    string
		send    [][]byte
		// echoes are the messages expected back, in order, then (if close
		// is not 0) the close code: -1 for a close without a code.
		echoes []string
		close  int
		pongs  []string // pongs expected before the echoes
	}{
		// Framing and lengths.
		{"5.2", "text frame, 7-bit length", [][]byte{rawFrame(finText, []byte("hello"), false)}, []string{"hello"}, 0, nil},
		{"5.2", "empty text frame", [][]byte{rawFrame(finText, nil, false)}, []string{"<empty>"}, 0, nil},
		{"5.2", "16-bit length", [][]byte{rawFrame(finText, repeat("a", 200), false)}, []string{strings.Repeat("a", 200)}, 0, nil},
		{"5.2", "16-bit length at its maximum", [][]byte{rawFrame(finText, repeat("b", 0xffff), false)}, []string{strings.Repeat("b", 0xffff)}, 0, nil},
		{"5.2", "64-bit length", [][]byte{rawFrame(finText, repeat("c", 70000), false)}, []string{strings.Repeat("c", 70000)}, 0, nil},
		{"5.2", "binary frame", [][]byte{rawFrame(finBinary, []byte{0, 1, 2, 0xff}, false)}, []string{"\x00\x01\x02\xff"}, 0, nil},
		{"5.2", "length 5 in the 16-bit form", [][]byte{append(frameWithLength(finText, 126, 5), 1, 2, 3, 4, 5)}, nil, CloseProtocolError, nil},
		{"5.2", "length 200 in the 64-bit form", [][]byte{frameWithLength(finText, 127, 200)}, nil, CloseProtocolError, nil},
		{"5.2", "64-bit length 2^63 (most significant bit set)", [][]byte{frameWithLength(finText, 127, 1<<63)}, nil, CloseProtocolError, nil},
		{"5.2", "64-bit length 2^64-1", [][]byte{frameWithLength(finText, 127, 1<<64-1)}, nil, CloseProtocolError, nil},
		{"10.4", "64-bit length 2^63-1, over the limit", [][]byte{frameWithLength(finText, 127, uint64(tooBig))}, nil, CloseTooLarge, nil},
		{"10.4", "one byte over the limit", [][]byte{frameWithLength(finText, 127, maxMessage+1)}, nil, CloseTooLarge, nil},
		{"10.4", "fragments over the limit together", [][]byte{rawFrame(text, repeat("x", maxMessage/2), false), rawFrame(finCont, repeat("y", maxMessage/2+1), false)}, nil, CloseTooLarge, nil},
		{"5.2", "RSV1 set", [][]byte{rawFrame(finText|0x40, []byte("x"), false)}, nil, CloseProtocolError, nil},
		{"5.2", "RSV2 set", [][]byte{rawFrame(finText|0x20, []byte("x"), false)}, nil, CloseProtocolError, nil},
		{"5.2", "RSV3 set", [][]byte{rawFrame(finText|0x10, []byte("x"), false)}, nil, CloseProtocolError, nil},
		{"5.2", "reserved data opcode 3", [][]byte{rawFrame(0x83, []byte("x"), false)}, nil, CloseProtocolError, nil},
		{"5.2", "reserved data opcode 7", [][]byte{rawFrame(0x87, nil, false)}, nil, CloseProtocolError, nil},
		{"5.2", "reserved control opcode 0xB", [][]byte{rawFrame(0x8b, nil, false)}, nil, CloseProtocolError, nil},
		{"5.2", "reserved control opcode 0xF", [][]byte{rawFrame(0x8f, []byte("x"), false)}, nil, CloseProtocolError, nil},
		{"5.1", "unmasked client frame", [][]byte{rawFrame(finText, []byte("hello"), true)}, nil, CloseProtocolError, nil},
		{"5.1", "unmasked ping", [][]byte{rawFrame(finPing, nil, true)}, nil, CloseProtocolError, nil},

		// Fragmentation.
		{"5.4", "three fragments", [][]byte{rawFrame(text, []byte("frag"), false), rawFrame(cont, []byte("men"), false), rawFrame(finCont, []byte("ted"), false)}, []string{"fragmented"}, 0, nil},
		{"5.4", "empty fragments", [][]byte{rawFrame(text, nil, false), rawFrame(cont, nil, false), rawFrame(finCont, []byte("end"), false)}, []string{"end"}, 0, nil},
		{"5.4", "ping between fragments", [][]byte{rawFrame(text, []byte("a"), false), rawFrame(finPing, []byte("p"), false), rawFrame(finCont, []byte("b"), false)}, []string{"ab"}, 0, []string{"p"}},
		{"5.4", "pong between fragments", [][]byte{rawFrame(text, []byte("a"), false), rawFrame(finPong, []byte("p"), false), rawFrame(finCont, []byte("b"), false)}, []string{"ab"}, 0, nil},
		{"5.4", "continuation without a message", [][]byte{rawFrame(finCont, []byte("x"), false)}, nil, CloseProtocolError, nil},
		{"5.4", "text frame inside a fragmented message", [][]byte{rawFrame(text, []byte("a"), false), rawFrame(finText, []byte("b"), false)}, nil, CloseProtocolError, nil},
		{"5.4", "binary frame inside a fragmented text message", [][]byte{rawFrame(text, []byte("a"), false), rawFrame(finBinary, []byte("b"), false)}, nil, CloseProtocolError, nil},
		{"5.4", "close between fragments", [][]byte{rawFrame(text, []byte("a"), false), closeFrame(CloseNormal, "")}, nil, CloseNormal, nil},

		// Control frames.
		{"5.5.2", "ping is answered with its payload", [][]byte{rawFrame(finPing, []byte("are you there"), false)}, nil, 0, []string{"are you there"}},
		{"5.5.2", "empty ping", [][]byte{rawFrame(finPing, nil, false)}, nil, 0, []string{""}},
		{"5.5", "ping of 125 bytes", [][]byte{rawFrame(finPing, repeat("p", 125), false)}, nil, 0, []string{strings.Repeat("p", 125)}},
		{"5.5", "ping of 126 bytes", [][]byte{rawFrame(finPing, repeat("p", 126), false)}, nil, CloseProtocolError, nil},
		{"5.5", "fragmented ping", [][]byte{rawFrame(0x09, []byte("p"), false)}, nil, CloseProtocolError, nil},
		{"5.5.3", "unsolicited pong is ignored", [][]byte{rawFrame(finPong, []byte("x"), false), rawFrame(finText, []byte("after"), false)}, []string{"after"}, 0, nil},
		{"5.5", "close of 126 bytes", [][]byte{rawFrame(finClose, append([]byte{3, 232}, repeat("r", 124)...), false)}, nil, CloseProtocolError, nil},

		// Close frames.
		{"5.5.1", "close without a code is answered without one", [][]byte{rawFrame(finClose, nil, false)}, nil, -1, nil},
		{"5.5.1", "close with a 1-byte payload", [][]byte{rawFrame(finClose, []byte{3}, false)}, nil, CloseProtocolError, nil},
		{"7.4.1", "close 1000 is echoed", [][]byte{closeFrame(1000, "bye")}, nil, 1000, nil},
		{"7.4.1", "close 1001 is echoed", [][]byte{closeFrame(1001, "")}, nil, 1001, nil},
		{"7.4.2", "close 3000 is echoed", [][]byte{closeFrame(3000, "")}, nil, 3000, nil},
		{"7.4.2", "close 4999 is echoed", [][]byte{closeFrame(4999, "")}, nil, 4999, nil},
		{"7.4.1", "close code 0", [][]byte{closeFrame(0, "")}, nil, CloseProtocolError, nil},
		{"7.4.1", "close code 999", [][]byte{closeFrame(999, "")}, nil, CloseProtocolError, nil},
		{"7.4.1", "close code 1004 (reserved)", [][]byte{closeFrame(1004, "")}, nil, CloseProtocolError, nil},
		{"7.4.1", "close code 1005 (never on the wire)", [][]byte{closeFrame(1005, "")}, nil, CloseProtocolError, nil},
		{"7.4.1", "close code 1006 (never on the wire)", [][]byte{closeFrame(1006, "")}, nil, CloseProtocolError, nil},
		{"7.4.1", "close code 1015 (never on the wire)", [][]byte{closeFrame(1015, "")}, nil, CloseProtocolError, nil},
		{"7.4.2", "close code 1016 (unassigned)", [][]byte{closeFrame(1016, "")}, nil, CloseProtocolError, nil},
		{"7.4.2", "close code 2999", [][]byte{closeFrame(2999, "")}, nil, CloseProtocolError, nil},
		{"7.4.2", "close code 5000", [][]byte{closeFrame(5000, "")}, nil, CloseProtocolError, nil},
		{"8.1", "close reason not UTF-8", [][]byte{closeFrame(1000, "\xff\xfe")}, nil, CloseInvalidData, nil},
		{"5.5.1", "frames after a close are ignored", [][]byte{closeFrame(1000, ""), rawFrame(finText, []byte("late"), false)}, nil, 1000, nil},

		// UTF-8.
		{"8.1", "text not UTF-8", [][]byte{rawFrame(finText, []byte("ok\xc3\x28"), false)}, nil, CloseInvalidData, nil},
		{"8.1", "text with a surrogate half", [][]byte{rawFrame(finText, []byte("\xed\xa0\x80"), false)}, nil, CloseInvalidData, nil},
		{"8.1", "a code point split across fragments", [][]byte{rawFrame(text, []byte("\xce"), false), rawFrame(finCont, []byte("\xba\xe1\xbd\xb9"), false)}, []string{"\xce\xba\xe1\xbd\xb9"}, 0, nil},
		{"8.1", "invalid UTF-8 in a later fragment", [][]byte{rawFrame(text, []byte("fine"), false), rawFrame(finCont, []byte("\xf4\x90\x80\x80"), false)}, nil, CloseInvalidData, nil},
		{"8.1", "binary data need not be UTF-8", [][]byte{rawFrame(finBinary, []byte("\xff"), false)}, []string{"\xff"}, 0, nil},
	}
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{MaxMessageBytes: maxMessage})
		for _, tt := range tests {
			t.Run(tt.section+" "+tt.name, func(t *testing.T) {
				c := ts.dial(t, "")
				c.send(tt.send...)
				for _, p := range tt.pongs {
					c.expect(opPong, p)
				}
				for _, e := range tt.echoes {
					c.expect(opText, e)
				}
				if tt.close != 0 {
					c.expectClose(tt.close)
					return
				}
				c.expectNothing()
			})
		}
	})
}

// TestConformance_Trickle: a client that sends its frames one byte at a
// time (every header and payload split across reads) is understood.
func TestConformance_Trickle(t *testing.T) {
	forEachTransport(t, func(t *testing.T, m mode) {
		ts := startServer(t, m, Config{})
		c := ts.dial(t, "")
		frames := bytes.Join([][]byte{
			rawFrame(finText, repeat("t", 300), false),
			rawFrame(text, []byte("ab"), false), rawFrame(finPing, []byte("x"), false), rawFrame(finCont, []byte("cd"), false),
		}, nil)
		for i := range frames {
			c.send(frames[i : i+1])
		}
		// A pong may overtake data queued before it (control frames go
		// first); the messages keep their order.
		var texts []string
		pongs := 0
		for len(texts) < 2 || pongs < 1 {
			f, err := c.next()
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case f.op == opPong && string(f.payload) == "x":
				pongs++
			case f.op == opText:
				texts = append(texts, string(f.payload))
			default:
				t.Fatalf("got %v", f)
			}
		}
		if texts[0] != strings.Repeat("t", 300) || texts[1] != "abcd" || pongs != 1 {
			t.Fatalf("got messages %q and %d pongs", texts, pongs)
		}
		c.send(closeFrame(1000, ""))
		c.expectClose(1000)
	})
}

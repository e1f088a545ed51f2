package transport

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// Opcodes (RFC 6455, section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload is the largest payload of a control frame (section 5.5).
const maxControlPayload = 125

// maxHeaderBytes is the longest client frame header: 2 bytes, a 64-bit
// length and the masking key.
const maxHeaderBytes = 2 + 8 + 4

// Close codes the transport itself sends (RFC 6455, section 7.4.1).
const (
	// CloseNormal is a normal closure.
	CloseNormal = 1000
	// CloseGoingAway: the server goes away, or the peer stopped answering.
	CloseGoingAway = 1001
	// CloseProtocolError: the peer broke RFC 6455.
	CloseProtocolError = 1002
	// CloseInvalidData: a text message or close reason was not UTF-8.
	CloseInvalidData = 1007
	// ClosePolicy: the peer broke a rule of this server.
	ClosePolicy = 1008
	// CloseTooLarge: a message was larger than the limit.
	CloseTooLarge = 1009
	// CloseTryAgainLater: the server is overloaded; retry later.
	CloseTryAgainLater = 1013
	// closeNoStatus is what a close frame without a code means; it is
	// never sent.
	closeNoStatus = 1005
)

// appendHeader appends the header of a final, unmasked server frame with
// opcode op and a payload of n bytes (section 5.2: servers never mask).
func appendHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// appendFrame appends a final server frame with opcode op and payload p.
func appendFrame(b []byte, op byte, p []byte) []byte {
	return append(appendHeader(b, op, len(p)), p...)
}

// closePayload returns the payload of a close frame with code and reason;
// the reason is cut at a rune boundary to fit the 125-byte limit. A code
// of closeNoStatus gives the empty payload.
func closePayload(code int, reason string) []byte {
	if code == closeNoStatus {
		return nil
	}
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	return append(binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code)), reason...)
}

// parseClose checks the payload of a received close frame (sections 5.5.1
// and 7.4). It returns the code (closeNoStatus for an empty payload), or,
// when the payload is invalid, the code to fail the connection with.
func parseClose(p []byte) (code int, fail int) {
	switch {
	case len(p) == 0:
		return closeNoStatus, 0
	case len(p) == 1:
		return 0, CloseProtocolError
	}
	code = int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, CloseProtocolError
	}
	if !utf8.Valid(p[2:]) {
		return 0, CloseInvalidData
	}
	return code, 0
}

// validCloseCode reports whether a peer may send code in a close frame:
// the codes RFC 6455 defines for the wire, those IANA registered since
// (1012-1014), and the ranges for libraries and applications. 1004, 1005,
// 1006 and 1015 must never appear on the wire.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// maskBytes XORs b with the masking key, starting at position pos of the
// key, and returns the position after b (section 5.3). It works eight
// bytes at a time.
func maskBytes(key [4]byte, pos int, b []byte) int {
	if len(b) >= 16 {
		k := binary.LittleEndian.Uint32(key[:])
		k = bits.RotateLeft32(k, -8*(pos&3))
		k64 := uint64(k) | uint64(k)<<32
		i := 0
		for ; i+8 <= len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k64)
		}
		b = b[i:]
	}
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}

package protocol_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/protocol"
)

// nested returns a JSON value that nests n arrays and objects, alternating,
// around a string holding brackets that must not count.
func nested(n int) string {
	var open, close strings.Builder
	for i := range n {
		if i%2 == 0 {
			open.WriteString(`[`)
			close.WriteString(`]`)
		} else {
			open.WriteString(`{"k\"[{":`)
			close.WriteString(`}`)
		}
	}
	c := []byte(close.String())
	for i, j := 0, len(c)-1; i < j; i, j = i+1, j-1 {
		c[i], c[j] = c[j], c[i]
	}
	return open.String() + `"[[{{\\"` + string(c)
}

func TestCheckDepth(t *testing.T) {
	for _, n := range []int{0, 1, 2, 63, 64} {
		if err := protocol.CheckDepth([]byte(nested(n)), 64); err != nil {
			t.Errorf("depth %d: %v, want nil", n, err)
		}
	}
	for _, n := range []int{65, 100, 9000} {
		if err := protocol.CheckDepth([]byte(nested(n)), 64); !errors.Is(err, protocol.ErrTooDeep) {
			t.Errorf("depth %d: %v, want ErrTooDeep", n, err)
		}
	}
}

func TestDecode_DataDepth(t *testing.T) {
	frame := func(n int) []byte {
		return []byte(`{"type":"publish","id":"deep","room":"r","data":` + nested(n) + `}`)
	}
	f, err := protocol.Decode(frame(protocol.MaxDataDepth))
	if err != nil {
		t.Fatalf("data at the limit (%d levels): %v", protocol.MaxDataDepth, err)
	}
	if len(f.Data) == 0 {
		t.Fatal("data at the limit was not kept")
	}
	for _, n := range []int{protocol.MaxDataDepth + 1, 9000} {
		f, err := protocol.Decode(frame(n))
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != protocol.CodeBadRequest {
			t.Fatalf("data %d levels deep: %v, want bad_request", n, err)
		}
		if string(f.ID) != `"deep"` {
			t.Errorf("data %d levels deep: id %s, want \"deep\"", n, f.ID)
		}
		if !strings.Contains(pe.Message, "64 levels") {
			t.Errorf("message %q does not name the limit", pe.Message)
		}
	}
	// The limit counts every field, not only data.
	if _, err := protocol.Decode([]byte(`{"type":"ping","x":` + nested(protocol.MaxDataDepth+1) + `}`)); err == nil {
		t.Error("an unknown field nested too deeply was accepted")
	}
}

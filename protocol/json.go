package protocol

import (
	"errors"
	"fmt"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Unmarshal decodes the JSON object b into v by the protocol's rules: field
// names match exactly (encoding/json would take "ROOM" for "room"), a name
// given twice is an error, strings must be valid UTF-8, and unknown fields
// are ignored. Decode reads client frames with it; the HTTP API reads its
// request bodies with it too. Its errors describe themselves with
// JSONProblem. JSON that nests deeper than MaxDataDepth+1 levels fails
// with ErrTooDeep before any decoding.
func Unmarshal(b []byte, v any) error {
	if err := CheckDepth(b, MaxDataDepth+1); err != nil {
		return err
	}
	return jsonv2.Unmarshal(b, v)
}

// MaxDataDepth is how deeply the data of a message may nest arrays and
// objects: a scalar has depth 0, [] and {} depth 1, [[1]] depth 2. A client
// frame or an API request body that nests deeper than MaxDataDepth+1 levels
// (the frame or body itself is one level) is refused with bad_request
// before it is decoded, so a deeply nested payload is never stored or
// relayed, and never costs a recursive decoder its stack.
const MaxDataDepth = 64

// ErrTooDeep is the error of Unmarshal and CheckDepth for JSON that nests
// deeper than MaxDataDepth+1 levels.
var ErrTooDeep = errors.New("JSON nests arrays and objects too deeply")

// CheckDepth returns ErrTooDeep if the JSON text b nests arrays and objects
// more than max levels deep, counting brackets outside strings in one pass
// over b. It does not validate b otherwise: a valid document within the
// limit always passes, and invalid JSON is left to the decoder.
func CheckDepth(b []byte, max int) error {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped byte cannot end the string
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			if depth > max {
				return ErrTooDeep
			}
		case ']', '}':
			depth--
		}
	}
	return nil
}

// JSONProblem describes an error of Unmarshal in a few words, naming the
// field at fault but never echoing the input.
func JSONProblem(err error) string {
	var syn *jsontext.SyntacticError
	var sem *jsonv2.SemanticError
	switch {
	case errors.Is(err, ErrTooDeep):
		return fmt.Sprintf("it nests arrays and objects too deeply (data may nest at most %d levels)", MaxDataDepth)
	case errors.As(err, &syn) && errors.Is(syn.Err, jsontext.ErrDuplicateName):
		return fmt.Sprintf("field %q is given twice", fieldName(syn.JSONPointer))
	case errors.As(err, &syn) && strings.Contains(syn.Err.Error(), "UTF-8"):
		return fmt.Sprintf("a string at byte %d is not valid UTF-8", syn.ByteOffset)
	case errors.As(err, &syn):
		return fmt.Sprintf("syntax error at byte %d", syn.ByteOffset)
	case errors.As(err, &sem) && sem.JSONPointer != "":
		return fmt.Sprintf("field %q has the wrong type", fieldName(sem.JSONPointer))
	case errors.As(err, &sem):
		return "expected a JSON object"
	}
	return "malformed JSON"
}

// fieldName returns the path of a JSON pointer as a dotted name:
// "/since/offset" is "since.offset".
func fieldName(p jsontext.Pointer) string {
	var parts []string
	for tok := range p.Tokens() {
		parts = append(parts, tok)
	}
	return strings.Join(parts, ".")
}

// decodeLenientResume decodes b into f like Unmarshal, except that an
// entry of resume that does not decode is left out and recorded in
// f.ResumeErrors instead of failing the frame.
func (f *ClientFrame) decodeLenientResume(b []byte) error {
	bad := make(map[string]error)
	lenient := jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, m *map[string]Position) error {
		if dec.PeekKind() != '{' {
			return errors.ErrUnsupported // the usual error for a resume that is no object
		}
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
		*m = make(map[string]Position)
		for dec.PeekKind() != '}' {
			tok, err := dec.ReadToken()
			if err != nil {
				return err
			}
			name := tok.String() // before the next read voids tok
			raw, err := dec.ReadValue()
			if err != nil {
				return err
			}
			var pos Position
			if err := jsonv2.Unmarshal(raw, &pos); err != nil {
				bad[name] = &Error{Code: CodeBadRequest,
					Message: fmt.Sprintf("resume[%q] must be {\"epoch\": string, \"offset\": number of at least 0}", clip(name))}
				continue
			}
			(*m)[name] = pos
		}
		_, err := dec.ReadToken()
		return err
	})
	if err := jsonv2.Unmarshal(b, f, jsonv2.WithUnmarshalers(lenient)); err != nil {
		return err
	}
	if len(bad) > 0 {
		f.ResumeErrors = bad
	}
	return nil
}

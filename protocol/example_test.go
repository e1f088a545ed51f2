package protocol_test

import (
	"errors"
	"fmt"

	"github.com/switchboard-rt/switchboard/protocol"
)

func ExampleDecode() {
	f, err := protocol.Decode([]byte(`{"type":"publish","id":3,"room":"general","data":{
		"text": "hi"
	}}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(f.Type, f.Room, string(f.ID), string(f.Data))

	// A refused frame still carries its id, for the error frame.
	f, err = protocol.Decode([]byte(`{"type":"join","id":4,"room":"no spaces"}`))
	var pe *protocol.Error
	if errors.As(err, &pe) {
		fmt.Println(string(protocol.Encode(protocol.ErrorFrame{
			Type: protocol.TypeError, ID: f.ID, Code: pe.Code, Message: pe.Message,
		})))
	}
	// Output:
	// publish general 3 {"text":"hi"}
	// {"type":"error","id":4,"code":"bad_room","message":"\"no spaces\" is not a valid room name: use 1-128 characters of A-Z a-z 0-9 _ . : -"}
}

func ExampleAppendMessage() {
	m := &protocol.Message{
		Room:   "general",
		Epoch:  "e1",
		Offset: 58,
		From:   "alice",
		Data:   []byte(`{"text":"hi"}`),
		TS:     1764300000000,
	}
	// Encode once, then share the bytes with every recipient.
	buf := protocol.AppendMessage(nil, m)
	fmt.Println(string(buf))

	m.From = "" // published through the HTTP API without a user
	m.Offset++
	buf = protocol.AppendMessage(buf[:0], m)
	fmt.Println(string(buf))
	// Output:
	// {"type":"message","room":"general","epoch":"e1","offset":58,"from":"alice","data":{"text":"hi"},"ts":1764300000000}
	// {"type":"message","room":"general","epoch":"e1","offset":59,"data":{"text":"hi"},"ts":1764300000000}
}

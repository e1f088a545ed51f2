package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/protocol"
)

// startServer runs a Switchboard instance in dev mode on a loopback port,
// so that the examples have a server to talk to. stop drains it.
func startServer() (inst *switchboard.Instance, wsURL string, stop func()) {
	inst, err := switchboard.New(switchboard.Config{Dev: true})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- inst.Serve(ctx, ln) }()
	return inst, "ws://" + ln.Addr().String() + "/ws", func() {
		cancel()
		<-done
	}
}

func Example() {
	_, url, stop := startServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A server in dev mode takes the user id from the config; a real one
	// needs Config.Token.
	alice, err := client.Dial(ctx, client.Config{URLs: []string{url}, User: "alice"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()
	bob, err := client.Dial(ctx, client.Config{URLs: []string{url}, User: "bob"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()

	for _, c := range []*client.Client{alice, bob} {
		if _, err := c.Join(ctx, "general"); err != nil {
			fmt.Println(err)
			return
		}
	}
	pos, err := alice.Publish(ctx, "general", map[string]string{"text": "hello"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("alice's message is stored at offset", pos.Offset)

	// Bob receives it; alice gets the ack above instead.
	m := <-bob.Messages()
	fmt.Printf("bob got %s from %s in %s at offset %d\n", m.Data, m.From, m.Room, m.Offset)
	// Output:
	// alice's message is stored at offset 1
	// bob got {"text":"hello"} from alice in general at offset 1
}

// A Handler receives the messages instead of the Messages channel, and
// OnStateChange follows the connection.
func Example_handler() {
	_, url, stop := startServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got := make(chan client.Message, 1)
	carol, err := client.Dial(ctx, client.Config{
		URLs: []string{url},
		User: "carol",
		Handler: func(m client.Message) {
			got <- m
		},
		OnStateChange: func(s client.State, err error) {
			fmt.Println("state:", s)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	dave, err := client.Dial(ctx, client.Config{URLs: []string{url}, User: "dave"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dave.Close()

	// A direct message goes to the recipient's inbox, which every client
	// has joined from the start.
	if _, err := dave.Send(ctx, "carol", "are you there?"); err != nil {
		fmt.Println(err)
		return
	}
	m := <-got
	fmt.Printf("%s: %s from %s\n", m.Room, m.Data, m.From)
	carol.Close()
	// Output:
	// state: connecting
	// state: connected
	// @carol: "are you there?" from dave
	// state: closed
}

// The server's refusals are *protocol.Error values.
func ExampleClient_Publish_errors() {
	_, url, stop := startServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, client.Config{URLs: []string{url}, User: "erin"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	_, err = c.Publish(ctx, "general", "hi")
	var pe *protocol.Error
	if errors.As(err, &pe) {
		fmt.Println("refused:", pe.Code)
	}
	// Output:
	// refused: not_joined
}

// A client stops for good when the server disconnects its user (4004):
// Done is closed and Err says why.
func ExampleClient_Done() {
	inst, url, stop := startServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, client.Config{URLs: []string{url}, User: "frank"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	inst.Hub().DisconnectUser("frank")
	<-c.Done()
	fmt.Println("stopped with close code", client.CloseCode(c.Err()))
	_, err = c.Join(ctx, "general")
	fmt.Println("closed:", errors.Is(err, client.ErrClosed))
	// Output:
	// stopped with close code 4004
	// closed: true
}

// History reads what a room kept, joined or not.
func ExampleClient_History() {
	_, url, stop := startServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.Dial(ctx, client.Config{URLs: []string{url}, User: "gina"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if _, err := c.Join(ctx, "notes"); err != nil {
		fmt.Println(err)
		return
	}
	for _, text := range []string{"one", "two", "three"} {
		if _, err := c.Publish(ctx, "notes", text); err != nil {
			fmt.Println(err)
			return
		}
	}
	h, err := c.History(ctx, "notes", client.HistoryQuery{Limit: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range h.Messages {
		fmt.Println(m.Offset, string(m.Data))
	}
	// Output:
	// 2 "two"
	// 3 "three"
}

// Dial fails at once when the URL answers without upgrading to a
// WebSocket: here the path is wrong, and the server answers 404. The
// *UpgradeError carries the HTTP status.
func ExampleUpgradeError() {
	_, url, stop := startServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	wrong := strings.TrimSuffix(url, "/ws") + "/socket"
	_, err := client.Dial(ctx, client.Config{URLs: []string{wrong}, User: "hank"})
	var ue *client.UpgradeError
	if errors.As(err, &ue) {
		fmt.Println("HTTP status:", ue.StatusCode)
		fmt.Println("retried until ctx ended:", errors.Is(err, context.DeadlineExceeded))
	}
	// Output:
	// HTTP status: 404
	// retried until ctx ended: false
}

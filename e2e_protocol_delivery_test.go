package switchboard_test

import (
	"fmt"
	"sync"
	"testing"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/broker/memory"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestProtocol_Delivery covers "Delivery guarantees" (the idempotent
// publish is TestProtocol_ClientFrames/publish_key, honest epochs
// TestProtocol_ServerFrames/reset).
func TestProtocol_Delivery(t *testing.T) {
	t.Parallel()

	t.Run("exactly once in order", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{Rate: 1e6, Burst: 1 << 20})
		const publishers, each = 3, 50
		readers := []*wstest.Conn{
			wstest.Dial(t, srv.WS, wstest.Hello{User: "reader"}),
			wstest.Dial(t, srv.WS, wstest.Hello{User: "reader", Batch: true}),
		}
		for _, r := range readers {
			r.Join("general")
		}
		pubs := make([]*wstest.Conn, publishers)
		for i := range pubs {
			pubs[i] = wstest.Dial(t, srv.WS, wstest.Hello{User: fmt.Sprintf("pub%d", i)})
			pubs[i].Join("general")
		}
		// Each publisher sends all its frames at once and reads what comes
		// back in its own goroutine: its acks, in order, and the others'
		// messages, in order.
		var wg sync.WaitGroup
		errs := make(chan error, publishers)
		for i, p := range pubs {
			wg.Go(func() {
				for k := range each {
					if err := p.TrySend(wstest.Frame("publish", "id", k, "room", "general", "data", fmt.Sprintf("%d/%d", i, k))); err != nil {
						errs <- err
						return
					}
				}
				acks, msgs, next, lastAck := 0, 0, uint64(1), uint64(0)
				for acks < each || msgs < (publishers-1)*each {
					f, err := p.NextErr(wstest.Timeout)
					if err != nil {
						errs <- fmt.Errorf("publisher %d after %d acks, %d messages: %w", i, acks, msgs, err)
						return
					}
					switch f.Type {
					case protocol.TypeAck:
						if string(f.ID) != fmt.Sprint(acks) || f.Offset <= lastAck {
							errs <- fmt.Errorf("publisher %d: ack %s after offset %d, want id %d", i, wstest.Describe(f), lastAck, acks)
							return
						}
						lastAck = f.Offset
						acks++
						if f.Offset >= next {
							next = f.Offset + 1
						}
					case protocol.TypeMessage:
						if f.Offset < next {
							errs <- fmt.Errorf("publisher %d: message %d again or out of order (next %d)", i, f.Offset, next)
							return
						}
						next = f.Offset + 1
						msgs++
					default:
						errs <- fmt.Errorf("publisher %d got %s", i, wstest.Describe(f))
						return
					}
				}
			})
		}
		for ri, r := range readers {
			seen := make(map[string]bool)
			for off := uint64(1); off <= publishers*each; off++ {
				m := r.ExpectMessage("general", off)
				if seen[string(m.Data)] {
					t.Fatalf("reader %d: %s delivered twice", ri, m.Data)
				}
				seen[string(m.Data)] = true
			}
			if got := r.Ping(); len(got) != 0 {
				t.Errorf("reader %d: extra frame %s", ri, wstest.Describe(got[0]))
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("recovery under live traffic", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{Rate: 1e6, Burst: 1 << 20, HistorySize: 1000})
		pub := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		pub.Join("general")
		epoch := publishN(t, pub, "general", 10)

		const total = 300
		done := make(chan error, 1)
		go func() {
			for i := 11; i <= total; i++ {
				if err := pub.TrySend(wstest.Frame("publish", "id", i, "room", "general", "data", i)); err != nil {
					done <- err
					return
				}
			}
			for i := 11; i <= total; i++ {
				f, err := pub.NextErr(wstest.Timeout)
				if err != nil || f.Type != protocol.TypeAck || f.Offset != uint64(i) {
					done <- fmt.Errorf("ack %d: got %s, %v", i, wstest.Describe(f), err)
					return
				}
			}
			done <- nil
		}()

		// Joins with since, while messages keep coming: missed messages,
		// joined, then live ones, without a hole or a duplicate.
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Send(wstest.Frame("join", "id", "j", "room", "general", "since", protocol.Position{Epoch: epoch, Offset: 5}))
		next, joined := uint64(6), false
		for next <= total {
			f := alice.Next()
			switch f.Type {
			case protocol.TypeJoined:
				if joined || !f.Recovered || f.Offset != next-1 {
					t.Fatalf("got %s after message %d, want one joined with recovered and offset %d", wstest.Describe(f), next-1, next-1)
				}
				joined = true
			case protocol.TypeMessage:
				if f.Offset != next || string(f.Data) != fmt.Sprint(next) {
					t.Fatalf("got %s, want message %d", wstest.Describe(f), next)
				}
				next++
			default:
				t.Fatalf("got %s", wstest.Describe(f))
			}
		}
		if !joined {
			f := alice.Next()
			checkJoined(t, f, `"j"`, "general", epoch, total, true)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})

	t.Run("recovery gap older than history", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{HistorySize: 3})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		bob.Join("general")
		epoch := publishN(t, bob, "general", 10)
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		alice.Send(wstest.Frame("join", "id", 1, "room", "general", "since", protocol.Position{Epoch: epoch, Offset: 2}))
		checkJoined(t, alice.Expect(protocol.TypeJoined), "1", "general", epoch, 10, false)
		// A position ahead of the room's is no position of it either.
		ahead := wstest.Dial(t, srv.WS, wstest.Hello{User: "dave"})
		ahead.Send(wstest.Frame("join", "id", 4, "room", "general", "since", protocol.Position{Epoch: epoch, Offset: 50}))
		checkJoined(t, ahead.Expect(protocol.TypeJoined), "4", "general", epoch, 10, false)
		// Within history it recovers.
		alice.Send(wstest.Frame("join", "id", 2, "room", "other"))
		alice.Expect(protocol.TypeJoined)
		carol := wstest.Dial(t, srv.WS, wstest.Hello{User: "carol"})
		carol.Send(wstest.Frame("join", "id", 3, "room", "general", "since", protocol.Position{Epoch: epoch, Offset: 7}))
		for off := uint64(8); off <= 10; off++ {
			carol.ExpectMessage("general", off)
		}
		checkJoined(t, carol.Expect(protocol.TypeJoined), "3", "general", epoch, 10, true)
	})

	t.Run("ack means stored", func(t *testing.T) {
		t.Parallel()
		srv := wstest.Start(t, switchboard.Config{})
		alice := wstest.Dial(t, srv.WS, wstest.Hello{User: "alice"})
		bob := wstest.Dial(t, srv.WS, wstest.Hello{User: "bob"})
		alice.Join("general")
		ack := alice.Publish("general", "kept")
		bob.Send(wstest.Frame("history", "id", 1, "room", "general"))
		h := bob.Expect(protocol.TypeHistory)
		if len(h.Messages) != 1 || h.Messages[0].Offset != ack.Offset || h.Messages[0].Epoch != ack.Epoch || string(h.Messages[0].Data) != `"kept"` {
			t.Errorf("history after ack = %s, want the acked message", wstest.Describe(h))
		}
	})

	t.Run("no cross-instance loss", func(t *testing.T) {
		t.Parallel()
		// Two instances on one broker.
		b := memory.New(memory.Config{})
		one := wstest.Start(t, switchboard.Config{Broker: b})
		two := wstest.Start(t, switchboard.Config{Broker: b})
		if one.Hub().InstanceID() == two.Hub().InstanceID() {
			t.Fatalf("both instances are %q", one.Hub().InstanceID())
		}
		alice := wstest.Dial(t, one.WS, wstest.Hello{User: "alice"})
		bob := wstest.Dial(t, two.WS, wstest.Hello{User: "bob"})
		bobTab := wstest.Dial(t, one.WS, wstest.Hello{User: "bob"})
		alice.Join("general")
		bob.Join("general")
		bobTab.Join("general")

		for i := 1; i <= 20; i++ {
			alice.Publish("general", i)
		}
		for off := uint64(1); off <= 20; off++ {
			bob.ExpectMessage("general", off)
			bobTab.ExpectMessage("general", off)
		}
		bob.Publish("general", "back")
		alice.ExpectMessage("general", 21)
		bobTab.ExpectMessage("general", 21)

		// Presence counts sessions on every instance.
		alice.Send(wstest.Frame("presence", "id", 1, "room", "general"))
		checkPresence(t, alice.Expect(protocol.TypePresence), "1", "general",
			[]protocol.UserSessions{{User: "alice", Sessions: 1}, {User: "bob", Sessions: 2}})

		// A direct message reaches every tab, wherever it is.
		alice.Send(wstest.Frame("send", "id", 2, "to", "bob", "data", "dm"))
		checkAck(t, alice.Expect(protocol.TypeAck), "2", "@bob", 1)
		bob.ExpectMessage("@bob", 1)
		bobTab.ExpectMessage("@bob", 1)

		// A session of one instance resumes on the other.
		alice.CloseWith(protocol.CloseNormal, "")
		alice.ExpectClose(protocol.CloseNormal)
		wstest.Eventually(t, wstest.Timeout, "alice's session to end", func() bool {
			return one.Hub().SessionCount() == 1
		})
		bob.Publish("general", "while away")
		again := wstest.Dial(t, two.WS, wstest.Hello{User: "alice", Session: alice.Welcome.Session})
		var got []string
		for {
			f := again.Next()
			if f.Type == protocol.TypeJoined && f.Room == "general" {
				if !f.Recovered || f.Offset != 22 {
					t.Errorf("resumed joined = %s, want recovered at offset 22", wstest.Describe(f))
				}
				break
			}
			got = append(got, wstest.Describe(f))
			if f.Type == protocol.TypeMessage && f.Room == "general" && f.Offset != 22 {
				t.Errorf("resumed with %s, want only message 22", wstest.Describe(f))
			}
		}
		if len(got) != 2 { // inbox joined, message 22
			t.Errorf("resume sent %v, want the inbox's joined and message 22", got)
		}
	})
}

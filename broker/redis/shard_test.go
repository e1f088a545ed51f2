package redis

import (
	"testing"

	"github.com/redis/rueidis"
)

// TestRoomOfChannel checks that a room's name comes back from its channel, and
// that other channels (a probe channel) have no room.
func TestRoomOfChannel(t *testing.T) {
	b := &Broker{cfg: Config{Prefix: "sb"}}
	for _, room := range []string{"lobby", "_inbox:u1", "a}:ch", "", "{x}"} {
		ch := b.channel(room)
		if got, ok := b.roomOfChannel(ch); !ok || got != room {
			t.Errorf("roomOfChannel(%q) = %q, %v, want %q, true", ch, got, ok, room)
		}
	}
	for _, ch := range []string{"sb:probe:i_1:{7}", "other:{lobby}:ch", "sb:{lobby}:log"} {
		if room, ok := b.roomOfChannel(ch); ok {
			t.Errorf("roomOfChannel(%q) = %q, true, want no room", ch, room)
		}
	}
}

// TestShard_OnSubscription: a sunsubscribe on the current connection for
// a room of the table or the probe channel means the server dropped a
// subscription; one for a room the shard gave up, one on a connection that
// is not current, and other kinds do not.
func TestShard_OnSubscription(t *testing.T) {
	b := &Broker{cfg: Config{Prefix: "sb"}}
	const probe = "sb:probe:i_1:{7}"
	for _, c := range []struct {
		name    string
		kind    string
		channel string
		old     bool // on the connection before the current one
		lost    bool
	}{
		{"RoomOfTheTable", "sunsubscribe", b.channel("kept"), false, true},
		{"RoomBeingSubscribed", "sunsubscribe", b.channel("new"), false, true},
		{"Probe", "sunsubscribe", probe, false, true},
		{"RoomGivenUp", "sunsubscribe", b.channel("gone"), false, false},
		{"OtherChannel", "sunsubscribe", "sb:probe:i_2:{7}", false, false},
		{"OldConnection", "sunsubscribe", b.channel("kept"), true, false},
		{"Subscribe", "ssubscribe", b.channel("kept"), false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newShard(b, "", nil)
			old := s.newConn()
			s.newConn() // disconnected
			conn := s.newConn()
			if c.old {
				conn = old
			}
			var set handlerSet
			set.add(&counter{})
			s.setSubs("kept", set)
			s.subs["new"] = handlerSet{}
			s.onSubscription(conn, probe, rueidis.PubSubSubscription{Kind: c.kind, Channel: c.channel})
			lost := len(s.lost) > 0
			if lost != c.lost {
				t.Errorf("%s of %s: lost = %v, want %v", c.kind, c.channel, lost, c.lost)
			}
		})
	}
}

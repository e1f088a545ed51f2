package switchboard_test

import (
	"context"
	"strings"
	"testing"

	switchboard "github.com/switchboard-rt/switchboard"
	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/protocol"
)

// A recovery larger than the send queue is delivered whole: history bounds
// it, and closing the session for it would only make the client retry the
// same recovery forever.
func TestDelivery_RecoveryLargerThanSendQueue(t *testing.T) {
	t.Parallel()
	srv := wstest.Start(t, switchboard.Config{SendQueueBytes: 32 << 10, MaxFrameBytes: 4 << 10, HistorySize: 1000})
	data := wstest.JSON(strings.Repeat("x", 1000))
	var first protocol.Position
	for i := range 100 {
		pos, err := srv.Hub().Publish(context.Background(), "firehose", broker.Publication{Data: data})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = pos
		}
	}
	c := wstest.Dial(t, srv.WS, wstest.Hello{User: "slow", Resume: map[string]protocol.Position{"firehose": first}})
	for want := first.Offset + 1; want <= first.Offset+99; want++ {
		f := c.Expect(protocol.TypeMessage)
		if f.Room != "firehose" || f.Offset != want {
			t.Fatalf("got message %s/%d, want firehose/%d", f.Room, f.Offset, want)
		}
	}
	j := c.Expect(protocol.TypeJoined)
	if j.Room != "firehose" || !j.Recovered || j.Offset != first.Offset+99 {
		t.Errorf("got %s, want joined firehose at %d, recovered", wstest.Describe(j), first.Offset+99)
	}
}

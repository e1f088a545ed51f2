// Package brokertest is the conformance suite of broker.Broker. Every
// implementation runs Run from its tests, and RunShared too when several
// brokers can share one backing store (several instances on one Redis):
//
//	func TestBroker(t *testing.T) {
//		brokertest.Run(t, func(t *testing.T, cfg brokertest.Config) broker.Broker {
//			return memory.New(memory.Config{
//				HistorySize:    cfg.HistorySize,
//				HistoryTTL:     cfg.HistoryTTL,
//				IdempotencyTTL: cfg.IdempotencyTTL,
//			})
//		})
//	}
//
// The subtests run in parallel and each asks for a fresh broker, so the
// factory must be safe for concurrent use and give every call its own,
// isolated state (with Redis: its own key prefix). The suite closes every
// broker it was given when the subtest ends.
//
// Deliveries are awaited by polling with a deadline, so the suite fits
// brokers that deliver asynchronously. A few subtests let short TTLs (at
// most a second) elapse in real time.
package brokertest

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// Config is what a subtest needs of the broker it asks for. The zero value of
// each field means the broker's default (history of 100 messages, history
// and idempotency TTL of 5 minutes).
type Config struct {
	// HistorySize is how many messages of each room history keeps.
	HistorySize int
	// HistoryTTL is how long a room's epoch, offset and history live after
	// its last publish. Subtests set it to a second or less.
	HistoryTTL time.Duration
	// IdempotencyTTL is how long a publish key is remembered. Subtests set
	// it to a second or less.
	IdempotencyTTL time.Duration
}

// waitFor bounds every wait for a delivery or an expiry.
const waitFor = 5 * time.Second

// Run runs the conformance suite against the brokers newBroker returns. See
// the package documentation for what newBroker must do.
func Run(t *testing.T, newBroker func(t *testing.T, cfg Config) broker.Broker) {
	open := func(t *testing.T, cfg Config) broker.Broker {
		t.Helper()
		b := newBroker(t, cfg)
		if b == nil {
			t.Fatal("newBroker returned nil")
		}
		t.Cleanup(func() { _ = b.Close(context.Background()) })
		return b
	}
	tests := []struct {
		name string
		run  func(t *testing.T, open func(*testing.T, Config) broker.Broker)
	}{
		{"OffsetsAreContiguous", testOffsetsAreContiguous},
		{"PositionOfNewRoomStartsEpochAtZero", testPositionOfNewRoom},
		{"ConcurrentPublishersGetEveryOffsetOnce", testConcurrentPublishers},
		{"SubscribeIsACleanCut", testSubscribeIsACleanCut},
		{"SubscribeDuringPublishingSeesContiguousSuffix", testSubscribeDuringPublishing},
		{"TwoHandlersGetEveryMessage", testTwoHandlers},
		{"UnsubscribeStopsDelivery", testUnsubscribe},
		{"OtherRoomsAreNotDelivered", testOtherRooms},
		{"SubscribeTwiceDeliversOnce", testSubscribeTwice},
		{"HistoryQueries", testHistoryQueries},
		{"HistoryOfNewRoomIsEmpty", testHistoryOfNewRoom},
		{"HistoryKeepsLastHistorySize", testHistorySize},
		{"HistoryExpiresAfterTTL", testHistoryExpires},
		{"PublishRefreshesHistoryTTL", testPublishRefreshesTTL},
		{"EpochChangeResetsSubscribers", testEpochChangeResets},
		{"IdempotentPublishIsStoredOnce", testIdempotentPublish},
		{"IdempotencyKeysArePerRoom", testIdempotencyPerRoom},
		{"IdempotencyKeyExpires", testIdempotencyExpires},
		{"DataRoundTripsByteForByte", testDataRoundTrips},
		{"CanceledContextPublishesNothing", testCanceledContext},
		{"Presence", testPresence},
		{"SessionsRoundTrip", testSessionsRoundTrip},
		{"UnknownSessionIsNotFound", testUnknownSession},
		{"SessionsExpire", testSessionsExpire},
		{"InstanceRegistry", testInstanceRegistry},
		{"ClosedBrokerRefusesCalls", testClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open)
		})
	}
}

// RunShared runs the subtests that need two brokers on one backing store, as
// two instances sharing one Redis would be: what is published or recorded
// through one must be seen through the other. newPair returns two such
// brokers with default settings, isolated from every other pair; it may
// return the same broker twice for an implementation that cannot share
// (memory), which then checks two handlers on one broker.
func RunShared(t *testing.T, newPair func(t *testing.T) (a, b broker.Broker)) {
	open := func(t *testing.T) (broker.Broker, broker.Broker) {
		t.Helper()
		a, b := newPair(t)
		if a == nil || b == nil {
			t.Fatal("newPair returned nil")
		}
		t.Cleanup(func() {
			_ = a.Close(context.Background())
			_ = b.Close(context.Background())
		})
		return a, b
	}
	tests := []struct {
		name string
		run  func(t *testing.T, a, b broker.Broker)
	}{
		{"MessagesCrossBrokers", testMessagesCrossBrokers},
		{"PositionAndHistoryAreShared", testPositionAndHistoryShared},
		{"IdempotencyIsShared", testIdempotencyShared},
		{"PresenceSessionsAndInstancesAreShared", testStateShared},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := open(t)
			tt.run(t, a, b)
		})
	}
}

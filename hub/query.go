package hub

import (
	"context"
	"sort"

	"github.com/switchboard-rt/switchboard/broker"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Publish stores p in room through the broker, for the HTTP API. Unlike
// client publishes it is accepted during a drain: a backend's request needs
// no socket, and the broker is still there.
func (h *Hub) Publish(ctx context.Context, room string, p broker.Publication) (broker.Position, error) {
	return h.publish(ctx, room, p)
}

// UserStatus tells how many sessions user has, on which instances, across
// the deployment (from the presence of the user's inbox).
type UserStatus struct {
	Sessions  int
	Instances []string
}

// UserStatus returns the status of user.
func (h *Hub) UserStatus(ctx context.Context, user string) (UserStatus, error) {
	entries, err := h.broker.Presence(ctx, protocol.Inbox(user))
	if err != nil {
		return UserStatus{}, err
	}
	seen := make(map[string]bool)
	st := UserStatus{Sessions: len(entries), Instances: []string{}}
	for _, e := range entries {
		if !seen[e.Instance] {
			seen[e.Instance] = true
			st.Instances = append(st.Instances, e.Instance)
		}
	}
	sort.Strings(st.Instances)
	return st, nil
}

// Instances lists the live instances of the deployment.
func (h *Hub) Instances(ctx context.Context) ([]broker.InstanceInfo, error) {
	return h.broker.Instances(ctx)
}

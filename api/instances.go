package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/switchboard-rt/switchboard/broker"
)

// instanceLister lists the live instances of the deployment.
type instanceLister interface {
	Instances(ctx context.Context) ([]broker.InstanceInfo, error)
}

// timeFormat is RFC 3339 in UTC with milliseconds.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// instanceAnswer describes one instance; times are RFC 3339 in UTC.
type instanceAnswer struct {
	ID            string `json:"id"`
	Address       string `json:"address"`
	Sessions      int    `json:"sessions"`
	Started       string `json:"started"`
	LastHeartbeat string `json:"lastHeartbeat"`
}

// listInstances handles GET /api/instances.
func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) error {
	list, err := s.instances.Instances(r.Context())
	if err != nil {
		return fmt.Errorf("list instances: %w", err)
	}
	ans := make([]instanceAnswer, len(list))
	for i, in := range list {
		ans[i] = instanceAnswer{
			ID: in.ID, Address: in.Address, Sessions: in.Sessions,
			Started: rfc3339(in.Started), LastHeartbeat: rfc3339(in.LastHeartbeat),
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Instances []instanceAnswer `json:"instances"`
	}{ans})
	return nil
}

func rfc3339(t time.Time) string { return t.UTC().Format(timeFormat) }

package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/switchboard-rt/switchboard/protocol"
)

// UserStatus is what the hub reports of a user across the deployment. The
// API declares it rather than import package hub; package switchboard
// adapts the hub's own type.
type UserStatus struct {
	// Sessions counts the user's sessions on every instance.
	Sessions int
	// Instances lists the ids of the instances holding those sessions.
	Instances []string
}

// userDirectory answers questions about users and disconnects them.
type userDirectory interface {
	UserStatus(ctx context.Context, user string) (UserStatus, error)
	// DisconnectEverywhere closes the user's sessions on every instance
	// with 4004 and returns how many there were.
	DisconnectEverywhere(ctx context.Context, user string) (int, error)
}

// userParam returns the {user} path value, checked.
func userParam(r *http.Request) (string, error) {
	user := r.PathValue("user")
	if !protocol.ValidUser(user) {
		return "", errorf(protocol.CodeBadRequest, "the path does not name a valid user id: use 1-%d printable characters without spaces or braces, percent-encoded", protocol.MaxUserLen)
	}
	return user, nil
}

// userAnswer is the answer to GET /api/users/{user}.
type userAnswer struct {
	User      string   `json:"user"`
	Online    bool     `json:"online"`
	Sessions  int      `json:"sessions"`
	Instances []string `json:"instances"`
}

// userStatus handles GET /api/users/{user}. An unknown or offline user is
// not an error: it is reported with online false.
func (s *Server) userStatus(w http.ResponseWriter, r *http.Request) error {
	user, err := userParam(r)
	if err != nil {
		return err
	}
	st, err := s.users.UserStatus(r.Context(), user)
	if err != nil {
		return fmt.Errorf("status of user %q: %w", user, err)
	}
	ans := userAnswer{User: user, Online: st.Sessions > 0, Sessions: st.Sessions, Instances: st.Instances}
	if ans.Instances == nil {
		ans.Instances = []string{}
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// disconnect handles POST /api/users/{user}/disconnect: it closes the user's
// sessions on every instance with 4004 and answers {"sessions":N}.
func (s *Server) disconnect(w http.ResponseWriter, r *http.Request) error {
	user, err := userParam(r)
	if err != nil {
		return err
	}
	n, err := s.users.DisconnectEverywhere(r.Context(), user)
	if err != nil {
		return fmt.Errorf("disconnect user %q: %w", user, err)
	}
	writeJSON(w, http.StatusOK, struct {
		Sessions int `json:"sessions"`
	}{n})
	return nil
}

package redistest_test

import (
	"testing"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

func TestStartRestart(t *testing.T) {
	t.Parallel()
	s := redistest.Start(t)
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do("GET", "k"); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want v", got, err)
	}
	s.Restart()
	// No persistence: a restarted server is empty.
	if got, err := s.Do("GET", "k"); err != nil || got != "" {
		t.Fatalf("GET k after restart = %q, %v; want empty", got, err)
	}
	s.Stop()
	if err := s.Ping(); err == nil {
		t.Fatal("PING succeeded after Stop")
	}
}

package bench

import "fmt"

// planRooms places many small rooms whose members all publish: the
// members of a room sit on different instances (when there are several)
// and in different processes, so every message crosses the broker.
func planRooms(cfg Config, runID string, p *plan, add planAdder) {
	n := len(cfg.URLs)
	for r := range cfg.Rooms {
		room := fmt.Sprintf("pair-%s-%d", runID, r)
		p.rooms = append(p.rooms, room)
		p.members = append(p.members, cfg.Members)
		for j := range cfg.Members {
			g := r*cfg.Members + j
			add(g%cfg.Procs, connSpec{Index: g, User: userName(runID, g), Rooms: []string{room}, PubRoom: room, Receivers: cfg.Members - 1}, (r+j)%n)
		}
	}
}

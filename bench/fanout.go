package bench

import "fmt"

// planFanout places R rooms × M members: member g of the run sits on URL
// g mod len(URLs). With --publish ws each room gets one more connection,
// its publisher, which is not a member: Switchboard answers its publishes
// with acks, and a Centrifugo publisher is not subscribed.
func planFanout(cfg Config, runID string, p *plan, add planAdder) {
	n := len(cfg.URLs)
	for r := range cfg.Rooms {
		room := fmt.Sprintf("fan-%s-%d", runID, r)
		p.rooms = append(p.rooms, room)
		p.members = append(p.members, cfg.Members)
		for j := range cfg.Members {
			g := r*cfg.Members + j
			add((g/n)%cfg.Procs, connSpec{Index: g, User: userName(runID, g), Rooms: []string{room}}, g%n)
		}
		if cfg.Publish == PublishWS {
			g := cfg.Conns + r
			add(r%cfg.Procs, connSpec{Index: g, User: userName(runID, g), Rooms: []string{room}, PubRoom: room, Receivers: cfg.Members}, r%n)
		}
	}
}

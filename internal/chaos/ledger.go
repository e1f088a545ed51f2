package chaos

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard-rt/switchboard/client"
	"github.com/switchboard-rt/switchboard/protocol"
)

// Payload is the data of every message the workload publishes: the name of
// its publisher and a sequence number, which together identify the publish.
type Payload struct {
	P string `json:"p"`
	N int    `json:"n"`
}

// ID identifies the publish.
func (p Payload) ID() string { return p.P + "#" + strconv.Itoa(p.N) }

// idOf returns the publish id of a message's data, or the data itself when
// it is not a Payload.
func idOf(data json.RawMessage) string {
	var p Payload
	if json.Unmarshal(data, &p) != nil || p.P == "" {
		return string(data)
	}
	return p.ID()
}

// ack is an acknowledged publish.
type ack struct {
	id string
	// by is the publishing client; nil for the HTTP API.
	by *Tracker
}

// Ledger records what was acknowledged and, through its Trackers, what each
// client received. Check compares the two. It is safe for concurrent use.
type Ledger struct {
	mu sync.Mutex
	// acks holds, per room, the acknowledged publishes by position.
	acks map[string]map[protocol.Position]ack
	// ids holds the positions each publish was acknowledged at.
	ids     map[string][]protocol.RoomPosition
	gaveUp  []string
	refused []string
	// conflicts are positions acknowledged to two different publishes.
	conflicts []string
	trackers  []*Tracker
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{
		acks: make(map[string]map[protocol.Position]ack),
		ids:  make(map[string][]protocol.RoomPosition),
	}
}

// Track returns the Tracker of a new client called name (for reports),
// connected as user.
func (l *Ledger) Track(name, user string) *Tracker {
	tr := &Tracker{name: name, user: user, streams: make(map[string]*stream)}
	l.mu.Lock()
	l.trackers = append(l.trackers, tr)
	l.mu.Unlock()
	return tr
}

// Acked records that publish id was acknowledged at pos in room. by is the
// client that published it, nil for the HTTP API; if by is joined to room,
// pos counts as held by it.
func (l *Ledger) Acked(room string, pos protocol.Position, id string, by *Tracker) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.acks[room]
	if m == nil {
		m = make(map[protocol.Position]ack)
		l.acks[room] = m
	}
	if prev, ok := m[pos]; ok && prev.id != id {
		// Two publishes acknowledged at one position: one of them is lost
		// for everybody.
		l.conflicts = append(l.conflicts, room+" "+posString(pos)+" acknowledged to "+prev.id+" and to "+id)
	}
	m[pos] = ack{id: id, by: by}
	l.ids[id] = append(l.ids[id], protocol.RoomPosition{Room: room, Epoch: pos.Epoch, Offset: pos.Offset})
	if by != nil {
		by.ownAck(room, pos, id)
	}
}

// GaveUp records a publish to room that was not acknowledged before its
// retries ran out of time: it may or may not have been stored.
func (l *Ledger) GaveUp(room, id string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gaveUp = append(l.gaveUp, id+" to "+room+": "+err.Error())
}

// Refused records a publish to room that the server refused for good.
func (l *Ledger) Refused(room, id string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refused = append(l.refused, id+" to "+room+": "+err.Error())
}

// Tracker records what one client received and how its connection fared.
// Its Handle and OnStateChange methods fit client.Config. It is safe for
// concurrent use.
type Tracker struct {
	name, user string

	mu      sync.Mutex
	streams map[string]*stream
	resets  int
	lefts   []string

	state client.State
	// up is set once the client was connected.
	up          bool
	downSince   time.Time
	longest     time.Duration
	disconnects int
	// reasons counts the disconnections by reason (see reason).
	reasons map[string]int
	closing bool
	// closedErr is why the client stopped by itself, if it did.
	closed    bool
	closedErr error
}

// stream is what a client received of one room.
type stream struct {
	// joined is set once the client joined the room; start is the position
	// its stream starts after.
	joined bool
	start  protocol.Position
	got    []delivery
	// own holds the client's own acknowledged publishes to the room.
	own map[protocol.Position]string
}

// delivery is one message a client received.
type delivery struct {
	pos protocol.Position
	id  string
}

// Name returns the client's name.
func (tr *Tracker) Name() string { return tr.name }

func (tr *Tracker) streamOf(room string) *stream {
	s := tr.streams[room]
	if s == nil {
		s = &stream{}
		tr.streams[room] = s
	}
	return s
}

// Joined records that the client joined room and that its stream starts
// after start. Call it before anything is published to room.
func (tr *Tracker) Joined(room string, start protocol.Position) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := tr.streamOf(room)
	s.joined, s.start = true, start
}

// ownAck records an acknowledged publish of the client itself.
func (tr *Tracker) ownAck(room string, pos protocol.Position, id string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s := tr.streams[room]
	if s == nil || !s.joined {
		return // a direct message to another user
	}
	if s.own == nil {
		s.own = make(map[protocol.Position]string)
	}
	s.own[pos] = id
}

// Handle records a message the client delivered; it is a client.Config
// Handler.
func (tr *Tracker) Handle(m client.Message) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch m.Kind {
	case client.KindMessage:
		s := tr.streamOf(m.Room)
		s.got = append(s.got, delivery{pos: m.Position, id: idOf(m.Data)})
	case client.KindReset:
		tr.resets++
	case client.KindLeft:
		tr.lefts = append(tr.lefts, m.Room+": "+errString(m.Err))
	}
}

// OnStateChange records the client's connection state; it is a
// client.Config OnStateChange.
func (tr *Tracker) OnStateChange(s client.State, err error) {
	tr.stateAt(s, err, time.Now())
}

func (tr *Tracker) stateAt(s client.State, err error, now time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	wasUp := tr.state == client.StateConnected
	tr.state = s
	if tr.closing {
		return // closed on purpose: no disconnection
	}
	switch {
	case s == client.StateConnected:
		if tr.up && !tr.downSince.IsZero() {
			tr.longest = max(tr.longest, now.Sub(tr.downSince))
		}
		tr.up, tr.downSince = true, time.Time{}
	case wasUp:
		tr.downSince = now
		tr.disconnects++
		if tr.reasons == nil {
			tr.reasons = make(map[string]int)
		}
		tr.reasons[reason(err)]++
	}
	if s == client.StateClosed && !tr.closing {
		tr.closed, tr.closedErr = true, err
	}
}

// Closing says that the client is being closed on purpose: a closed state
// from now on is no failure.
func (tr *Tracker) Closing() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.closing = true
}

// connected reports whether the client is connected now.
func (tr *Tracker) connected() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.state == client.StateConnected
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func posString(p protocol.Position) string {
	return p.Epoch + "/" + strconv.FormatUint(p.Offset, 10)
}

// reason names why a connection ended: its close code, or "network" for
// anything else (a dropped connection, a refused dial, a dead heartbeat).
func reason(err error) string {
	if code := client.CloseCode(err); code != 0 {
		return strconv.Itoa(code)
	}
	if err == nil {
		return "none"
	}
	return "network"
}

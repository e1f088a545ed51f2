package redis

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/switchboard-rt/switchboard/broker"
)

// Key and channel names. Every per-room name carries the room as its hash
// tag, so that in Redis Cluster a room's keys and channel share one slot.

func (b *Broker) roomKey(room, suffix string) string {
	return b.cfg.Prefix + ":{" + room + "}:" + suffix
}

func (b *Broker) metaKey(room string) string     { return b.roomKey(room, "meta") }
func (b *Broker) logKey(room string) string      { return b.roomKey(room, "log") }
func (b *Broker) channel(room string) string     { return b.roomKey(room, "ch") }
func (b *Broker) presenceKey(room string) string { return b.roomKey(room, "members") }

// roomOfChannel returns the room of ch, a part of ch's string, and true if
// ch is a room's channel.
func (b *Broker) roomOfChannel(ch string) (string, bool) {
	rest, ok := strings.CutPrefix(ch, b.cfg.Prefix+":{")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "}:ch")
}

func (b *Broker) idemKey(room, key string) string {
	return b.roomKey(room, "idem:"+key)
}
func (b *Broker) sessionKey(id string) string { return b.cfg.Prefix + ":session:{" + id + "}" }

// The envelope is how a message travels: the publish script builds it once,
// stores it as the single field "m" of the room's stream entry and
// publishes the same bytes on the room's channel. It is text with six
// newline-terminated header fields and then the variable parts, joined:
//
//	1\n <epoch>\n <offset>\n <ts>\n <len(from)>\n <len(origin)>\n <from><origin><data>
//
// (without the spaces). The "1" is the format version; ts is Redis's clock
// in Unix milliseconds; the lengths are byte counts, so from and origin may
// hold any bytes; data runs to the end. Decoding is a few IndexByte calls
// and one copy of data; the room comes from the channel or key it was read
// from.

const envelopeVersion = "1"

var errEnvelope = errors.New("malformed envelope")

// decodeEnvelope decodes an envelope of room.
func decodeEnvelope(room, env string) (*broker.Message, error) {
	var f [6]string
	rest := env
	for i := range f {
		j := strings.IndexByte(rest, '\n')
		if j < 0 {
			return nil, errEnvelope
		}
		f[i], rest = rest[:j], rest[j+1:]
	}
	if f[0] != envelopeVersion {
		return nil, fmt.Errorf("%w: version %q", errEnvelope, f[0])
	}
	offset, err1 := strconv.ParseUint(f[2], 10, 64)
	ts, err2 := strconv.ParseInt(f[3], 10, 64)
	nFrom, err3 := strconv.Atoi(f[4])
	nOrigin, err4 := strconv.Atoi(f[5])
	if err := errors.Join(err1, err2, err3, err4); err != nil || f[1] == "" || nFrom < 0 || nOrigin < 0 || nFrom+nOrigin > len(rest) {
		return nil, errEnvelope
	}
	return &broker.Message{
		Room:   room,
		Epoch:  f[1],
		Offset: offset,
		Time:   ts,
		From:   rest[:nFrom],
		Origin: rest[nFrom : nFrom+nOrigin],
		Data:   json.RawMessage(rest[nFrom+nOrigin:]),
	}, nil
}

// parsePosition parses the "<epoch>\n<offset>" the scripts answer with.
func parsePosition(s string) (broker.Position, error) {
	epoch, off, ok := strings.Cut(s, "\n")
	offset, err := strconv.ParseUint(off, 10, 64)
	if !ok || err != nil || epoch == "" {
		return broker.Position{}, fmt.Errorf("malformed position %q", s)
	}
	return broker.Position{Epoch: epoch, Offset: offset}, nil
}

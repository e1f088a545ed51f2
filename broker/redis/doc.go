// Package redis is the broker for many instances sharing Redis (7.0 or
// later): one server, a primary that Sentinel fails over
// (Config.SentinelMaster), or a Redis Cluster (Config.Cluster). Rooms'
// offsets, epochs and history live in Redis, messages travel over sharded
// pub/sub, and every instance delivers each message of a room to its
// handlers exactly once, in offset order, or says Reset.
//
// # Layout
//
// With the default prefix "sb", room r uses (the room is the hash tag, so a
// room's keys and channel share one cluster slot, and every script touches
// one slot):
//
//	sb:{r}:meta          hash: epoch, offset, gen (the server generation the epoch belongs to)
//	sb:{r}:log           stream of the last messages; entry id <offset>-0, one field "m": the envelope
//	sb:{r}:idem:<key>    the first position published with idempotency key <key>, with TTL
//	sb:{r}:ch            sharded pub/sub channel carrying the envelopes
//	sb:{r}:members       hash: session → user NUL instance NUL incarnation (presence)
//
// and, per deployment or instance: sb:{instances} (hash: id → JSON info),
// sb:{instances}:hb (sorted set: id → last heartbeat, Redis clock, ms) and
// sb:{instances}:live (sorted set: incarnation → last keep-alive), which
// share one slot; sb:session:{id} (JSON session state with a TTL); and
// sb:probe:<instance>:{n} (the instance's probe channel on each shard, n
// chosen so that the shard serves its slot). meta and log expire
// HistoryTTL after the last publish; Position and History do not extend
// them.
//
// # Publishing
//
// Publish is one Lua script (EVALSHA, with EVAL after NOSCRIPT): check the
// idempotency key; start an epoch if meta is missing or belongs to another
// server generation; HINCRBY the offset; build the envelope with Redis's
// clock; XADD it with id <offset>-0 and MAXLEN ~HistorySize; refresh the
// TTLs; store the idempotency key; SPUBLISH the same envelope on the room's
// channel. Its answer is the position that becomes the ack. Redis runs
// scripts one at a time, so offsets are contiguous and the channel carries
// a room's messages in offset order. rueidis pipelines concurrent publishes
// automatically (on a cluster, to the master that serves the room's slot,
// following MOVED and ASK). The stream is trimmed approximately (exact
// trimming halves XADD throughput), so reads count only the last
// HistorySize offsets as history.
//
// The envelope (see envelope.go) is text: a version, epoch, offset, time
// and the byte lengths of from and origin on five lines, then from, origin
// and the data. Decoding it is a few IndexByte calls.
//
// # Honest epochs, decided by Redis
//
// A room's epoch belongs to a generation of the server that holds it: the
// server's replication id (master_replid), which Redis draws anew when it
// starts and when a replica is promoted. Every script that touches a
// room's stream reads the generation of the server it runs on (INFO
// replication, from inside the script) and starts a new epoch when the
// room's was started under another: after a restart or a failover, history
// may have lost its tail, so no epoch continues across one. Because Redis
// decides, atomically with the publish or read that first meets the new
// generation, a room starts exactly one new epoch per failover, however
// many instances publish to it and whenever each of them notices the
// failover. (Instances that decided from their own view of the server
// started one epoch each, and a session could miss one of them without a
// Reset.) On a cluster each shard has its own generation: a room whose
// shard failed over starts a new epoch, rooms of other shards do not.
// Moving a slot to another master (resharding) gives its rooms new epochs
// too. Without permission to run INFO (ACL), the generation is "unknown"
// and epochs survive failovers.
//
// # Delivery
//
// The live path is split by shard: on one Redis or with Sentinel there is
// one shard, on a cluster one per master, found with CLUSTER SLOTS. Each
// shard has a goroutine that owns a dedicated pub/sub connection to its
// server and the table of the rooms subscribed on it (room → handlers). A
// room's channel is subscribed while at least one local Handler wants the
// room (SSUBSCRIBE and SUNSUBSCRIBE are batched over concurrent calls and
// after reconnection; on a cluster one command per hash slot, pipelined).
// The shard goroutine serves Subscribe and Unsubscribe for its rooms,
// publishes a probe marker on its probe channel every ProbeInterval,
// replaces its connection when it breaks, when no marker has come back for
// three intervals, or when the server drops a subscription (SUNSUBSCRIBE
// pushed after a slot moved), and then resubscribes and catches up its
// rooms. A slow or dead shard holds up its own rooms only.
//
// On a cluster a topology watcher reads CLUSTER SLOTS every ten probe
// intervals, every quarter interval while a shard is down, and when a
// shard asks (after a redirection or a lost connection). When slots change
// hands (a replica promoted, a slot migrated) it starts a shard for a new
// master, moves the rooms whose slot another master serves now (the new
// shard subscribes them and catches them up from where they were), and
// stops a shard left without slots. Subscribe and Unsubscribe calls and
// moves exclude each other (moveMu), so a room never lives on two shards.
//
// One dispatcher goroutine owns, per subscribed room, the position of the
// last message handed to the handlers, and calls the handlers, so per room
// they are called in order and never concurrently. One queue feeds it:
// the messages and markers of every shard's connection and the changes
// from the shards, in order. Continuity, per room: a message at last+1 is
// delivered; one at or below last is a duplicate and dropped; anything else
// (a hole, or another epoch) sends the room to its shard's catch-up reader
// and keeps its live messages waiting. The dispatcher never waits for
// Redis itself: one room's catch-up, however slow, does not hold up the
// others.
//
// The catch-up reader of a shard reads, in pipelined batches, each room's
// position and history after its last message (one script), retries a
// failed read for up to 5 s (after 100 ms, then twice as long each time,
// at most 1 s apart: long enough to outlast a failover), and hands the
// answer to the dispatcher, which delivers what the room missed, then
// what waited, and Resets where history no longer holds the messages or
// the epoch changed. A read that still fails gives up continuity (a Reset
// before the waiting messages) if messages wait; otherwise the room is
// tried again at its shard's fifth probe tick. A room waits with at most
// 4,096 messages; past that they are dropped and the room read once more
// afterwards.
//
// The dispatch queue holds at most DispatchQueue messages. When it is full,
// a message that arrives is dropped (never a marker or a change) and its
// room is noted; once the dispatcher has taken what was queued, each noted
// room is caught up from history. So a dispatcher that falls behind costs
// history reads, or Resets where history is too short, never a silent
// hole. Config.Registerer exports the queue's depth, the drops and the
// catch-up reads.
//
// A room subscribed afresh starts at its position read right after the
// SSUBSCRIBE took effect; messages arriving before that read is known wait,
// and those at or below it are dropped, as they were published before
// Subscribe returned. A handler joining a room that is already subscribed
// starts when a probe marker published on the room's shard during its
// Subscribe comes back through that shard's connection, which is after
// everything published there before the call has arrived.
//
// # Failure
//
// Every command is bounded by Config.Timeout. While Redis (or a shard) is
// unreachable, calls for it fail with errors wrapping
// broker.ErrUnavailable (Publish never reports success for a message it
// did not store), Ready fails, and the shard keeps reconnecting with
// jittered backoff; when Redis returns or a replica takes over, rooms are
// resubscribed and caught up without a new Broker. The Sentinel client
// follows the primary the sentinels name.
//
// # Presence and instances
//
// The instance registry expires by Redis's clock, so instances' clocks need
// not agree. A presence entry names the incarnation of the Broker that
// added it (InstanceID/random token) and lives while that incarnation is
// live in sb:{instances}:live, within PresenceTTL: Heartbeat keeps it live,
// so one heartbeat keeps all of a Broker's entries alive, however many
// rooms they are in. An incarnation found not live is never made live
// again: the next keep-alive (Heartbeat, or AddPresence when Redis has not
// confirmed the incarnation for a third of PresenceTTL) replaces it with a
// new one and the Broker writes all its entries again under it. Presence
// reads a room's hash, asks the liveness set about its incarnations, and
// removes the entries of dead ones, each only if it still names a dead
// incarnation: since dead ones stay dead, that cannot remove an entry
// rewritten meanwhile. Each step touches one slot. An instance restarted
// under the same id is a new incarnation, so its predecessor's entries stay
// dead. Room keys have a long TTL (an hour by default) that their Brokers
// renew a few rooms per Heartbeat, so keys do not outlive the instances
// that wrote them (see presenceKeyTTL).
//
// The Broker keeps the entries it added. It writes them all again
// (pipelined, batched) when its incarnation was replaced, and after a
// shard's pub/sub connection came back (a restart or failover may have
// lost writes). Each batch of rooms it writes excludes AddPresence and
// RemovePresence while it is written, from the Broker's current entries,
// so a rewrite never resurrects a removed entry.
//
// # Locks
//
// moveMu comes before everything else. restoreMu comes before rewriteMu,
// which comes before presenceMu; presenceMu, shardsMu, each shard's subMu,
// each catch-up reader's lock and the queue's lock are leaves. The shards'
// tables have one owner goroutine each, which changes them holding subMu
// (for its pub/sub connection's reader) and reads them without it; the
// rooms' positions have one owner goroutine and no lock.
package redis

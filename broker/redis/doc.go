// Package redis is the broker for many instances sharing one Redis (7.0 or
// later): rooms' offsets, epochs and history live in Redis, messages travel
// over Redis pub/sub, and every instance delivers each message of a room to
// its handlers exactly once, in offset order, or says Reset.
//
// # Layout
//
// With the default prefix "sb", room r uses (the room is the hash tag, so a
// room's keys and channel share one Redis Cluster slot):
//
//	sb:{r}:meta          hash: epoch, offset, gen (the server generation the epoch belongs to)
//	sb:{r}:log           stream of the last messages; entry id <offset>-0, one field "m": the envelope
//	sb:{r}:idem:<key>    the first position published with idempotency key <key>, with TTL
//	sb:{r}:ch            pub/sub channel carrying the envelopes
//	sb:{r}:members       hash: session → user NUL instance NUL incarnation (presence)
//
// and, per deployment or instance: sb:instances (hash: id → JSON info),
// sb:instances:hb (sorted set: id → last heartbeat, Redis clock, ms),
// sb:instances:live (sorted set: incarnation → last heartbeat),
// sb:session:{id} (JSON session state with a TTL) and sb:probe:<instance>
// (the instance's liveness probe channel). meta and log expire HistoryTTL
// after the last publish; Position and History do not extend them.
//
// # Publishing
//
// Publish is one Lua script (EVALSHA, with EVAL after NOSCRIPT): check the
// idempotency key; start an epoch if meta is missing or belongs to another
// generation; HINCRBY the offset; build the envelope with Redis's clock;
// XADD it with id <offset>-0 and MAXLEN ~HistorySize; refresh the TTLs;
// store the idempotency key; PUBLISH the same envelope. Its answer is the
// position that becomes the ack. Redis runs scripts one at a time, so
// offsets are contiguous and the channel carries a room's messages in
// offset order. rueidis pipelines concurrent publishes automatically. The
// stream is trimmed approximately (exact trimming halves XADD throughput),
// so reads count only the last HistorySize offsets as history.
//
// The envelope (see envelope.go) is text: a version, epoch, offset, time
// and the byte lengths of from and origin on five lines, then from, origin
// and the data. Decoding it is a few IndexByte calls.
//
// # Delivery
//
// One dedicated connection carries pub/sub. A room's channel is subscribed
// while at least one local Handler wants the room (SUBSCRIBE and
// UNSUBSCRIBE are batched over concurrent calls and after reconnection).
// Two goroutines own the live path:
//
//   - The controller owns the connection and the table of subscriptions
//     (room → handlers). It serves Subscribe and Unsubscribe, publishes a
//     probe marker on the instance's probe channel every ProbeInterval,
//     replaces the connection when it breaks or when no marker has come
//     back for three intervals, and watches the server's generation.
//   - The dispatcher owns, per subscribed room, the position of the last
//     message handed to the handlers, and calls the handlers. One queue
//     feeds it: messages from the connection's reader and changes from the
//     controller, in order. Handlers are therefore called one at a time.
//
// Continuity, per room: a message at last+1 is delivered; one at or below
// last is a duplicate and dropped; anything else (a hole, or another epoch)
// makes the dispatcher read the room's position and history after last in
// one script, deliver what it missed, and Reset where history no longer
// holds it or the epoch changed. After a new connection, every room is
// resubscribed and caught up the same way, in pipelined batches.
//
// A room subscribed afresh starts at its position read right after the
// SUBSCRIBE took effect; messages arriving before that read is known wait,
// and those at or below it are dropped, as they were published before
// Subscribe returned. A handler joining a room that is already subscribed
// starts when a probe marker published during its Subscribe comes back
// through the connection, which is after everything published before the
// call has arrived.
//
// # Honest epochs
//
// The server's generation is a hash of its run_id (new on every restart)
// and master_replid (new when a replica is promoted). Every script that
// touches a room's stream takes the generation the Broker knows and starts
// a new epoch when the room's epoch was started under another one: after a
// restart or failover, a room's history may have lost its tail, so no epoch
// continues across it. The generation is read at start, on every new
// connection (before rueidis uses it: a connection to a server of a new
// generation is refused once, so commands prepared with the old generation
// never reach the new server), every fifth probe tick and after READONLY
// answers. When it changes, every subscribed room is caught up under the
// new generation, which gives its handlers a Reset to the new epoch. A call
// that ran while the generation changed fails with broker.ErrUnavailable.
//
// # Failure
//
// Every command is bounded by Config.Timeout. While Redis is unreachable,
// calls fail with errors wrapping broker.ErrUnavailable (Publish never
// reports success for a message it did not store), Ready fails, and the
// controller keeps reconnecting with jittered backoff; when Redis returns,
// rooms are resubscribed and caught up without a new Broker.
//
// # Presence and instances
//
// The instance registry expires by Redis's clock, so instances' clocks
// need not agree. A presence entry names the incarnation of the Broker that
// added it (InstanceID/random token) and lives while that incarnation is
// in sb:instances:live within PresenceTTL: Heartbeat (and AddPresence)
// bump it, so one heartbeat keeps all of a Broker's entries alive, however
// many rooms they are in. The presence script reads a room and looks each
// incarnation up once; it leaves out, and deletes, the entries of the dead
// ones. An instance restarted under the same id is a new incarnation, so
// its predecessor's entries stay dead. Room keys have a long TTL (an hour
// by default) that their Brokers renew a few rooms per Heartbeat, so keys
// do not outlive the instances that wrote them (see presenceKeyTTL).
//
// The Broker keeps the entries it added. It writes them all again
// (pipelined, batched) when its incarnation is found not live on Heartbeat
// or AddPresence (readers may have removed them, or Redis lost its data),
// and when the server's generation changes (a restart or failover may have
// lost writes). Each batch of rooms it writes excludes AddPresence and
// RemovePresence while it is written, from the Broker's current entries,
// so a rewrite never resurrects a removed entry.
//
// The presence scripts touch sb:instances:live besides the room's key, so
// under Redis Cluster they would need the live incarnations passed in
// instead; this broker supports one Redis (or Sentinel) for now.
//
// # Locks
//
// restoreMu comes before rewriteMu, which comes before presenceMu;
// presenceMu and the queue's lock are leaves. The subscription table and
// the rooms' positions have one owner goroutine each and no lock.
package redis

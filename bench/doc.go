// Package bench is the load generator behind `switchboard bench`: it opens
// WebSocket connections to running instances on this machine, drives one of
// three workloads and reports what it measured.
//
//   - idle: N connections, each in its inbox and one shared room. Reports the
//     connect rate and each server's resident memory per connection
//     (process_resident_memory_bytes from /metrics before and after, or
//     VmRSS from /proc with --server-pids).
//   - fanout: R rooms × M members spread over the instances; publishes
//     through the HTTP API (or a publisher connection per room) at each rate
//     of a ladder.
//   - rooms: many small rooms (2 members by default) whose members sit on
//     different instances and all publish; the ladder's rate is the
//     aggregate over all members.
//
// # Measuring
//
// Publishing is open loop: Pace issues sends on a ticker schedule and never
// waits for an answer, so a slow server shows up as latency, loss and
// skipped sends (the generator fell more than 100 ms behind, or no sender
// could take the send when it was due), never as a quietly lower offered
// rate. API publishes come from APIWorkers workers (64), each with one
// request in flight: a publish that finds no idle worker is skipped, so an
// HTTP API that answers slowly shows as skipped publishes and a lower
// accepted rate, and each publish's round trip is recorded. Each message's
// data is a JSON string holding the ladder step, a sequence number per
// source, the wall-clock time just before the frame or HTTP request was
// written, and the source connection (see payload.go); receivers find it
// with a byte search, not a JSON decoder, because the generator shares the
// machine's cores with the servers. Latency is receive time minus that send
// time, recorded in an HDR histogram per step (microseconds, 3 significant
// digits), so it includes the HTTP API call or the publish frame, the
// broker, the fan-out and the client's read.
//
// Receivers cost what Receiver says: pooled (a pooled buffer and a byte
// search, the cheapest), scan (gorilla/websocket's ReadMessage, a new
// buffer per frame, then a scan of each line, as issue 15's independent
// generator did) or decode (ReadMessage and a full JSON decode of every
// object into generic values, as a browser's JSON.parse does).
//
// A run may start with a warm-up step (left out of the summary), run its
// steps back to back (Continuous: deliveries/s and CPU over each step's
// wall-clock window, loss and latency per step after one final drain), and
// keep doubling the rate after the ladder until the machine is saturated
// (Saturate).
//
// Expected deliveries are acknowledged publishes × receivers. After each
// step the run waits Drain, then as long as deliveries keep arriving (up to
// MaxDrain), so Lost counts messages that never came, not late ones.
// Duplicates are found per connection and source with a window of the last
// 4096 sequence numbers. A Centrifugo client also receives its own
// publications; those are counted apart (self) and not as deliveries, as
// Switchboard answers its own publishes with an ack.
//
// CPU per step comes from /proc: utime+stime of --server-pids for
// deliveries per server core-second, of --broker-pids (Redis) for the same
// with the broker included, the generator's own processes, and /proc/stat
// for the whole machine, because the kernel's softirq work for loopback
// traffic is charged to no process.
//
// # Processes
//
// A worker holds connections and counts what they receive. With Procs 1 it
// runs in the calling process; otherwise Run starts Procs children of
// ChildCommand (the `switchboard bench --bench-child` of the same binary),
// which call RunChild. Parent and child talk in JSON lines over the child's
// standard input and output: requests connect, step, stats and close go
// down; replies, and a progress line every second, come up. Histograms
// travel in HdrHistogram's compressed V2 encoding. A child ends when its
// input closes, and dies with its parent (Pdeathsig), so no connection
// outlives a run.
//
// # Safety
//
// Every URL, API base and source address must be on loopback: the
// generator refuses anything else. Runs are bounded: each step lasts
// Duration, each drain at most MaxDrain, each connection attempt
// DialTimeout, and closing 5 s plus a margin, after which
// children are killed.
//
// # Targets
//
// The Switchboard adapter speaks PROTOCOL.md. The Centrifugo adapter speaks
// Centrifugo v6's JSON client protocol (see centrifugo.go) and publishes
// through its HTTP API (POST /api/publish with X-API-Key); its rooms are
// channels in the "bench" namespace and inboxes the user-limited channels
// "inbox:#<user>", as configured in bench/peers/centrifugo.json.
package bench

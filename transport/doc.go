// Package transport owns the server side of WebSocket connections: the
// opening handshake, RFC 6455 framing in both directions, and one owner
// per socket through which every byte written passes.
//
// # One owner per socket
//
// A Conn is the only writer of its socket. Messages (Send, SendWait), the
// heartbeat (Ping), the answers to a peer's pings and the close frames all
// go through its send queue, bounded by Config.SendQueueBytes: data frames
// count their bytes, and control frames are bounded by construction (at
// most one ping, one pong and one close pending). The reading side never
// writes; it hands pongs and closes to the owner. A connection's life is
// one value: open, then closing (a close was decided; nothing more is
// queued or handled; the close frame is on its way), then closed (the
// socket is closed). A close happens once, with one code.
//
// # Writing
//
// On plain TCP on Unix, connections with something to send go to a
// flusher: up to GOMAXPROCS-1 shared worker goroutines (at least one),
// alive only while there is work, each giving a connection one non-blocking
// write(2) of everything queued. On Linux, where the kernel allows it, a
// worker sends the writes of a chunk of up to 32 detached connections with
// one io_uring submission instead (batch.go, uring_linux.go): each send
// still completes at once with what its socket took, as the write(2)
// would, for a third less CPU per delivery. The processor left over is
// what keeps the network polled while the workers are saturated (see
// flushWorkers).
// Whatever the socket does not take goes to a goroutine of the
// connection's own that writes the rest within Config.WriteTimeout
// (waiting for room in writeWaits when detached, or in a write with a
// deadline that it clears afterwards), so the next write takes the direct
// path again. TLS connections, and platforms
// without raw sockets, always use that blocking writer. A write that times
// out closes the connection as a slow consumer (4008).
//
// While the flusher's workers are busy most of the time, the machine is
// saturated and writes are paced (pace.go): a connection written less than
// the pacing interval ago waits until the interval has passed, and
// everything queued for it meanwhile goes out in the same write. The
// interval grows while the workers stay busy, up to Config.MaxWriteDelay,
// and is 0 as soon as they are not.
//
// Send never blocks: a frame that would overflow the queue closes the
// connection with 4008. SendWait, for answers a client asked for
// (replays, history), waits for room instead, so that a client that reads
// is never closed for asking and one that does not is closed once the
// queue made no room for the write timeout. Config.MaxQueuedBytes adds a
// ceiling over all connections. A frame counts against both from the
// moment it is queued until a writer takes it, and, on a plain socket, if
// the socket does not take the write whole (the peer is behind), until it
// is written: bytes a writer holds for a peer that does not read leave no
// room behind them.
//
// # Reading
//
// Reading is an incremental parser fed with whatever the socket has, so
// that an idle connection holds no read buffer. On Linux an idle
// connection holds no goroutine either: it is registered in one epoll set
// shared by the process (poller_linux.go), whose events start a reader
// goroutine that reads without blocking, handles every complete message
// and registers the connection again when the socket is empty. A TLS
// connection registers the socket under crypto/tls once crypto/tls holds
// no record it has not returned (Conn.readTLS). Where epoll is not
// available, a goroutine parks in a readiness wait on a stack that never
// grows, or blocks in its reads (TLS, other platforms). Messages are
// handed to the Handler one at a time, in order.
//
// The parser enforces RFC 6455 (masked client frames, no reserved bits or
// opcodes, control frames of at most 125 bytes and never fragmented,
// lengths in their shortest form with the top bit clear, fragments only
// inside a message, close codes and reasons valid, text in UTF-8), failing
// the connection with 1002 or 1007; a message over Config.MaxMessageBytes
// gets 1009. Messages and control frames count against a token bucket
// (Config.Rate, Config.Burst; the first message, the protocol's hello, is
// free); past the burst they are refused, and a peer refused more than
// Burst times in a row is closed with 4029. A message may have only so
// many fragments (1008 past that), and Conn.Unfinished lets the owner close
// a peer that never finishes one.
//
// # Owning the descriptor
//
// On Linux a plain TCP connection is detached from package net once its
// handshake is done (detach_linux.go): the Conn keeps a duplicate of the
// socket's descriptor and closes the net.Conn, which frees the net.Conn,
// its two addresses and the Go runtime's poll descriptor (together about
// 1 KiB of an idle connection's resident memory). Reads and writes are then
// system calls on the descriptor; input waits in the poller, and a writer
// whose socket is full waits in a second epoll set (writeWaits) instead of
// in a blocking write. The kernel reuses a closed descriptor's number at
// once, so a detached descriptor is closed only when no system call is
// under way on it (Conn.fdAcquire): a write can never reach the next
// socket that got the number. TLS connections, and other platforms, keep
// their net.Conn.
//
// # Locks
//
// Conn.mu guards the write side and the state; the flusher has its own;
// Conn.pollMu orders registering a socket in the poller against closing it;
// Conn.fdRefs holds a detached descriptor's close until the system calls
// under way on it return.
// No lock is held across socket I/O or a Handler call.
package transport

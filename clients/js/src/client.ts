import { Backoff, type BackoffOptions } from './backoff.js';
import { Conn } from './conn.js';
import { Emitter } from './emitter.js';
import { ClosedError, CloseCode, CloseError, ConnectionError, ServerError, TokenError, retryable } from './errors.js';
import type { Delivery } from './room.js';
import { checkRoom, checkUser, encodeData, inbox, newKey } from './names.js';
import { Session, UserChangedError, abortReason, messageFrom } from './session.js';
import type {
  AbortSignalLike, Ack, ClientEvents, ClientFrame, History, Joined, Logger, Position,
  Presence, RequestOptions, ServerFrame, State, WebSocketConstructor,
} from './types.js';

/** Options of a {@link Client}. `url` and one of `token` or `user` are required. */
export interface ClientOptions {
  /**
   * WebSocket endpoints (`ws://` or `wss://`, path `/ws`) of instances of
   * one deployment, or one load balancer. A path such as `/ws` is resolved
   * against the page's location. The client starts at a random one and
   * moves to another one, chosen at random, on every further attempt.
   */
  readonly url: string | readonly string[];
  /**
   * Returns the JWT for hello. It is called before every connection
   * attempt, so after the server closed with 4003 (token expired) the next
   * connection carries a fresh token, and by {@link Client.refresh}.
   */
  readonly token?: () => string | Promise<string>;
  /** The user id for a server in dev mode, used when `token` is not set. */
  readonly user?: string;
  /** The WebSocket class. Default: `globalThis.WebSocket` (browsers, Node 22+); on Node 20 pass `ws`'s. */
  readonly WebSocket?: WebSocketConstructor;
  /** Batch mode (several server frames per WebSocket frame). Default: true. */
  readonly batch?: boolean;
  /** Deliver the client's own publishes back to it as messages, besides the ack. Default: false. */
  readonly echo?: boolean;
  /** Shapes the delays between connection attempts. */
  readonly backoff?: BackoffOptions;
  /**
   * Bounds how long a dead connection goes unnoticed, in ms: after half of
   * it without a frame the client sends a ping frame, and a connection that
   * answers nothing is dropped and replaced. Default: the heartbeat the
   * server announces (25 s on a default server), but at least 5 s.
   */
  readonly heartbeatTimeout?: number;
  /** Bounds one connection attempt, from fetching the token to the welcome, in ms. Default: 10000. */
  readonly handshakeTimeout?: number;
  /** Reconnect after close code 4004 (disconnected through the server's API) instead of stopping. */
  readonly reconnectOnDisconnect?: boolean;
  /** Receives the client's logs. Default: none. */
  readonly logger?: Logger;
}

/** The smallest default heartbeat timeout, in ms. */
export const minHeartbeatTimeout = 5000;

const silent: Logger = { debug() {}, info() {}, warn() {} };

interface Outcome {
  welcomed: boolean;
  err: Error;
  reconnectAfter?: number | undefined;
  /** Set when no later attempt can succeed. */
  fatal?: boolean;
}

/**
 * A connection to a Switchboard deployment that survives restarts and
 * network faults: it reconnects with back-off, resumes every joined room and
 * its inbox from the last message received, drops duplicates, and writes
 * unanswered requests again on the next connection — publishes with the same
 * idempotency key, so that none is stored twice. Messages, resets and state
 * changes arrive as events, per room in stream order.
 */
export class Client {
  private readonly opts: ClientOptions;
  private readonly WS: WebSocketConstructor;
  private readonly urls: string[];
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private readonly events = new Emitter<ClientEvents>();

  private urlIndex: number;
  private started = false;
  private stopped = false;
  private closing = false;
  private stopError: Error | undefined;
  private currentState: State = 'disconnected';
  private everWelcomed = false;
  /** The connection of the current attempt. */
  private conn: Conn | null = null;
  /** The rooms, positions and pending requests, across connections. */
  private readonly proto: Session;
  private waiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  private wake: (() => void) | null = null;
  /** Called when the client stops. */
  private readonly onStop = new Set<() => void>();
  private runDone: Promise<void> = Promise.resolve();

  /** Creates a client; it connects when {@link connect} is called. Throws on invalid options. */
  constructor(opts: ClientOptions) {
    this.opts = opts;
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new TypeError('switchboard: no WebSocket class: pass options.WebSocket (on Node 20, the ws package)');
    this.WS = WS;
    const urls = typeof opts.url === 'string' ? [opts.url] : [...opts.url];
    if (urls.length === 0) throw new TypeError('switchboard: options.url is empty');
    this.urls = urls.map(resolveURL);
    if (!opts.token) {
      if (opts.user === undefined) throw new TypeError('switchboard: set options.token, or options.user for a server in dev mode');
      const bad = checkUser(opts.user);
      if (bad) throw new TypeError(`switchboard: options.user: ${bad.message.replace(/^bad_request: /, '')}`);
    }
    for (const [k, v] of [['heartbeatTimeout', opts.heartbeatTimeout], ['handshakeTimeout', opts.handshakeTimeout]] as const) {
      if (v !== undefined && !(v > 0)) throw new TypeError(`switchboard: options.${k} must be a positive number of ms`);
    }
    this.backoff = new Backoff(opts.backoff);
    this.log = opts.logger ?? silent;
    this.proto = new Session({
      echo: opts.echo ?? false,
      log: this.log,
      deliver: (d) => this.deliver(d),
      welcomed: (cn) => this.welcomed(cn),
    });
    this.urlIndex = Math.floor(Math.random() * this.urls.length);
  }

  /** on adds a listener for event and returns a function that removes it. Listeners run after the client's own handling, in order. */
  on<K extends keyof ClientEvents>(event: K, listener: (...args: ClientEvents[K]) => void): () => void {
    return this.events.on(event, listener);
  }

  /** off removes a listener added with {@link on}. */
  off<K extends keyof ClientEvents>(event: K, listener: (...args: ClientEvents[K]) => void): void {
    this.events.off(event, listener);
  }

  /** The current connection state. */
  get state(): State {
    return this.currentState;
  }

  /** The user the server welcomed the client as; empty before the first welcome. */
  get user(): string {
    return this.proto.userID;
  }

  /** The id of the current (or last) session. */
  get session(): string {
    return this.proto.sessionID;
  }

  /** The id of the instance of the current (or last) session. */
  get instance(): string {
    return this.proto.instanceID;
  }

  /** The client's inbox room, `@` and its user id; empty before the first welcome. */
  get inbox(): string {
    return this.proto.inbox;
  }

  /** Why the client stopped: a {@link CloseError}, or a {@link ClosedError} after {@link close}; undefined while it runs. */
  get error(): Error | undefined {
    return this.stopError;
  }

  /** The joined rooms, the inbox included, sorted. */
  get joined(): string[] {
    return this.proto.joined();
  }

  /** position returns where the client is in room: the last message received, or where the stream started; undefined unless joined. */
  position(room: string): Position | undefined {
    return this.proto.position(room);
  }

  /**
   * connect starts the client and resolves once the server welcomed it.
   * Until then it retries after network errors and resumable close codes,
   * until signal aborts (which closes the client). It rejects at once when
   * the client stops: the server refused the credentials (a
   * {@link CloseError} with code 4003), closed with a code that means stop,
   * or the token callback failed (a {@link TokenError}). Calling it again
   * while connected resolves at once.
   */
  connect(opts: { signal?: AbortSignalLike } = {}): Promise<void> {
    if (this.stopped) return Promise.reject(this.stopError);
    if (this.proto.active) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    const { signal } = opts;
    if (signal) {
      const onAbort = () => {
        if (!this.everWelcomed) void this.close();
      };
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        const off = () => signal.removeEventListener('abort', onAbort);
        p.then(off, off);
      }
    }
    if (!this.started) {
      this.started = true;
      this.runDone = this.run().catch((err: unknown) => {
        this.stop(err instanceof Error ? err : new Error(String(err)));
      });
    }
    return p;
  }

  /**
   * close ends the session with close code 1000 and stops the client.
   * Pending requests fail with a {@link ClosedError}; events not dispatched
   * yet are dropped, then the `closed` state is reported. Idempotent.
   */
  async close(): Promise<void> {
    if (this.stopped || this.closing) {
      await this.runDone;
      return;
    }
    this.closing = true;
    this.events.clear();
    this.wake?.();
    if (!this.started) this.stop(new ClosedError());
    await this.conn?.shutdown();
    await this.runDone;
  }

  /**
   * join joins room and resolves with the position its stream starts
   * after. From then on the room's messages arrive as `message` events, and
   * the room stays joined across reconnects until {@link leave}. With
   * `since`, the messages after it that the server still has come first;
   * `recovered` says whether all of them did. Joining a joined room
   * resolves with its current position.
   */
  async join(room: string, opts: RequestOptions & { since?: Position } = {}): Promise<Joined> {
    const bad = checkRoom(room);
    if (bad) throw bad;
    if (opts.since && !opts.since.epoch) throw new ServerError('bad_request', 'since needs an epoch');
    const frame: ClientFrame = { type: 'join', room };
    if (opts.since) frame.since = { epoch: opts.since.epoch, offset: opts.since.offset };
    const f = await this.request(frame, opts.signal);
    return { room, epoch: f.epoch ?? '', offset: f.offset ?? 0, recovered: f.recovered === true };
  }

  /** leave leaves room; no message of it is delivered after the promise resolves. Leaving a room not joined is not an error. */
  async leave(room: string, opts: RequestOptions = {}): Promise<void> {
    const bad = checkRoom(room);
    if (bad) throw bad;
    await this.request({ type: 'leave', room }, opts.signal);
  }

  /**
   * publish publishes data (a JSON value) to room, which the client must
   * have joined, and resolves with its position once the broker stored it.
   * Each publish carries a random idempotency key: if the connection drops
   * before the ack, it is sent again with the same key after the reconnect,
   * so the message is stored once and the promise resolves with its one
   * position. The client's own message is not delivered back to it (unless
   * `echo`). If the signal aborts first, the publish may or may not have
   * been stored.
   */
  async publish(room: string, data: unknown, opts: RequestOptions = {}): Promise<Ack> {
    const bad = checkRoom(room);
    if (bad) throw bad;
    const f = await this.request({ type: 'publish', room, data: encodeData(data), key: newKey() }, opts.signal);
    return { room: f.room ?? room, epoch: f.epoch ?? '', offset: f.offset ?? 0 };
  }

  /** send sends data to user's inbox (a direct message) and resolves with its position in `@user`. It retries like {@link publish}. */
  async send(user: string, data: unknown, opts: RequestOptions = {}): Promise<Ack> {
    const bad = checkUser(user);
    if (bad) throw bad;
    const f = await this.request({ type: 'send', to: user, data: encodeData(data), key: newKey() }, opts.signal);
    return { room: f.room ?? inbox(user), epoch: f.epoch ?? '', offset: f.offset ?? 0 };
  }

  /** presence resolves with who is in room, across all instances. */
  async presence(room: string, opts: RequestOptions = {}): Promise<Presence> {
    const bad = checkRoom(room);
    if (bad) throw bad;
    const f = await this.request({ type: 'presence', room }, opts.signal);
    return { room: f.room ?? room, total: f.total ?? 0, users: f.users ?? [] };
  }

  /**
   * history reads room's history: the latest messages, or those after
   * `since`. It does not need the room to be joined and does not change
   * what the client has received.
   */
  async history(room: string, opts: RequestOptions & { since?: Position; limit?: number } = {}): Promise<History> {
    const bad = checkRoom(room);
    if (bad) throw bad;
    if (opts.since && !opts.since.epoch) throw new ServerError('bad_request', 'since needs an epoch');
    const frame: ClientFrame = { type: 'history', room };
    if (opts.since) frame.since = { epoch: opts.since.epoch, offset: opts.since.offset };
    if (opts.limit !== undefined && opts.limit > 0) frame.limit = Math.floor(opts.limit);
    const f = await this.request(frame, opts.signal);
    return { room: f.room ?? room, epoch: f.epoch ?? '', offset: f.offset ?? 0, messages: (f.messages ?? []).map(messageFrom) };
  }

  /** refresh fetches a new token from `options.token` and hands it to the server, so that the session outlives its first token. */
  async refresh(opts: RequestOptions = {}): Promise<void> {
    if (!this.opts.token) throw new TypeError('switchboard: refresh needs options.token');
    let token: string;
    try {
      token = await this.opts.token();
    } catch (err) {
      throw new TokenError(err);
    }
    await this.request({ type: 'refresh', token }, opts.signal);
  }

  // The connection loop.

  private async run(): Promise<void> {
    let attempt = 0;
    let wait = 0;
    for (let n = 0; ; n++) {
      if (wait > 0) await this.sleep(wait);
      if (this.closing) break;
      this.setState('connecting');
      if (n > 0) this.urlIndex = nextURL(this.urlIndex, this.urls.length);
      const out = await this.attempt(this.urls[this.urlIndex]!);
      if (this.closing) break;
      if (out.welcomed) {
        this.everWelcomed = true;
        attempt = 0;
      }
      const d = this.decide(out);
      if (d.stop) {
        this.log.info(`switchboard: stopped: ${d.stop.message}`);
        this.stop(d.stop);
        return;
      }
      if (d.exact !== undefined) {
        wait = d.exact;
        attempt = 0;
      } else {
        wait = this.backoff.delay(attempt);
        if (d.long) wait = Math.max(wait, this.backoff.max / 2);
        attempt++;
      }
      this.log.info(`switchboard: disconnected (${out.err.message}), retrying in ${Math.round(wait)} ms`);
      this.setState('disconnected', out.err);
    }
    this.stop(new ClosedError());
  }

  /** attempt makes one connection attempt to url and serves the connection until it ends. */
  private async attempt(url: string): Promise<Outcome> {
    const timeout = this.opts.handshakeTimeout ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<'expired'>((r) => (timer = setTimeout(() => r('expired'), timeout)));
    try {
      let token: string | undefined;
      if (this.opts.token) {
        const fetch = this.opts.token;
        const closed = new Promise<'closed'>((r) => (this.wake = () => r('closed')));
        let got: string | 'expired' | 'closed';
        try {
          got = await Promise.race([Promise.resolve().then(fetch), expired, closed]);
        } catch (err) {
          return { welcomed: false, err: new TokenError(err) };
        } finally {
          this.wake = null;
        }
        if (got === 'closed') return { welcomed: false, err: new ClosedError() };
        if (got === 'expired') return { welcomed: false, err: new TokenError(new Error('no token within the handshake timeout')) };
        if (typeof got !== 'string' || got === '') return { welcomed: false, err: new TokenError(new Error('the token callback returned no token')) };
        token = got;
      }
      if (this.closing) return { welcomed: false, err: new ClosedError() };
      let cn: Conn;
      try {
        cn = new Conn(this.WS, url, {
          open: (c) => this.hello(c, token),
          frames: (c, frames) => {
            for (const f of frames) this.proto.handle(c, f);
          },
        });
      } catch (err) {
        return { welcomed: false, err: err instanceof Error ? err : new Error(String(err)), fatal: true };
      }
      this.conn = cn;
      void expired.then(() => {
        if (!cn.welcomed) cn.fail(new ConnectionError('no welcome within the handshake timeout'));
      });
      const err = await cn.done;
      this.proto.detach(cn);
      this.conn = null;
      return { welcomed: cn.welcomed, err, reconnectAfter: cn.reconnectAfter };
    } finally {
      clearTimeout(timer);
    }
  }

  /** decide applies the close code table of docs/protocol.md to how a connection ended. */
  private decide(out: Outcome): { stop?: Error; exact?: number; long?: boolean } {
    if (out.reconnectAfter !== undefined) return { exact: out.reconnectAfter };
    const err = out.err;
    if (out.fatal || err instanceof UserChangedError) return { stop: err };
    const code = err instanceof CloseError ? err.code : 0;
    switch (code) {
      case CloseCode.Normal:
      case CloseCode.Policy:
      case CloseCode.TooLarge:
        return { stop: err };
      case CloseCode.Disconnected:
        return this.opts.reconnectOnDisconnect ? {} : { stop: err };
      case CloseCode.Unauthorized:
        // A token expired during a session is fetched again; a token (or, in
        // dev mode, a user name) refused at hello will be refused again.
        return this.opts.token && out.welcomed ? {} : { stop: err };
      case CloseCode.RateLimited:
        return { long: true };
    }
    if (err instanceof TokenError && !this.everWelcomed) return { stop: err };
    return {};
  }

  /** sleep waits ms, or until close. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }

  private setState(s: State, err?: Error): void {
    if (this.currentState === s) return;
    this.currentState = s;
    if (err) this.events.emit('state', s, err);
    else this.events.emit('state', s);
  }

  /** stop ends the client with err: pending requests fail, connect rejects, the state becomes closed. */
  private stop(err: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    this.stopError = err;
    this.proto.failAll(err);
    for (const w of this.waiters.splice(0)) w.reject(err);
    for (const f of [...this.onStop]) f();
    const byClose = this.closing && !(err instanceof CloseError);
    this.currentState = 'closed';
    if (byClose) this.events.emit('state', 'closed');
    else this.events.emit('state', 'closed', err);
  }

  /** hello returns the hello frame for cn: it resumes every joined room and the inbox from the last position received, and names the last session. */
  private hello(cn: Conn, token: string | undefined): string {
    const f: ClientFrame = { type: 'hello', batch: this.opts.batch ?? true, echo: this.opts.echo ?? false };
    if (token !== undefined) f.token = token;
    else f.user = this.opts.user!;
    return this.proto.hello(cn, f);
  }

  // Requests.

  /**
   * request sends frame and waits for its answer. Answers that mean
   * "nothing was done, try again" (unavailable, rate_limited) are retried
   * with back-off until the signal aborts; publishes keep their key.
   */
  private async request(frame: ClientFrame, signal: AbortSignalLike | undefined): Promise<ServerFrame> {
    for (let attempt = 0; ; attempt++) {
      try {
        if (this.stopped) throw this.stopError;
        return await this.proto.roundTrip(frame, signal);
      } catch (err) {
        if (!retryable(err)) throw err;
        this.log.debug(`switchboard: ${frame.type} refused (${(err as Error).message}), retrying`);
        await this.pause(this.backoff.delay(attempt), signal);
      }
    }
  }

  /** pause waits ms, rejecting if the signal aborts or the client stops. */
  private pause(ms: number, signal: AbortSignalLike | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(this.stopError);
      const t = setTimeout(() => finish(undefined), ms);
      const onAbort = () => finish(abortReason(signal!));
      const onStop = () => finish(this.stopError);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.onStop.add(onStop);
      const finish = (err: unknown) => {
        clearTimeout(t);
        signal?.removeEventListener('abort', onAbort);
        this.onStop.delete(onStop);
        if (err) reject(err);
        else resolve();
      };
    });
  }

  /** welcomed runs once the session made cn its active connection. */
  private welcomed(cn: Conn): void {
    cn.watch(this.opts.heartbeatTimeout ?? Math.max(cn.heartbeat, minHeartbeatTimeout));
    this.log.info(`switchboard: connected to ${cn.url} as ${this.user}, instance ${this.instance}, session ${this.session}, ${cn.resumed.size} rooms resumed`);
    this.setState('connected');
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  private deliver(d: Delivery): void {
    if (this.closing) return; // close drops what was not dispatched
    switch (d.kind) {
      case 'message':
        this.events.emit('message', d.message);
        return;
      case 'reset':
        this.events.emit('reset', d.reset);
        return;
      case 'left':
        this.events.emit('left', d.left);
    }
  }
}

/** nextURL picks the URL of a reconnection: a random one other than the last, so that the clients of an instance that went away spread over the others. */
function nextURL(last: number, n: number): number {
  if (n < 2) return 0;
  return (last + 1 + Math.floor(Math.random() * (n - 1))) % n;
}

/** resolveURL checks a WebSocket URL, resolving a path against the page's location. */
function resolveURL(raw: string): string {
  const loc = (globalThis as { location?: { href: string } }).location;
  let u: URL;
  try {
    u = loc ? new URL(raw, loc.href) : new URL(raw);
  } catch {
    throw new TypeError(`switchboard: ${JSON.stringify(raw)} is not a URL`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`switchboard: ${JSON.stringify(raw)}: the scheme must be ws or wss`);
  return u.href;
}

import { Backoff, type BackoffOptions } from './backoff.js';
import { Conn } from './conn.js';
import { Emitter } from './emitter.js';
import { ClosedError, CloseCode, CloseError, ConnectionError, ServerError, TokenError, retryable } from './errors.js';
import { Room, type Delivery } from './room.js';
import { checkRoom, checkUser, encodeData, inbox, newKey } from './names.js';
import type {
  AbortSignalLike, Ack, ClientEvents, ClientFrame, History, Joined, Logger, Message, Position,
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

/** A client frame waiting for its answer. */
interface Request {
  id: number;
  frame: ClientFrame;
  /** Settles the caller's promise; undefined for the client's own requests. */
  settle?: (frame: ServerFrame | undefined, err: Error | undefined) => void;
  /** The connection the request was last written on. */
  conn: Conn | null;
  /** A publish or send written on a connection that ended before its answer: its message may be stored. */
  everSent: boolean;
  /** The caller gave up after the frame was written: the answer is still read, for the positions, but not retried. */
  abandoned: boolean;
  /** The room whose resumed messages wait for this request's ack. */
  holds: Room | null;
  /** Set while a join is counted in its room's joins, or a leave in its leaves. */
  counted: boolean;
  /** The client's own join of a room whose resume failed. */
  rejoin: boolean;
}

interface Outcome {
  welcomed: boolean;
  err: Error;
  reconnectAfter?: number | undefined;
  /** Set when no later attempt can succeed. */
  fatal?: boolean;
}

/** A connection ended with another user than the first session's. */
class UserChangedError extends ClosedError {
  constructor(user: string, was: string) {
    super(`switchboard: the server welcomed another user (${JSON.stringify(user)}) than before (${JSON.stringify(was)})`);
    this.name = 'UserChangedError';
  }
}

const answers: Record<string, string> = {
  publish: 'ack', send: 'ack', refresh: 'ack', leave: 'left', presence: 'presence', history: 'history', ping: 'pong',
};

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
  private conn: Conn | null = null;
  /** The welcomed connection requests are written on. */
  private active: Conn | null = null;
  private nextID = 0;
  private readonly pending = new Map<number, Request>();
  private readonly rooms = new Map<string, Room>();
  private userID = '';
  private sessionID = '';
  private instanceID = '';
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
    return this.userID;
  }

  /** The id of the current (or last) session. */
  get session(): string {
    return this.sessionID;
  }

  /** The id of the instance of the current (or last) session. */
  get instance(): string {
    return this.instanceID;
  }

  /** The client's inbox room, `@` and its user id; empty before the first welcome. */
  get inbox(): string {
    return this.userID ? inbox(this.userID) : '';
  }

  /** Why the client stopped: a {@link CloseError}, or a {@link ClosedError} after {@link close}; undefined while it runs. */
  get error(): Error | undefined {
    return this.stopError;
  }

  /** The joined rooms, the inbox included, sorted. */
  get joined(): string[] {
    return [...this.rooms.values()].filter((r) => r.joined).map((r) => r.name).sort();
  }

  /** position returns where the client is in room: the last message received, or where the stream started; undefined unless joined. */
  position(room: string): Position | undefined {
    const rm = this.rooms.get(room);
    return rm?.joined && rm.hasPos ? rm.pos : undefined;
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
    if (this.active) return Promise.resolve();
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
            for (const f of frames) this.handle(c, f);
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
      this.detach(cn);
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
    for (const r of [...this.pending.values()]) this.resolve(r, undefined, err);
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
    if (this.sessionID) f.session = this.sessionID;
    cn.resumed = new Set();
    for (const rm of this.rooms.values()) {
      if (!rm.joined) continue;
      cn.resumed.add(rm.name);
      if (rm.hasPos && rm.pos.epoch) (f.resume ??= {})[rm.name] = rm.pos;
    }
    return JSON.stringify(f);
  }

  // Frames from the server.

  private handle(cn: Conn, f: ServerFrame): void {
    switch (f.type) {
      case 'welcome':
        this.onWelcome(cn, f);
        return;
      case 'message':
        this.onMessage(f);
        return;
      case 'reset':
        this.onReset(f);
        return;
      case 'joined':
        this.onJoined(cn, f);
        return;
      case 'server:reconnect':
        cn.reconnectAfter = Math.max(Number(f.reconnectAfter) || 0, 0);
        this.log.info(`switchboard: server ${f.server ?? ''} asks to reconnect after ${cn.reconnectAfter} ms`);
        return;
      case 'left':
        if (f.id === undefined) {
          this.removedFrom(f.room ?? '');
          return;
        }
    }
    const r = this.answered(f);
    if (!r) {
      if (f.type === 'error') this.log.warn(`switchboard: server error: ${f.code ?? ''}: ${f.message ?? ''}`);
      return;
    }
    this.onAnswer(cn, r, f);
  }

  private answered(f: ServerFrame): Request | undefined {
    return typeof f.id === 'number' ? this.pending.get(f.id) : undefined;
  }

  /** onWelcome makes cn the active connection: the resume barrier and every pending request are written, in order. */
  private onWelcome(cn: Conn, f: ServerFrame): void {
    if (cn.welcomed) return;
    const user = f.user ?? '';
    if (this.userID && user !== this.userID) {
      cn.fail(new UserChangedError(user, this.userID));
      return;
    }
    cn.welcomed = true;
    this.userID = user;
    this.sessionID = f.session ?? '';
    this.instanceID = f.instance ?? '';
    cn.heartbeat = f.heartbeat ?? 0;
    const ib = this.roomFor(inbox(user));
    ib.joined = true;
    if (!cn.resumed.has(ib.name) && f.inbox) ib.setPos({ epoch: f.inbox.epoch, offset: f.inbox.offset });
    this.active = cn;
    // The server handles frames after hello only once the resumed rooms are
    // joined, so the pong of this ping ends the resume.
    const barrier = this.newRequest({ type: 'ping' });
    this.add(barrier);
    cn.barrier = barrier.id;
    this.recountHolds();
    for (const id of [...this.pending.keys()].sort((a, b) => a - b)) {
      const r = this.pending.get(id)!;
      if (r.conn === null && !r.abandoned) this.write(cn, r);
    }
    cn.watch(this.opts.heartbeatTimeout ?? Math.max(cn.heartbeat, minHeartbeatTimeout));
    this.log.info(`switchboard: connected to ${cn.url} as ${user}, instance ${this.instanceID}, session ${this.sessionID}, ${cn.resumed.size} rooms resumed`);
    this.setState('connected');
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  private onMessage(f: ServerFrame): void {
    const rm = this.rooms.get(f.room ?? '');
    if (!rm) return; // left, or never joined
    const p = { epoch: f.epoch ?? '', offset: f.offset ?? 0 };
    if (rm.seen(p)) {
      this.log.debug(`switchboard: duplicate dropped: ${rm.name} ${p.epoch}:${p.offset}`);
      return;
    }
    if (rm.isOwn(p)) {
      rm.forcePos(p); // the client's own publish, resent by a resume
      return;
    }
    rm.forcePos(p);
    const d: Delivery = { kind: 'message', message: messageFrom(f) };
    if (rm.held.length > 0 || (rm.holds > 0 && f.from === this.userID)) {
      rm.held.push(d);
      return;
    }
    this.deliver(d);
  }

  private onReset(f: ServerFrame): void {
    const rm = this.rooms.get(f.room ?? '');
    if (!rm) return;
    const p = { epoch: f.epoch ?? '', offset: f.offset ?? 0 };
    rm.forcePos(p);
    this.push(rm, { kind: 'reset', reset: { room: rm.name, ...p } });
  }

  private onJoined(cn: Conn, f: ServerFrame): void {
    const name = f.room ?? '';
    const p = { epoch: f.epoch ?? '', offset: f.offset ?? 0 };
    if (f.id === undefined) {
      // The end of a room's resume.
      const rm = this.rooms.get(name);
      if (!rm) {
        // Joined from the state of the previous session (hello.session),
        // but left since: leave again.
        this.leaveQuietly(name);
        return;
      }
      this.resumed(cn, rm, f);
      return;
    }
    const r = this.answered(f);
    if (!r || r.frame.type !== 'join') return;
    let rm = this.rooms.get(name);
    if (r.rejoin) {
      this.resolve(r, f, undefined);
      if (rm) this.resumed(cn, rm, f);
    } else if (r.abandoned) {
      this.resolve(r, f, undefined);
      if (!rm || (!rm.joined && rm.joins === 0)) this.leaveQuietly(name);
    } else {
      rm ??= this.roomFor(name);
      if (rm.joined) rm.setPos(p);
      else {
        // A new stream: its start is the truth, whatever since said.
        rm.forcePos(p);
        rm.joined = true;
      }
      this.resolve(r, f, undefined);
    }
  }

  /** resumed records that the resume of cn joined rm again; a resume that could not recover every missed message is reported as a reset. */
  private resumed(cn: Conn, rm: Room, f: ServerFrame): void {
    const p = { epoch: f.epoch ?? '', offset: f.offset ?? 0 };
    rm.resumedOn = cn;
    if (cn.resumed.has(rm.name) && !f.recovered) {
      rm.forcePos(p);
      this.push(rm, { kind: 'reset', reset: { room: rm.name, ...p } });
    } else {
      rm.setPos(p);
    }
    rm.joined = true;
  }

  /** removedFrom handles a left without id: the server took the session out of the room. */
  private removedFrom(name: string): void {
    const rm = this.rooms.get(name);
    if (!rm || !rm.joined || name === this.inbox) return;
    this.flushHeld(rm);
    rm.joined = false;
    rm.unposition();
    this.deliver({ kind: 'left', left: { room: name, error: new ServerError('forbidden', 'the server took the session out of the room') } });
    this.forget(rm);
  }

  private onAnswer(cn: Conn, r: Request, f: ServerFrame): void {
    if (f.type === 'error') {
      const err = new ServerError(f.code ?? 'internal', f.message ?? '');
      if (r.rejoin) {
        this.resolve(r, undefined, err);
        this.rejoinRefused(cn, r.frame.room ?? '', err);
      } else if (r.frame.type === 'leave' && f.code === 'not_joined') {
        this.left(r, f); // not joined is what leave wants
      } else {
        this.resolve(r, undefined, err);
      }
      return;
    }
    if (f.type !== answers[r.frame.type]) {
      this.resolve(r, undefined, new ServerError('internal', `unexpected answer ${f.type} to ${r.frame.type}`));
      return;
    }
    switch (r.frame.type) {
      case 'publish':
      case 'send':
        this.ownAck(f);
        this.resolve(r, f, undefined);
        return;
      case 'leave':
        this.left(r, f);
        return;
      case 'ping':
        this.resolve(r, f, undefined);
        if (r.id === cn.barrier) this.afterResume(cn);
        return;
    }
    this.resolve(r, f, undefined);
  }

  /** left ends a leave: the room is no longer joined. */
  private left(r: Request, f: ServerFrame): void {
    const rm = this.rooms.get(r.frame.room ?? '');
    if (rm) {
      rm.joined = false;
      rm.unposition();
      this.flushHeld(rm);
    }
    this.resolve(r, f, undefined);
  }

  /** ownAck records the position of the client's own publish. */
  private ownAck(f: ServerFrame): void {
    if (this.opts.echo) return;
    const rm = this.rooms.get(f.room ?? '');
    if (!rm || !rm.joined) return;
    const p = { epoch: f.epoch ?? '', offset: f.offset ?? 0 };
    // A resumed message held for this ack is the publish itself.
    const i = rm.held.findIndex((d) => d.kind === 'message' && d.message.epoch === p.epoch && d.message.offset === p.offset);
    if (i >= 0) {
      rm.held.splice(i, 1);
      return;
    }
    if (rm.seen(p)) return;
    rm.addOwn(p);
    if (rm.hasPos && p.epoch === rm.pos.epoch) rm.forcePos(rm.pos);
  }

  /**
   * afterResume rejoins the rooms that the resume of cn did not join: the
   * server answered those with error frames without id, which name no room
   * the client could rely on, so it asks again with a join of its own.
   */
  private afterResume(cn: Conn): void {
    for (const name of [...cn.resumed].sort()) {
      const rm = this.rooms.get(name);
      if (!rm || !rm.joined || rm.resumedOn === cn) continue;
      this.log.warn(`switchboard: room ${name} not resumed, joining again`);
      const frame: ClientFrame = { type: 'join', room: name };
      if (rm.hasPos && rm.pos.epoch) frame.since = rm.pos;
      const r = this.newRequest(frame);
      r.rejoin = true;
      this.add(r);
    }
  }

  /** rejoinRefused: a refusal that may pass ends the connection so that the next one tries again; any other drops the room and says so. */
  private rejoinRefused(cn: Conn, name: string, err: ServerError): void {
    if (retryable(err) || err.code === 'internal') {
      cn.fail(err);
      return;
    }
    const rm = this.rooms.get(name);
    if (!rm) return;
    this.log.warn(`switchboard: room ${name} lost: ${err.message}`);
    this.flushHeld(rm);
    rm.joined = false;
    this.deliver({ kind: 'left', left: { room: name, error: err } });
    rm.unposition();
    this.forget(rm);
  }

  /** leaveQuietly leaves a room the server joined without the client asking. */
  private leaveQuietly(name: string): void {
    if (name === this.inbox) return;
    this.add(this.newRequest({ type: 'leave', room: name }));
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
        return await this.roundTrip(frame, signal);
      } catch (err) {
        if (!retryable(err)) throw err;
        this.log.debug(`switchboard: ${frame.type} refused (${(err as Error).message}), retrying`);
        await this.pause(this.backoff.delay(attempt), signal);
      }
    }
  }

  /** roundTrip sends frame once (now, or on the next connection) and waits for its answer or the signal. */
  private roundTrip(frame: ClientFrame, signal: AbortSignalLike | undefined): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(this.stopError);
      if (signal?.aborted) return reject(abortReason(signal));
      const r = this.newRequest(frame);
      let onAbort: (() => void) | undefined;
      r.settle = (f, err) => {
        if (onAbort) signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(f!);
      };
      if (signal) {
        onAbort = () => {
          if (this.pending.get(r.id) !== r || r.abandoned) return;
          this.abandon(r);
          reject(abortReason(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.add(r);
    });
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

  private newRequest(frame: ClientFrame): Request {
    return { id: 0, frame: { ...frame }, conn: null, everSent: false, abandoned: false, holds: null, counted: false, rejoin: false };
  }

  /** add gives r an id, makes it pending and writes it if connected. */
  private add(r: Request): void {
    r.id = ++this.nextID;
    r.frame.id = r.id;
    this.pending.set(r.id, r);
    if (r.settle && r.frame.type === 'join') {
      const rm = this.roomFor(r.frame.room!);
      rm.joins++;
      r.counted = true;
      if (r.frame.since && !rm.joined && !rm.hasPos) {
        rm.pos = r.frame.since;
        rm.hasPos = true;
      }
    } else if (r.settle && r.frame.type === 'leave') {
      const rm = this.rooms.get(r.frame.room!);
      if (rm) {
        rm.leaves++;
        r.counted = true;
      }
    }
    if (this.active) this.write(this.active, r);
  }

  /** write sends r's frame on cn; a join resumes from what the client already received of the room. */
  private write(cn: Conn, r: Request): void {
    r.conn = cn;
    let f = r.frame;
    if (f.type === 'join' && f.since) {
      const rm = this.rooms.get(f.room!);
      if (rm?.hasPos && rm.pos.epoch) f = { ...f, since: rm.pos };
    }
    cn.send(JSON.stringify(f));
  }

  /**
   * detach forgets cn after it ended: what was written on it and not
   * answered is written again on the next connection, except the client's
   * own requests and abandoned ones.
   */
  private detach(cn: Conn): void {
    if (this.active === cn) this.active = null;
    for (const r of [...this.pending.values()]) {
      if (r.conn !== cn) continue;
      r.conn = null;
      if (!r.settle || r.abandoned) {
        this.pending.delete(r.id);
        this.release(r);
      } else if (r.frame.type === 'publish' || r.frame.type === 'send') {
        r.everSent = true;
      }
    }
  }

  /** resolve ends r with an answer or an error. */
  private resolve(r: Request, f: ServerFrame | undefined, err: Error | undefined): void {
    this.pending.delete(r.id);
    this.uncount(r);
    this.release(r);
    if (r.settle && !r.abandoned) r.settle(f, err);
  }

  /**
   * abandon gives up r because its caller's signal aborted. A publish or
   * join that was written may still be answered: it stays pending until
   * then (or until the connection ends), so that its answer is not lost for
   * the positions, but it is not written again.
   */
  private abandon(r: Request): void {
    this.release(r);
    this.uncount(r);
    const publishes = r.frame.type === 'publish' || r.frame.type === 'send';
    if (r.conn && (publishes || r.frame.type === 'join')) {
      r.abandoned = true;
      return;
    }
    this.pending.delete(r.id);
  }

  private uncount(r: Request): void {
    if (!r.counted) return;
    r.counted = false;
    const rm = this.rooms.get(r.frame.room ?? '');
    if (!rm) return;
    if (r.frame.type === 'join') rm.joins--;
    else rm.leaves--;
    this.forget(rm);
  }

  // Rooms and deliveries.

  private roomFor(name: string): Room {
    let rm = this.rooms.get(name);
    if (!rm) {
      rm = new Room(name);
      this.rooms.set(name, rm);
    }
    return rm;
  }

  private forget(rm: Room): void {
    if (rm.idle()) this.rooms.delete(rm.name);
  }

  /** recountHolds counts, at a welcome, the publishes written on an ended connection and not answered yet. */
  private recountHolds(): void {
    if (this.opts.echo) return; // own messages are delivered anyway
    for (const rm of this.rooms.values()) rm.holds = 0;
    for (const r of this.pending.values()) {
      r.holds = null;
      if ((r.frame.type === 'publish' || r.frame.type === 'send') && r.everSent && !r.abandoned) {
        const name = r.frame.type === 'send' ? inbox(r.frame.to!) : r.frame.room!;
        const rm = this.rooms.get(name);
        if (rm?.joined) {
          rm.holds++;
          r.holds = rm;
        }
      }
    }
    for (const rm of [...this.rooms.values()]) {
      if (rm.holds === 0 && rm.held.length > 0) this.flushHeld(rm);
    }
  }

  /** release ends r's hold on its room's resumed messages. */
  private release(r: Request): void {
    const rm = r.holds;
    if (!rm) return;
    r.holds = null;
    rm.holds--;
    if (rm.holds === 0) this.flushHeld(rm);
  }

  private flushHeld(rm: Room): void {
    const held = rm.held;
    rm.held = [];
    for (const d of held) this.deliver(d);
    this.forget(rm);
  }

  /** push delivers d behind whatever rm holds. */
  private push(rm: Room, d: Delivery): void {
    if (rm.held.length > 0) rm.held.push(d);
    else this.deliver(d);
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

function messageFrom(f: ServerFrame): Message {
  const m: { -readonly [K in keyof Message]: Message[K] } = {
    room: f.room ?? '',
    epoch: f.epoch ?? '',
    offset: f.offset ?? 0,
    data: f.data ?? null,
  };
  if (f.from !== undefined) m.from = f.from;
  if (f.ts !== undefined) m.ts = f.ts;
  return m;
}

function abortReason(signal: AbortSignalLike): unknown {
  return signal.reason ?? new Error('switchboard: aborted');
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

import type { Conn } from './conn.js';
import { ClosedError, ServerError, retryable } from './errors.js';
import { inbox } from './names.js';
import { Room, type Delivery } from './room.js';
import type { AbortSignalLike, ClientFrame, Logger, Message, Position, ServerFrame } from './types.js';

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

/** A connection ended with another user than the first session's. */
export class UserChangedError extends ClosedError {
  constructor(user: string, was: string) {
    super(`switchboard: the server welcomed another user (${JSON.stringify(user)}) than before (${JSON.stringify(was)})`);
    this.name = 'UserChangedError';
  }
}

const answers: Record<string, string> = {
  publish: 'ack', send: 'ack', refresh: 'ack', leave: 'left', presence: 'presence', history: 'history', ping: 'pong',
};

/** What a session needs of its client. @internal */
export interface SessionHooks {
  /** Own publishes are delivered back (hello.echo). */
  readonly echo: boolean;
  readonly log: Logger;
  /** deliver hands a message, reset or left to the client's listeners, in order. */
  deliver(d: Delivery): void;
  /** welcomed is called once cn is the active connection, its resume and pending requests written. */
  welcomed(cn: Conn): void;
}

/**
 * The protocol state of a client across its connections: the joined rooms
 * and their positions, the requests waiting for answers, and what keeps
 * delivery exactly-once across reconnects (docs/protocol.md, "Delivery
 * guarantees"). It handles the server's frames and writes requests on the
 * active connection; the client owns the connections. @internal
 */
export class Session {
  /** The welcomed connection requests are written on. */
  active: Conn | null = null;
  userID = '';
  sessionID = '';
  instanceID = '';
  private nextID = 0;
  private readonly pending = new Map<number, Request>();
  private readonly rooms = new Map<string, Room>();

  constructor(private readonly hooks: SessionHooks) {}

  /** The inbox room of the welcomed user; empty before the first welcome. */
  get inbox(): string {
    return this.userID ? inbox(this.userID) : '';
  }

  /** The joined rooms, the inbox included, sorted. */
  joined(): string[] {
    return [...this.rooms.values()].filter((r) => r.joined).map((r) => r.name).sort();
  }

  /** position returns where the session is in room, or undefined unless joined. */
  position(room: string): Position | undefined {
    const rm = this.rooms.get(room);
    return rm?.joined && rm.hasPos ? rm.pos : undefined;
  }

  /** hello completes the hello frame f for cn: it resumes every joined room and the inbox from the last position received, and names the last session. */
  hello(cn: Conn, f: ClientFrame): string {
    if (this.sessionID) f.session = this.sessionID;
    cn.resumed = new Set();
    for (const rm of this.rooms.values()) {
      if (!rm.joined) continue;
      cn.resumed.add(rm.name);
      if (rm.hasPos && rm.pos.epoch) (f.resume ??= {})[rm.name] = rm.pos;
    }
    return JSON.stringify(f);
  }

  /** failAll ends every pending request with err, for a client that stopped. */
  failAll(err: Error): void {
    for (const r of [...this.pending.values()]) this.resolve(r, undefined, err);
  }

  /** handle applies one frame of the server, received on cn. */
  handle(cn: Conn, f: ServerFrame): void {
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
        this.hooks.log.info(`switchboard: server ${f.server ?? ''} asks to reconnect after ${cn.reconnectAfter} ms`);
        return;
      case 'left':
        if (f.id === undefined) {
          this.removedFrom(f.room ?? '');
          return;
        }
    }
    const r = this.answered(f);
    if (!r) {
      if (f.type === 'error') this.hooks.log.warn(`switchboard: server error: ${f.code ?? ''}: ${f.message ?? ''}`);
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
    this.hooks.welcomed(cn);
  }

  private onMessage(f: ServerFrame): void {
    const rm = this.rooms.get(f.room ?? '');
    if (!rm) return; // left, or never joined
    const p = { epoch: f.epoch ?? '', offset: f.offset ?? 0 };
    if (rm.seen(p)) {
      this.hooks.log.debug(`switchboard: duplicate dropped: ${rm.name} ${p.epoch}:${p.offset}`);
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
    if (this.hooks.echo) return;
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
      this.hooks.log.warn(`switchboard: room ${name} not resumed, joining again`);
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
    this.hooks.log.warn(`switchboard: room ${name} lost: ${err.message}`);
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

  /** roundTrip sends frame once (now, or on the next connection) and waits for its answer or the signal. */
  roundTrip(frame: ClientFrame, signal: AbortSignalLike | undefined): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
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
  detach(cn: Conn): void {
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
    if (this.hooks.echo) return; // own messages are delivered anyway
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
    this.hooks.deliver(d);
  }
}

/** messageFrom converts a message frame. @internal */
export function messageFrom(f: ServerFrame): Message {
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

/** abortReason is why a signal aborted. @internal */
export function abortReason(signal: AbortSignalLike): unknown {
  return signal.reason ?? new Error('switchboard: aborted');
}

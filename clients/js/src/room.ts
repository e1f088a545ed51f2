import type { Left, Message, Position, Reset } from './types.js';

/** Something a room delivers, in stream order. @internal */
export type Delivery =
  | { readonly kind: 'message'; readonly message: Message }
  | { readonly kind: 'reset'; readonly reset: Reset }
  | { readonly kind: 'left'; readonly left: Left };

const key = (p: Position) => `${p.offset} ${p.epoch}`;

/**
 * What the client knows of one room: whether it is joined, the position of
 * the last message received, and what keeps exactly-once delivery across
 * reconnects. @internal
 */
export class Room {
  readonly name: string;
  /** Set from the server's joined until its left. */
  joined = false;
  /** Pending join and leave calls. */
  joins = 0;
  leaves = 0;
  /** The position of the last message received, or where the stream started: what a resume starts from. */
  pos: Position = { epoch: '', offset: 0 };
  hasPos = false;
  /**
   * Positions of the client's own acked publishes that lie ahead of pos: the
   * server skips them on the live path but resends them on a resume, where
   * they must not be delivered.
   */
  ownAcks = new Set<string>();
  /**
   * Publishes to this room written on a connection that ended before their
   * ack. Until they are answered, resumed messages of the client's own user
   * wait in held (with everything after them): one of them may be the
   * client's own publish, which the ack will name.
   */
  holds = 0;
  held: Delivery[] = [];
  /** The connection whose resume joined the room. */
  resumedOn: object | null = null;

  constructor(name: string) {
    this.name = name;
  }

  /** setPos moves the room to p, never backwards within an epoch. */
  setPos(p: Position): void {
    if (this.hasPos && p.epoch === this.pos.epoch && p.offset < this.pos.offset) return;
    this.forcePos(p);
  }

  /** forcePos moves the room to p, then past the client's own messages that follow it. */
  forcePos(p: Position): void {
    const epochChanged = this.hasPos && p.epoch !== this.pos.epoch;
    this.pos = { epoch: p.epoch, offset: p.offset };
    this.hasPos = true;
    for (const k of this.ownAcks) {
      const sp = k.indexOf(' ');
      const sameEpoch = k.slice(sp + 1) === p.epoch;
      if ((epochChanged && !sameEpoch) || (sameEpoch && Number(k.slice(0, sp)) <= p.offset)) this.ownAcks.delete(k);
    }
    for (;;) {
      const next = { epoch: this.pos.epoch, offset: this.pos.offset + 1 };
      if (!this.ownAcks.delete(key(next))) return;
      this.pos = next;
    }
  }

  /** seen reports whether a message at p was delivered already (at or before pos in the same epoch). */
  seen(p: Position): boolean {
    return this.hasPos && p.epoch === this.pos.epoch && p.offset <= this.pos.offset;
  }

  isOwn(p: Position): boolean {
    return this.ownAcks.has(key(p));
  }

  addOwn(p: Position): void {
    this.ownAcks.add(key(p));
  }

  /** unposition forgets where the stream was, for a room that is left. */
  unposition(): void {
    this.hasPos = false;
    this.pos = { epoch: '', offset: 0 };
    this.ownAcks.clear();
  }

  /** idle reports whether nothing refers to the room any more. */
  idle(): boolean {
    return !this.joined && this.joins === 0 && this.leaves === 0 && this.holds === 0 && this.held.length === 0;
  }
}

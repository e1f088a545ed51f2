// Public types of the client and the wire frames it exchanges with the
// server (docs/protocol.md in the Switchboard repository).

/** A place in a room's stream: an epoch and an offset within it. */
export interface Position {
  readonly epoch: string;
  readonly offset: number;
}

/**
 * The connection state of a {@link Client}. A client starts `disconnected`,
 * moves to `connecting` when {@link Client.connect} is called, then between
 * `connected`, `disconnected` (waiting before the next attempt) and
 * `connecting`, until it is `closed` for good.
 */
export type State = 'disconnected' | 'connecting' | 'connected' | 'closed';

/** A message published to a joined room (or to the client's inbox). */
export interface Message {
  readonly room: string;
  readonly epoch: string;
  readonly offset: number;
  /** The publishing user; undefined for anonymous HTTP API publishes. */
  readonly from?: string;
  /** The message's JSON value. */
  readonly data: unknown;
  /** The broker-side publish time in Unix milliseconds, if the server sent it. */
  readonly ts?: number;
}

/**
 * Says that a room's stream was not continuous for this client: messages
 * before the position may be missing (the server sent `reset`, or a resume
 * after a reconnect answered `recovered: false`). The stream continues after
 * the position, often in a new epoch; reload the room's state from your own
 * source.
 */
export interface Reset {
  readonly room: string;
  readonly epoch: string;
  readonly offset: number;
}

/**
 * Says that the client is no longer joined to a room although it did not
 * leave it: the server refused to join it again after a reconnect, or took
 * the session out of it (a refreshed token no longer allows it).
 */
export interface Left {
  readonly room: string;
  /** Why, when the server said so. */
  readonly error?: Error;
}

/** What a join answered. */
export interface Joined extends Position {
  readonly room: string;
  /**
   * With `since`: whether every message after it was delivered. Otherwise
   * the stream starts at the position, in the room's current epoch.
   */
  readonly recovered: boolean;
}

/** Where a publish or send was stored. */
export interface Ack extends Position {
  /** The room; for a direct message, the recipient's inbox `@user`. */
  readonly room: string;
}

/** Who is in a room, across all instances. */
export interface Presence {
  readonly room: string;
  /** The number of distinct users. */
  readonly total: number;
  /** The users with their session counts, sorted by user. */
  readonly users: ReadonlyArray<{ readonly user: string; readonly sessions: number }>;
}

/** A part of a room's history. */
export interface History extends Position {
  readonly room: string;
  /** Oldest first. */
  readonly messages: readonly Message[];
}

/** Something that ends a wait, such as an AbortController's signal. */
export interface AbortSignalLike {
  readonly aborted: boolean;
  readonly reason?: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

/** Options of a single request. */
export interface RequestOptions {
  /**
   * Ends the wait for the answer. A request waits for the connection while
   * the client reconnects, and is retried after `unavailable` and
   * `rate_limited`, until the answer comes or this signal aborts. A publish
   * that was already written may still be stored.
   */
  readonly signal?: AbortSignalLike;
}

/** The events of a {@link Client} and their listeners' arguments. */
export interface ClientEvents {
  /** A message of a joined room or of the inbox, in order, once. */
  message: [message: Message];
  /** A room's stream was not continuous; see {@link Reset}. */
  reset: [reset: Reset];
  /** A room is no longer joined; see {@link Left}. */
  left: [left: Left];
  /**
   * The state changed. `error` says why the connection ended (for
   * `disconnected` and `closed`); it is undefined after {@link Client.close}.
   */
  state: [state: State, error?: Error];
}

/** Where a client logs; console fits. */
export interface Logger {
  debug(message: string, ...details: unknown[]): void;
  info(message: string, ...details: unknown[]): void;
  warn(message: string, ...details: unknown[]): void;
}

/**
 * An event handler property. Declared as a method so that the handler types
 * of other WebSocket implementations (ws's, with its own event classes) fit.
 */
type Handler<E> = { bivariant(event: E): void }['bivariant'] | null;

/**
 * What the client needs of a WebSocket: the standard browser API, which
 * npm's `ws` package provides too.
 */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: Handler<unknown>;
  onmessage: Handler<{ data: unknown }>;
  onclose: Handler<{ code: number; reason: string }>;
  onerror: Handler<unknown>;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket class: `WebSocket` in browsers, `ws`'s in Node. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

// Wire frames (docs/protocol.md). Only the fields the client reads or
// writes are declared.

/** @internal */
export interface ClientFrame {
  type: string;
  id?: number;
  user?: string;
  token?: string;
  session?: string;
  resume?: Record<string, Position>;
  batch?: boolean;
  echo?: boolean;
  room?: string;
  to?: string;
  since?: Position;
  limit?: number;
  data?: unknown;
  key?: string;
}

/** @internal */
export interface ServerFrame {
  type: string;
  id?: unknown;
  session?: string;
  user?: string;
  instance?: string;
  heartbeat?: number;
  inbox?: { room: string; epoch: string; offset: number };
  room?: string;
  epoch?: string;
  offset?: number;
  recovered?: boolean;
  from?: string;
  data?: unknown;
  ts?: number;
  total?: number;
  users?: Array<{ user: string; sessions: number }>;
  messages?: ServerFrame[];
  code?: string;
  message?: string;
  reconnectAfter?: number;
  server?: string;
}

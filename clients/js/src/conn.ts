import { CloseError, ConnectionError } from './errors.js';
import type { ServerFrame, WebSocketConstructor, WebSocketLike } from './types.js';

const OPEN = 1;
const CLOSED = 3;

/** How long close waits for the server to answer the close frame. */
const closeGrace = 1000;

const pingFrame = '{"type":"ping"}';

/** What a connection tells its client. @internal */
export interface ConnHandler {
  /** The socket is open: return the hello frame to send. */
  open(cn: Conn): string;
  /** Frames arrived, in order. */
  frames(cn: Conn, frames: ServerFrame[]): void;
}

/**
 * One WebSocket connection: it sends hello when the socket opens, parses the
 * server's frames (several per WebSocket frame in batch mode), watches for
 * silence once welcomed, and ends once, with the first reason given. @internal
 */
export class Conn {
  readonly url: string;
  /** Set once the server's welcome was handled. */
  welcomed = false;
  /** The rooms hello resumed. */
  resumed = new Set<string>();
  /** The id of the ping whose pong ends the resume. */
  barrier = 0;
  /** Set when the server sent server:reconnect: how long to wait, in ms. */
  reconnectAfter: number | undefined;
  /** The heartbeat interval the server announced, in ms. */
  heartbeat = 0;
  /** Resolves with why the connection ended. */
  readonly done: Promise<Error>;

  private readonly ws: WebSocketLike;
  private ended = false;
  private finish!: (err: Error) => void;
  private lastRead = Date.now();
  private watchdog: ReturnType<typeof setTimeout> | undefined;

  constructor(WS: WebSocketConstructor, url: string, handler: ConnHandler) {
    this.url = url;
    this.done = new Promise((resolve) => {
      this.finish = resolve;
    });
    this.ws = new WS(url);
    this.ws.onopen = () => {
      this.touch();
      this.send(handler.open(this));
    };
    this.ws.onmessage = (ev) => {
      if (this.ended) return;
      this.touch();
      const frames = parse(ev.data);
      if (frames instanceof Error) {
        this.fail(frames);
        return;
      }
      handler.frames(this, frames);
    };
    this.ws.onclose = (ev) => this.fail(new CloseError(ev.code, ev.reason));
    this.ws.onerror = () => {
      // A close event follows with the code; an error event says no more.
    };
  }

  /** send writes a frame if the socket is open; frames of an ended connection are dropped (requests are written again on the next one). */
  send(frame: string): void {
    if (this.ended || this.ws.readyState !== OPEN) return;
    try {
      this.ws.send(frame);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /**
   * watch drops the connection when nothing arrives for timeout ms. After
   * half of it the client sends a ping frame, which the server answers; the
   * connection is dropped only when that ping went unanswered for half the
   * timeout as well, so a timer that a background tab ran late does not
   * condemn a healthy connection.
   */
  watch(timeout: number): void {
    const half = Math.max(timeout / 2, 1);
    let pingedAt = 0;
    const tick = () => {
      if (this.ended) return;
      const now = Date.now();
      const silent = now - this.lastRead;
      if (silent < half) {
        this.watchdog = setTimeout(tick, half - silent);
        return;
      }
      // Something arrived since the last ping (or there was none): ping
      // again. At <=, not <: a pong on loopback can come back within the
      // millisecond the ping went out, and when the ping was sent nothing
      // had arrived for half the timeout, so a read stamped with the same
      // millisecond came after it.
      if (pingedAt <= this.lastRead) {
        pingedAt = now;
        this.send(pingFrame);
        this.watchdog = setTimeout(tick, half);
        return;
      }
      if (silent >= timeout && now - pingedAt >= half) {
        this.fail(new ConnectionError(`connection dead: nothing received for ${silent} ms`));
        return;
      }
      this.watchdog = setTimeout(tick, Math.max(half - (now - pingedAt), timeout - silent, 1));
    };
    this.watchdog = setTimeout(tick, half);
  }

  /** fail ends the connection with err, the first reason given, and drops the socket. */
  fail(err: Error): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.watchdog);
    this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
    drop(this.ws);
    this.finish(err);
  }

  /** shutdown ends the connection with close code 1000 and waits a moment for the server's answer. */
  async shutdown(): Promise<void> {
    if (this.ended) return;
    this.ws.onclose = () => this.fail(new CloseError(1000, 'client closed'));
    try {
      this.ws.close(1000, 'client closed');
    } catch {
      // Not open yet: drop it below.
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.done, new Promise((r) => (timer = setTimeout(r, closeGrace)))]);
    clearTimeout(timer);
    this.fail(new CloseError(1000, 'client closed'));
  }

  private touch(): void {
    this.lastRead = Date.now();
  }
}

/** parse splits a server WebSocket frame into its JSON objects. */
function parse(data: unknown): ServerFrame[] | Error {
  if (typeof data !== 'string') return new ConnectionError('bad frame from the server: not a text frame');
  const frames: ServerFrame[] = [];
  for (const line of data.split('\n')) {
    if (line === '') continue;
    let f: unknown;
    try {
      f = JSON.parse(line);
    } catch (err) {
      return new ConnectionError(`bad frame from the server: ${(err as Error).message}`);
    }
    if (typeof f !== 'object' || f === null || typeof (f as ServerFrame).type !== 'string') {
      return new ConnectionError('bad frame from the server: not an object with a type');
    }
    frames.push(f as ServerFrame);
  }
  return frames;
}

/**
 * drop lets go of a socket at once. A browser WebSocket can only start the
 * closing handshake; the ws package's terminate also destroys the TCP
 * connection, so that a dead one does not linger.
 */
function drop(ws: WebSocketLike): void {
  try {
    const t = (ws as { terminate?: () => void }).terminate;
    if (typeof t === 'function') t.call(ws);
    else if (ws.readyState !== CLOSED) ws.close();
  } catch {
    // Already closing.
  }
}

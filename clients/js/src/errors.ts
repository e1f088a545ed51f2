// Errors of the client. Branch on their classes and fields, never on their
// messages.

/** WebSocket close codes of the protocol (docs/protocol.md, "Errors and close codes"). */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  /** No close frame came: the connection was lost (set by the WebSocket implementation). */
  Abnormal: 1006,
  Policy: 1008,
  TooLarge: 1009,
  TryAgainLater: 1013,
  Restarting: 4001,
  Unauthorized: 4003,
  Disconnected: 4004,
  SlowConsumer: 4008,
  RateLimited: 4029,
} as const;

/**
 * The client has stopped: after {@link Client.close}, or (as the subclass
 * {@link CloseError}) after the server closed with a code that means stop.
 * Pending and later requests fail with it.
 */
export class ClosedError extends Error {
  constructor(message = 'switchboard: client closed') {
    super(message);
    this.name = 'ClosedError';
  }
}

/**
 * Why the server (or the network) ended a connection: the WebSocket close
 * code and reason. Code 1006 means the connection was lost without a close
 * frame. The client stops with a CloseError for the codes it does not
 * reconnect after (1000, 1008, 1009, 4004, and 4003 where a fresh token
 * cannot help); the state events carry one for every other close.
 */
export class CloseError extends ClosedError {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string) {
    super(describeClose(code, reason));
    this.name = 'CloseError';
    this.code = code;
    this.reason = reason;
  }
}

function describeClose(code: number, reason: string): string {
  const what = code === CloseCode.Abnormal ? 'switchboard: connection lost (1006, no close frame)' : `switchboard: closed by the server with code ${code}`;
  return reason ? `${what}: ${reason}` : what;
}

/** A refusal from the server: an `error` frame's code and message. */
export class ServerError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = 'ServerError';
    this.code = code;
  }
}

/** The token callback failed (or returned no token). */
export class TokenError extends Error {
  constructor(cause: unknown) {
    super(`switchboard: token: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'TokenError';
  }
}

/** A connection was given up by the client itself (no welcome in time, or silent too long). */
export class ConnectionError extends Error {
  constructor(message: string) {
    super(`switchboard: ${message}`);
    this.name = 'ConnectionError';
  }
}

/** retryable reports whether a refused request may simply be sent again: the server did nothing with it. */
export function retryable(err: unknown): boolean {
  return err instanceof ServerError && (err.code === 'unavailable' || err.code === 'rate_limited');
}

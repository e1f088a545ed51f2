// Switchboard's TypeScript client. See README.md.
export { Client, minHeartbeatTimeout, type ClientOptions } from './client.js';
export { Backoff, type BackoffOptions } from './backoff.js';
export { ClosedError, CloseError, CloseCode, ConnectionError, ServerError, TokenError } from './errors.js';
export type {
  AbortSignalLike, Ack, ClientEvents, History, Joined, Left, Logger, Message, Position, Presence,
  RequestOptions, Reset, State, WebSocketConstructor, WebSocketLike,
} from './types.js';

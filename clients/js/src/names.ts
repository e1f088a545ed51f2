import { ServerError } from './errors.js';

/** The longest room name, in bytes. */
const maxRoomLen = 128;
/** The longest user id, in bytes, so that the inbox "@" + id is at most 128 bytes too. */
const maxUserLen = 127;

/** inbox returns the inbox room of user. @internal */
export function inbox(user: string): string {
  return '@' + user;
}

/**
 * checkUser returns a bad_request error unless id is a legal user id: 1-127
 * bytes of printable ASCII other than space, '{' and '}'. @internal
 */
export function checkUser(id: string): ServerError | undefined {
  if (validUser(id)) return undefined;
  return new ServerError('bad_request', `${JSON.stringify(id)} is not a valid user id: use 1-${maxUserLen} printable ASCII characters without spaces or braces`);
}

function validUser(id: string): boolean {
  if (typeof id !== 'string' || id.length === 0 || id.length > maxUserLen) return false;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    if (c <= 0x20 || c > 0x7e || c === 0x7b || c === 0x7d) return false;
  }
  return true;
}

/** checkRoom returns a bad_room error unless name is a legal room name or the inbox of a legal user id. @internal */
export function checkRoom(name: string): ServerError | undefined {
  if (typeof name === 'string' && name.startsWith('@')) {
    if (validUser(name.slice(1))) return undefined;
    return new ServerError('bad_room', `${JSON.stringify(name)} is not a valid inbox: the user id must be 1-${maxUserLen} printable characters without spaces or braces`);
  }
  if (typeof name === 'string' && name.length > 0 && name.length <= maxRoomLen && /^[A-Za-z0-9_.:-]+$/.test(name)) return undefined;
  return new ServerError('bad_room', `${JSON.stringify(name)} is not a valid room name: use 1-${maxRoomLen} characters of A-Z a-z 0-9 _ . : -`);
}

/**
 * encodeData returns a JSON copy of data, taken now, so that a publish
 * retried later sends what was published; undefined becomes null. It throws
 * a TypeError for values JSON cannot hold. @internal
 */
export function encodeData(data: unknown): unknown {
  let s: string | undefined;
  try {
    s = JSON.stringify(data);
  } catch (err) {
    throw new TypeError(`switchboard: data is not JSON: ${(err as Error).message}`);
  }
  return s === undefined ? null : JSON.parse(s);
}

/** newKey returns a random idempotency key: 16 bytes, base64url, 22 characters. @internal */
export function newKey(): string {
  const b = new Uint8Array(16);
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.getRandomValues) c.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  let bin = '';
  for (const x of b) bin += String.fromCharCode(x);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

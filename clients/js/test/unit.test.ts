// Unit tests of the client against a fake server scripted frame by frame:
// close codes, back-off, heartbeat, batch frames, de-duplication, resume
// positions and retried requests.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Backoff, CloseError, ClosedError, ConnectionError, ServerError, TokenError, Client } from '../src/index.js';
import { FakeServer, closeClients, closeServers, newClient, waitFor } from './helpers.js';
import WebSocket from 'ws';

after(closeClients);
after(closeServers);

const fast = { min: 10, max: 40 };

describe('Backoff', () => {
  test('full jitter under a growing, capped ceiling', () => {
    const b = new Backoff({ min: 100, max: 1000, factor: 2 });
    assert.deepEqual([0, 1, 2, 3, 4, 10, 1e6].map((n) => b.ceiling(n)), [100, 200, 400, 800, 1000, 1000, 1000]);
    for (let n = 0; n < 8; n++) {
      for (let i = 0; i < 200; i++) {
        const d = b.delay(n);
        assert.ok(d >= 0 && d < b.ceiling(n), `delay(${n}) = ${d}`);
      }
    }
    const spread = new Set(Array.from({ length: 50 }, () => Math.floor(b.delay(5) / 100)));
    assert.ok(spread.size >= 5, 'delays spread over the whole range');
    assert.equal(new Backoff({ min: 100 }, () => 0.5).delay(1), 100);
  });
  test('defaults for missing or bad values', () => {
    const b = new Backoff({ min: -1, max: Number.NaN, factor: 0.5 });
    assert.deepEqual([b.min, b.max, b.factor], [200, 10_000, 2]);
  });
});

describe('options', () => {
  test('are checked at construction', () => {
    assert.throws(() => new Client({ url: [], user: 'u', WebSocket }), TypeError);
    assert.throws(() => new Client({ url: 'http//nope', user: 'u', WebSocket }), TypeError);
    assert.throws(() => new Client({ url: 'ftp://x/ws', user: 'u', WebSocket }), /scheme/);
    assert.throws(() => new Client({ url: 'ws://x/ws', WebSocket }), /token/);
    assert.throws(() => new Client({ url: 'ws://x/ws', user: 'bad name', WebSocket }), /user/);
    assert.throws(() => new Client({ url: 'ws://x/ws', user: 'u', WebSocket, handshakeTimeout: -1 }), /handshakeTimeout/);
    // http(s) URLs are taken for their WebSocket twins.
    assert.doesNotThrow(() => new Client({ url: 'https://example.com/ws', user: 'u', WebSocket }));
  });
  test('requests with bad names fail before anything is sent', async () => {
    const { c } = newClient({ url: 'ws://127.0.0.1:9/ws', user: 'u' });
    await assert.rejects(c.join('no spaces'), (e: unknown) => e instanceof ServerError && e.code === 'bad_room');
    await assert.rejects(c.send('a b', 1), (e: unknown) => e instanceof ServerError && e.code === 'bad_request');
    await assert.rejects(c.publish('r', 1n), TypeError);
  });
});

describe('connection', () => {
  test('hello, batch frames, welcome, and messages de-duplicated by offset', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'alice' });
    const connected = c.connect();
    const k = await srv.conn(0);
    const hello = await k.frame(0);
    assert.deepEqual(hello, { type: 'hello', user: 'alice', batch: true, echo: false });
    k.welcome('alice');
    await connected;
    assert.equal(c.state, 'connected');
    assert.equal(c.instance, 'i_fake');
    assert.equal(c.inbox, '@alice');
    const join = c.join('r');
    const jf = await k.find('join');
    k.send({ type: 'joined', id: jf.id, room: 'r', epoch: 'e1', offset: 3, recovered: false });
    assert.deepEqual(await join, { room: 'r', epoch: 'e1', offset: 3, recovered: false });
    const msg = (offset: number) => ({ type: 'message', room: 'r', epoch: 'e1', offset, from: 'bob', data: { n: offset }, ts: 1 });
    // Batched, with duplicates and an old offset; a message of a room not joined is dropped.
    k.send(msg(4), msg(4), msg(3), msg(5), { type: 'message', room: 'other', epoch: 'x', offset: 1, data: 0 });
    k.send(msg(5), msg(6));
    await waitFor('three messages', () => rec.messages.length >= 3);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(rec.messages.map((m) => m.offset), [4, 5, 6]);
    assert.deepEqual(rec.messages[0], { room: 'r', epoch: 'e1', offset: 4, from: 'bob', data: { n: 4 }, ts: 1 });
    assert.deepEqual(c.position('r'), { epoch: 'e1', offset: 6 });
    await srv.close();
  });

  test('an invalid user name is refused once, without retries (4003 in dev mode)', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'alice', backoff: fast });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.ws.close(4003, 'user id not allowed');
    await assert.rejects(connected, (e: unknown) => e instanceof CloseError && e.code === 4003 && e.reason === 'user id not allowed');
    assert.equal(c.state, 'closed');
    assert.ok(c.error instanceof CloseError);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(srv.conns.length, 1, 'no second attempt');
    await waitFor('the closed state', () => rec.states.includes('closed'));
    assert.deepEqual(rec.states, ['connecting', 'closed']);
    await assert.rejects(c.publish('r', 1), ClosedError);
    await srv.close();
  });

  for (const code of [1000, 1008, 1009, 4004]) {
    test(`close code ${code} stops the client and fails pending requests`, async () => {
      const srv = await FakeServer.start();
      const { c, rec } = newClient({ url: srv.url, user: 'u', backoff: fast });
      const connected = c.connect();
      const k = await srv.conn(0);
      await k.frame(0);
      k.welcome();
      await connected;
      const pending = c.presence('r');
      await k.find('presence');
      k.ws.close(code, 'bye');
      await assert.rejects(pending, (e: unknown) => e instanceof CloseError && e.code === code);
      await waitFor('closed', () => rec.states.at(-1) === 'closed');
      assert.equal((rec.errors.at(-1) as CloseError).code, code);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(srv.conns.length, 1);
      await srv.close();
    });
  }

  test('4004 reconnects when told to', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u', backoff: fast, reconnectOnDisconnect: true });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome();
    await connected;
    k.ws.close(4004, 'kicked');
    const k2 = await srv.conn(1);
    await k2.frame(0);
    k2.welcome();
    await waitFor('second connection', () => rec.connects() === 2);
    assert.deepEqual(rec.states, ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
    assert.equal((rec.errors[2] as CloseError).code, 4004);
    await srv.close();
  });

  for (const code of [1001, 1011, 1013, 4008]) {
    test(`close code ${code} reconnects with back-off and resumes`, async () => {
      const srv = await FakeServer.start();
      const { c, rec } = newClient({ url: srv.url, user: 'u', backoff: fast });
      const connected = c.connect();
      const k = await srv.conn(0);
      await k.frame(0);
      k.welcome('u', { session: 's_1', inbox: { room: '@u', epoch: 'ib', offset: 7 } });
      await connected;
      const join = c.join('r');
      const jf = await k.find('join');
      k.send({ type: 'joined', id: jf.id, room: 'r', epoch: 'e1', offset: 2, recovered: false });
      await join;
      k.send({ type: 'message', room: 'r', epoch: 'e1', offset: 3, data: 'x' });
      await waitFor('the message', () => rec.messages.length === 1);
      k.ws.close(code, '');
      const k2 = await srv.conn(1);
      const hello = await k2.frame(0);
      assert.deepEqual(hello, {
        type: 'hello', user: 'u', batch: true, echo: false, session: 's_1',
        resume: { '@u': { epoch: 'ib', offset: 7 }, r: { epoch: 'e1', offset: 3 } },
      });
      await waitFor('disconnected', () => rec.states.includes('disconnected'));
      assert.equal((rec.errors[rec.states.indexOf('disconnected')] as CloseError).code, code);
      await srv.close();
    });
  }

  test('an abrupt drop (1006) is reported as a lost connection and retried', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u', backoff: fast });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome();
    await connected;
    k.ws.terminate();
    await srv.conn(1);
    const i = rec.states.indexOf('disconnected');
    const err = rec.errors[i] as CloseError;
    assert.ok(err instanceof CloseError && err.code === 1006, `disconnected with ${String(err)}`);
    assert.match(err.message, /connection lost/);
    await srv.close();
  });

  test('server:reconnect: waits reconnectAfter, not the back-off', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u', backoff: { min: 5000, max: 5000 } });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome();
    await connected;
    const start = Date.now();
    k.send({ type: 'server:reconnect', reconnectAfter: 300, server: 'i_fake' });
    k.ws.close(4001, 'draining');
    await srv.conn(1);
    const took = Date.now() - start;
    assert.ok(took >= 290 && took < 2000, `reconnected after ${took} ms, want about 300`);
    assert.equal((rec.errors[2] as CloseError).code, 4001);
    await srv.close();
  });

  test('4029 backs off for at least half of the maximum', async () => {
    const srv = await FakeServer.start();
    const { c } = newClient({ url: srv.url, user: 'u', backoff: { min: 10, max: 600 } });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome();
    await connected;
    const start = Date.now();
    k.ws.close(4029, 'rate limited');
    await srv.conn(1);
    const took = Date.now() - start;
    assert.ok(took >= 290, `reconnected after ${took} ms, want at least 300`);
    await srv.close();
  });

  test('4003 after a welcome fetches a fresh token and reconnects; a refused fresh token stops', async () => {
    const srv = await FakeServer.start();
    let calls = 0;
    const { c, rec } = newClient({ url: srv.url, token: () => `t${++calls}`, backoff: fast });
    const connected = c.connect();
    const k = await srv.conn(0);
    assert.equal((await k.frame(0)).token, 't1');
    k.welcome();
    await connected;
    k.ws.close(4003, 'token expired');
    const k2 = await srv.conn(1);
    assert.equal((await k2.frame(0)).token, 't2');
    k2.ws.close(4003, 'invalid token');
    await waitFor('closed', () => c.state === 'closed');
    assert.equal((c.error as CloseError).code, 4003);
    assert.equal(calls, 2);
    assert.equal(rec.states.at(-1), 'closed');
    await srv.close();
  });

  test('a failing token callback fails connect with a TokenError', async () => {
    const srv = await FakeServer.start();
    const { c } = newClient({ url: srv.url, token: () => Promise.reject(new Error('auth down')) });
    await assert.rejects(c.connect(), (e: unknown) => e instanceof TokenError && /auth down/.test(e.message));
    assert.equal(srv.conns.length, 0);
    await srv.close();
  });

  test('no welcome within the handshake timeout: the attempt is given up and retried', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u', handshakeTimeout: 200, backoff: fast });
    void c.connect().catch(() => undefined);
    await srv.conn(1);
    assert.ok(rec.errors[rec.states.indexOf('disconnected')] instanceof ConnectionError);
    await srv.close();
  });

  test('a ping answered within the millisecond it was sent counts as answered', async () => {
    // On loopback the pong can arrive in the same Date.now() millisecond as
    // the ping went out; the client once took that for no answer and
    // dropped the healthy connection at its heartbeat timeout.
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u', heartbeatTimeout: 60, backoff: fast });
    const connected = c.connect();
    const k = await srv.conn(0);
    k.answerPings = true;
    await k.frame(0);
    k.welcome();
    await connected;
    await new Promise((r) => setTimeout(r, 2000)); // some 60 pings
    const pings = k.frames.filter((f) => f.type === 'ping').length;
    assert.deepEqual(rec.states, ['connecting', 'connected'], `after ${pings} pings answered at once`);
    await srv.close();
  });

  test('a silent connection is dropped after the heartbeat timeout; an idle one that answers pings is kept', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u', heartbeatTimeout: 600, backoff: fast });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome();
    await connected;
    // Answer pings for a while: the connection stays.
    const answer = setInterval(() => {
      for (const f of k.frames.splice(0)) if (f.type === 'ping') k.send({ type: 'pong' });
    }, 10);
    await new Promise((r) => setTimeout(r, 1500));
    clearInterval(answer);
    assert.deepEqual(rec.states, ['connecting', 'connected']);
    // Now go silent.
    const silentAt = Date.now();
    await waitFor('the dead connection to be dropped', () => rec.states.length >= 3);
    const took = Date.now() - silentAt;
    assert.ok(took < 2500, `dropped after ${took} ms, want about 600`);
    assert.ok(rec.errors[2] instanceof ConnectionError);
    await srv.conn(1);
    await srv.close();
  });
});

describe('requests', () => {
  test('a publish is written again with the same key after a reconnect; its held message is not delivered back', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u', backoff: fast });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome('u', { session: 's_1' });
    await connected;
    const join = c.join('r');
    const jf = await k.find('join');
    k.send({ type: 'joined', id: jf.id, room: 'r', epoch: 'e', offset: 0, recovered: false });
    await join;
    const pub = c.publish('r', { text: 'once' });
    const pf = await k.find('publish');
    assert.equal(typeof pf.key, 'string');
    assert.equal((pf.key as string).length, 22);
    k.ws.terminate(); // the ack is lost
    const k2 = await srv.conn(1);
    const hello = await k2.frame(0);
    assert.deepEqual(hello.resume, { '@u': { epoch: 'e', offset: 0 }, r: { epoch: 'e', offset: 0 } });
    k2.welcome('u', { session: 's_2' });
    // The resume replays the stored publish (from the same user) before the retried publish is answered.
    k2.send({ type: 'joined', room: '@u', epoch: 'e', offset: 0, recovered: true },
      { type: 'message', room: 'r', epoch: 'e', offset: 1, from: 'u', data: { text: 'once' } },
      { type: 'joined', room: 'r', epoch: 'e', offset: 1, recovered: true });
    const ping = await k2.find('ping');
    const retry = await k2.find('publish');
    assert.equal(retry.key, pf.key, 'the retry keeps its key');
    assert.deepEqual(retry.data, { text: 'once' });
    k2.send({ type: 'pong', id: ping.id }, { type: 'ack', id: retry.id, room: 'r', epoch: 'e', offset: 1 },
      { type: 'message', room: 'r', epoch: 'e', offset: 2, from: 'v', data: 'next' });
    assert.deepEqual(await pub, { room: 'r', epoch: 'e', offset: 1 });
    await waitFor('the next message', () => rec.messages.length >= 1);
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(rec.messages.map((m) => m.offset), [2], 'the own message is not delivered back');
    await srv.close();
  });

  test('unavailable is retried with the same key; other refusals reject', async () => {
    const srv = await FakeServer.start();
    const { c } = newClient({ url: srv.url, user: 'u', backoff: fast });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome();
    await connected;
    const pub = c.publish('r', 1);
    await waitFor('publish', () => k.frames.some((f) => f.type === 'publish'));
    const first = k.frames.find((f) => f.type === 'publish')!;
    k.send({ type: 'error', id: first.id, code: 'unavailable', message: 'broker down' });
    await waitFor('the retry', () => k.frames.filter((f) => f.type === 'publish').length === 2);
    const second = k.frames.filter((f) => f.type === 'publish')[1]!;
    assert.equal(second.key, first.key);
    assert.notEqual(second.id, first.id);
    k.send({ type: 'ack', id: second.id, room: 'r', epoch: 'e', offset: 9 });
    assert.equal((await pub).offset, 9);

    const denied = c.publish('r', 2);
    await waitFor('publish 3', () => k.frames.filter((f) => f.type === 'publish').length === 3);
    const third = k.frames.filter((f) => f.type === 'publish')[2]!;
    k.send({ type: 'error', id: third.id, code: 'not_joined', message: 'join first' });
    await assert.rejects(denied, (e: unknown) => e instanceof ServerError && e.code === 'not_joined');
    await srv.close();
  });

  test('requests wait for the connection; an aborted one is not sent', async () => {
    const srv = await FakeServer.start();
    const { c } = newClient({ url: srv.url, user: 'u', backoff: fast });
    void c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    const ac = new AbortController();
    const aborted = c.presence('gone', { signal: ac.signal });
    const waiting = c.presence('r');
    ac.abort(new Error('not any more'));
    await assert.rejects(aborted, /not any more/);
    k.welcome();
    const pf = await k.find('presence');
    assert.equal(pf.room, 'r');
    k.send({ type: 'presence', id: pf.id, room: 'r', total: 1, users: [{ user: 'u', sessions: 1 }] });
    assert.deepEqual(await waiting, { room: 'r', total: 1, users: [{ user: 'u', sessions: 1 }] });
    assert.equal(k.frames.filter((f) => f.type === 'presence').length, 1);
    await srv.close();
  });

  test('a resume that is not recovered is a reset; a refused rejoin is left', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u', backoff: fast });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome();
    await connected;
    for (const room of ['a', 'b']) {
      const j = c.join(room);
      await waitFor(`join ${room}`, () => k.frames.some((f) => f.type === 'join' && f.room === room));
      const jf = k.frames.find((f) => f.type === 'join' && f.room === room)!;
      k.send({ type: 'joined', id: jf.id, room, epoch: 'e1', offset: 5, recovered: false });
      await j;
    }
    k.ws.terminate();
    const k2 = await srv.conn(1);
    await k2.frame(0);
    k2.welcome();
    // a: history lost; b: refused on resume (error without id), then refused again.
    k2.send({ type: 'joined', room: '@u', epoch: 'e', offset: 0, recovered: true },
      { type: 'joined', room: 'a', epoch: 'e2', offset: 0, recovered: false },
      { type: 'error', code: 'forbidden', message: 'resume of "b": not allowed' });
    const ping = await k2.find('ping');
    k2.send({ type: 'pong', id: ping.id });
    const rejoin = await k2.find('join');
    assert.deepEqual({ room: rejoin.room, since: rejoin.since }, { room: 'b', since: { epoch: 'e1', offset: 5 } });
    k2.send({ type: 'error', id: rejoin.id, code: 'forbidden', message: 'not allowed' });
    await waitFor('the reset and the left', () => rec.resets.length === 1 && rec.lefts.length === 1);
    assert.deepEqual(rec.resets[0], { room: 'a', epoch: 'e2', offset: 0 });
    assert.equal(rec.lefts[0]!.room, 'b');
    assert.ok(rec.lefts[0]!.error instanceof ServerError);
    assert.deepEqual(c.joined, ['@u', 'a']);
    await srv.close();
  });

  test('a left without id (the server took the session out) drops the room and is not resumed', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u', backoff: fast });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome();
    await connected;
    const j = c.join('secret');
    const jf = await k.find('join');
    k.send({ type: 'joined', id: jf.id, room: 'secret', epoch: 'e', offset: 1, recovered: false });
    await j;
    k.send({ type: 'left', room: 'secret' }, { type: 'message', room: 'secret', epoch: 'e', offset: 2, data: 'late' });
    await waitFor('the left event', () => rec.lefts.length === 1);
    assert.equal(rec.lefts[0]!.room, 'secret');
    assert.deepEqual(c.joined, ['@u']);
    k.ws.terminate();
    const k2 = await srv.conn(1);
    const hello = await k2.frame(0);
    assert.equal((hello.resume as Record<string, unknown>).secret, undefined, 'not resumed');
    assert.equal(rec.messages.length, 0);
    await srv.close();
  });

  test('close fails pending requests with ClosedError and reports the closed state without error', async () => {
    const srv = await FakeServer.start();
    const { c, rec } = newClient({ url: srv.url, user: 'u' });
    const connected = c.connect();
    const k = await srv.conn(0);
    await k.frame(0);
    k.welcome();
    await connected;
    const p = c.presence('r');
    await k.find('presence');
    await c.close();
    await assert.rejects(p, ClosedError);
    await waitFor('closed', () => rec.states.at(-1) === 'closed');
    assert.equal(rec.errors.at(-1), undefined);
    await waitFor('the server to see the close', () => k.closed);
    await srv.close();
  });
});

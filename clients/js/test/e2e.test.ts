// End-to-end tests of the client against real `switchboard serve` processes
// (built from this repository by npm test) and real redis-server processes:
// acks, an idempotent retry across a lost answer, resume across an instance
// killed and restarted, a drain to another instance, and resets.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { Ack, Client } from '../src/index.js';
import { CloseError } from '../src/index.js';
import { Instance, Proxy, Redis, checkStream, closeClients, newClient, waitFor } from './helpers.js';

after(closeClients);

const fast = { min: 20, max: 200 };

async function joinAll(room: string, ...cs: Client[]): Promise<void> {
  await Promise.all(cs.map((c) => c.connect()));
  await Promise.all(cs.map((c) => c.join(room)));
}

/** publishSeq publishes n numbered messages from c to room, `inFlight` at a time, and returns the acks in call order. */
async function publishSeq(c: Client, room: string, n: number, inFlight: number, onAck?: (i: number) => void): Promise<Ack[]> {
  const acks: Ack[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: inFlight }, async () => {
    while (next < n) {
      const i = next++;
      acks[i] = await c.publish(room, { i });
      onAck?.(i);
    }
  }));
  return acks;
}

function assertAcks(acks: Ack[], n: number): void {
  const offsets = acks.map((a) => a.offset).sort((a, b) => a - b);
  assert.equal(new Set(acks.map((a) => a.epoch)).size, 1, 'acks in one epoch');
  assert.deepEqual(offsets, Array.from({ length: n }, (_, i) => i + 1), 'one ack per publish, offsets 1..n each once');
}

test('acks: every publish is stored once, in order; the publisher gets acks, not its own messages', async () => {
  const a = await Instance.start('i_acks');
  try {
    const pub = newClient({ url: a.ws, user: 'pub' });
    const obs = newClient({ url: a.ws, user: 'obs', batch: false });
    const twin = newClient({ url: a.ws, user: 'pub' }); // another session of the same user
    await joinAll('r', pub.c, obs.c, twin.c);
    const n = 200;
    const acks = await publishSeq(pub.c, 'r', n, 1);
    assert.deepEqual(acks.map((x) => x.offset), Array.from({ length: n }, (_, i) => i + 1), 'sequential publishes are acked in order');
    const acks2 = await publishSeq(pub.c, 'r', n, 10);
    assertAcks([...acks, ...acks2], 2 * n);
    await waitFor('every message', () => obs.rec.messages.length >= 2 * n && twin.rec.messages.length >= 2 * n);
    checkStream('observer', obs.rec.messages, 'r', 2 * n);
    checkStream("publisher's twin", twin.rec.messages, 'r', 2 * n);
    assert.equal(pub.rec.messages.length, 0, 'the publisher gets no own message');

    const dm = await obs.c.send('pub', { text: 'psst' });
    assert.equal(dm.room, '@pub');
    await waitFor('the direct message in both sessions', () => pub.rec.of('@pub').length === 1 && twin.rec.of('@pub').length === 1);
    assert.deepEqual(pub.rec.of('@pub')[0]!.data, { text: 'psst' });
    assert.equal(pub.rec.of('@pub')[0]!.from, 'obs');
    const pres = await obs.c.presence('r');
    assert.deepEqual(pres.users, [{ user: 'obs', sessions: 1 }, { user: 'pub', sessions: 2 }]);
    const hist = await obs.c.history('r', { limit: 3 });
    assert.deepEqual(hist.messages.map((m) => m.offset), [2 * n - 2, 2 * n - 1, 2 * n]);
  } finally {
    await closeClients();
    await a.kill('SIGTERM');
  }
});

test('a publish whose ack was lost is retried with its key: one message, one ack', async () => {
  const a = await Instance.start('i_retry');
  const p = await Proxy.start(a.port);
  try {
    const alice = newClient({ url: p.ws, user: 'alice', backoff: fast });
    const bob = newClient({ url: a.ws, user: 'bob' });
    await joinAll('r', alice.c, bob.c);
    p.stall(true); // the server's answers no longer reach alice
    const pending = alice.c.publish('r', 'once');
    await waitFor("bob to get alice's message", () => bob.rec.messages.length === 1);
    const stored = bob.rec.messages[0]!;
    p.stall(false);
    p.cut();
    const ack = await pending;
    assert.deepEqual({ epoch: ack.epoch, offset: ack.offset }, { epoch: stored.epoch, offset: stored.offset });
    await bob.c.publish('r', 'after');
    await waitFor("alice to get bob's message", () => alice.rec.messages.length >= 1);
    assert.deepEqual(alice.rec.messages.map((m) => [m.from, m.offset]), [['bob', 2]]);
    const h = await bob.c.history('r');
    assert.equal(h.messages.length, 2, "history holds alice's message once, then bob's");
    assert.equal(alice.rec.connects(), 2);
  } finally {
    await closeClients();
    await p.close();
    await a.kill('SIGTERM');
  }
});

test('resume across an instance killed and restarted: zero loss, zero duplicates', async () => {
  const redis = await Redis.start();
  const args = ['--redis', redis.url, '--history-size', '2000'];
  const [a, b] = await Promise.all([Instance.start('i_crash_a', args), Instance.start('i_crash_b', args)]);
  try {
    // On the instance that is killed: a publisher and an observer; on the
    // other: a publisher and an observer that see it all live.
    const pubA = newClient({ url: a.ws, user: 'pub-a', backoff: fast });
    const obsA = newClient({ url: a.ws, user: 'obs-a', backoff: fast });
    const pubB = newClient({ url: b.ws, user: 'pub-b', backoff: fast });
    const obsB = newClient({ url: b.ws, user: 'obs-b', backoff: fast });
    await joinAll('r', pubA.c, obsA.c, pubB.c, obsB.c);
    const n = 300;
    let ackedB = 0;
    const fromB = publishSeq(pubB.c, 'r', n, 4, () => ackedB++);
    const fromA = publishSeq(pubA.c, 'r', n, 4);
    await waitFor('some messages before the crash', () => ackedB >= 60);
    assert.equal(await a.kill('SIGKILL'), null);
    await waitFor('the observer on the killed instance to notice', () => obsA.c.state !== 'connected');
    await waitFor('more messages while it is down', () => ackedB >= 150, 30_000);
    await a.restart();
    const acks = [...(await fromA), ...(await fromB)];
    assertAcks(acks, 2 * n);
    for (const [who, r] of [['obs-a', obsA.rec], ['obs-b', obsB.rec]] as const) {
      await waitFor(`${who}: every message`, () => r.messages.length >= 2 * n, 30_000);
      checkStream(who, r.messages, 'r', 2 * n);
      assert.equal(r.resets.length, 0, `${who}: no reset`);
    }
    // Each publisher gets the other's messages, once and in order, and none of its own.
    for (const [who, r, other] of [['pub-a', pubA.rec, 'pub-b'], ['pub-b', pubB.rec, 'pub-a']] as const) {
      await waitFor(`${who}: the other's messages`, () => r.messages.length >= n, 30_000);
      assert.equal(r.messages.filter((m) => m.from !== other).length, 0, `${who} got its own messages back`);
      const offsets = r.messages.map((m) => m.offset);
      assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]!), `${who}: offsets in order, each once`);
      assert.equal(r.messages.length, n);
    }
    assert.ok(obsA.rec.connects() >= 2 && pubA.rec.connects() >= 2, 'the clients on the killed instance reconnected');
    const lost = obsA.rec.errors[obsA.rec.states.indexOf('disconnected')];
    assert.ok(lost instanceof CloseError && lost.code === 1006, `obs-a lost its connection with ${String(lost)}`);
  } finally {
    await closeClients();
    await Promise.all([a.kill('SIGTERM'), b.kill('SIGTERM')]);
    redis.stop();
  }
});

test('drain: server:reconnect and 4001 move the client to the other instance, without loss', async () => {
  const redis = await Redis.start();
  const args = ['--redis', redis.url, '--history-size', '2000'];
  const [a, b] = await Promise.all([Instance.start('i_drain_a', args), Instance.start('i_drain_b', args)]);
  try {
    const obs = newClient({ url: [a.ws, b.ws], user: 'obs' });
    await obs.c.connect();
    const [draining, other] = obs.c.instance === a.id ? [a, b] : [b, a];
    const pub = newClient({ url: other.ws, user: 'pub' });
    await joinAll('live', obs.c, pub.c);
    const n = 300;
    let acked = 0;
    const acksP = publishSeq(pub.c, 'live', n, 1, () => acked++);
    await waitFor('the first messages', () => obs.rec.messages.length >= 50);
    const code = await draining.kill('SIGTERM');
    assert.equal(code, 0, 'a drained instance exits 0');
    const acks = await acksP;
    assert.deepEqual(acks.map((x) => x.offset), Array.from({ length: n }, (_, i) => i + 1));
    await waitFor('every message', () => obs.rec.messages.length >= n, 30_000);
    checkStream('observer', obs.rec.messages, 'live', n);
    assert.equal(obs.c.instance, other.id, 'the observer moved to the other instance');
    assert.deepEqual(obs.rec.states, ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
    const err = obs.rec.errors[2];
    assert.ok(err instanceof CloseError && err.code === 4001, `disconnected with ${String(err)}`);
  } finally {
    await closeClients();
    await Promise.all([a.kill('SIGTERM'), b.kill('SIGTERM')]);
    redis.stop();
  }
});

test('reset: a gap older than history, and history lost with the memory broker', async () => {
  const a = await Instance.start('i_reset', ['--history-size', '5']);
  const p = await Proxy.start(a.port);
  try {
    const sub = newClient({ url: p.ws, user: 'sub', backoff: fast });
    const pub = newClient({ url: a.ws, user: 'pub', backoff: fast });
    await joinAll('r', sub.c, pub.c);
    await pub.c.publish('r', 0);
    await waitFor('the first message', () => sub.rec.messages.length === 1);
    p.stall(true);
    for (let i = 1; i < 20; i++) await pub.c.publish('r', i);
    p.stall(false);
    p.cut();
    await waitFor('the reset', () => sub.rec.resets.length === 1);
    await pub.c.publish('r', 20);
    await waitFor('the next message', () => sub.rec.messages.length === 2);
    const s = sub.rec.stream.map((x) => ('reset' in x ? `reset@${x.offset}` : `${x.offset}`));
    assert.deepEqual(s, ['1', 'reset@20', '21']);

    // The memory broker forgets everything when its process dies: the
    // resume after the restart lands in a new epoch.
    const before = sub.rec.messages[1]!.epoch;
    await a.kill('SIGKILL');
    await a.restart();
    const resetsOfR = () => sub.rec.resets.filter((r) => r.room === 'r');
    await waitFor('the second reset', () => resetsOfR().length === 2 && sub.c.state === 'connected', 20_000);
    const reset = resetsOfR()[1]!;
    assert.ok(sub.rec.resets.some((r) => r.room === '@sub' && r.epoch !== ''), 'the inbox lost its history too');
    assert.notEqual(reset.epoch, before, 'a new epoch');
    await waitFor('the publisher to be back', () => pub.c.state === 'connected', 20_000);
    const ack = await pub.c.publish('r', 'new epoch');
    await waitFor('the message of the new epoch', () => sub.rec.messages.length === 3);
    const last = sub.rec.messages[2]!;
    assert.deepEqual([last.epoch, last.offset], [ack.epoch, ack.offset]);
  } finally {
    await closeClients();
    await p.close();
    await a.kill('SIGTERM');
  }
});

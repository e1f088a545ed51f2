// The demo chat page in Debian's Chromium, driven by playwright-core, on a
// deployment as an operator runs it: a redis-server, two `switchboard serve`
// instances and nginx in front of them, started from deploy/nginx.conf with
// only its upstream addresses and listen port rewritten.
//
// Page A and page B chat in a room and by direct message; then the instance
// holding page A is drained (SIGTERM) while a backend publishes through the
// HTTP API: page A shows the reconnect, lands on the other instance, and
// shows every message exactly once. The same runs at desktop size and at
// 390 × 844. Then a rolling restart of both instances, as deploy/README.md
// describes it, with sessions and API calls through nginx while the second
// drains. Screenshots after the failover go to artifacts/ (failover-*.png),
// and of every page of a failing case (failure-*.png); nginx's logs to
// artifacts/nginx-*.log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, existsSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const repo = resolve(import.meta.dirname, '../..');
const artifacts = join(import.meta.dirname, 'artifacts');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const nginxPath = process.env.NGINX || '/usr/sbin/nginx';
const work = mkdtempSync(join(tmpdir(), 'sb-browser-'));
const procs = new Set();
let bin, browser, lb;
const instances = [];

process.on('exit', () => {
  for (const p of procs) p.kill('SIGKILL');
});

function freePort() {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => res(port)); });
    srv.on('error', rej);
  });
}

function run(cmd, args, name) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  procs.add(proc);
  let log = '';
  proc.stderr.on('data', (d) => { log = (log + d).slice(-4000); });
  proc.exited = new Promise((res) => proc.on('exit', (code, sig) => { procs.delete(proc); res(code ?? sig); }));
  proc.log = () => `${name}: ${log}`;
  return proc;
}

/** poll calls f until it returns a truthy value, failing after timeout ms. */
async function poll(what, f, timeout = 15000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function startInstance(inst) {
  inst.proc = run(bin, ['serve', '--dev', '--listen', `127.0.0.1:${inst.port}`, '--instance-id', inst.id,
    '--redis', `redis://127.0.0.1:${inst.redisPort}`, '--drain-spread', '300ms', '--log-level', 'warn'], inst.id);
  await poll(`${inst.id} to be ready`, async () => {
    if (inst.proc.exitCode !== null) throw new Error(inst.proc.log());
    return (await fetch(`http://127.0.0.1:${inst.port}/readyz`)).ok;
  });
}

/**
 * nginxConfig returns deploy/nginx.conf with the test's upstream addresses
 * and listen port, failing if the file no longer has the lines it rewrites,
 * and the main configuration that includes it with every path in dir.
 */
function nginxConfig(dir, port, upstreams) {
  const conf = readFileSync(join(repo, 'deploy/nginx.conf'), 'utf8');
  // Each upstream lists switchboard-1, switchboard-2, ...: the test's instances in order.
  const server = /^(\s*server\s+)switchboard-(\d+):8080(\s.*)?;$/gm;
  const named = [...conf.matchAll(server)].map((m) => Number(m[2]));
  assert.ok(named.length > 0 && named.every((n) => n >= 1 && n <= upstreams.length),
    `deploy/nginx.conf's upstreams list switchboard-1 to switchboard-${upstreams.length} (it lists ${named})`);
  for (let n = 1; n <= upstreams.length; n++) assert.ok(named.includes(n), `deploy/nginx.conf lists switchboard-${n}`);
  assert.equal((conf.match(/^\s*server\s+[^{\s]/gm) ?? []).length, named.length, 'deploy/nginx.conf names no other upstream servers');
  let site = conf.replace(server, (_, head, n, tail) => `${head}${upstreams[n - 1]}${tail ?? ''};`);
  assert.match(site, /^\s*listen 80;$/m, 'deploy/nginx.conf listens on port 80');
  site = site.replace(/^(\s*)listen 80;$/m, `$1listen 127.0.0.1:${port};`);
  writeFileSync(join(dir, 'switchboard.conf'), site);
  const main = `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
  log_format upstreams '$time_iso8601 $request $status upstream=$upstream_addr upstream_status=$upstream_status';
  access_log ${dir}/access.log upstreams;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${dir}/switchboard.conf;
}
`;
  writeFileSync(join(dir, 'nginx.conf'), main);
  return join(dir, 'nginx.conf');
}

before(async () => {
  assert.ok(existsSync(chromiumPath), `Chromium not found at ${chromiumPath}: run scripts/install-test-deps.sh (apt-get install chromium)`);
  assert.ok(existsSync(nginxPath), `nginx not found at ${nginxPath}: run scripts/install-test-deps.sh (apt-get install nginx)`);
  mkdirSync(artifacts, { recursive: true });
  bin = join(work, 'switchboard');
  execFileSync(process.env.GO || 'go', ['build', '-o', bin, './cmd/switchboard'], { cwd: repo, stdio: 'inherit' });

  const redisPort = await freePort();
  const redis = run('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], 'redis');
  await poll('redis-server', () => new Promise((res) => {
    if (redis.exitCode !== null) throw new Error(redis.log());
    const s = net.connect(redisPort, '127.0.0.1');
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => { res(String(d).startsWith('+PONG')); s.destroy(); });
    s.on('error', () => res(false));
  }));
  for (const id of ['i_browser_a', 'i_browser_b']) instances.push({ id, port: await freePort(), redisPort });
  await Promise.all(instances.map(startInstance));

  const nginxDir = join(work, 'nginx');
  mkdirSync(nginxDir);
  const port = await freePort();
  const conf = nginxConfig(nginxDir, port, instances.map((i) => `127.0.0.1:${i.port}`));
  const nginx = run(nginxPath, ['-p', nginxDir, '-c', conf, '-e', join(nginxDir, 'error.log')], 'nginx');
  lb = `http://127.0.0.1:${port}`;
  await poll('nginx', async () => {
    if (nginx.exitCode !== null) throw new Error(nginx.log() + readFileSync(join(nginxDir, 'error.log'), 'utf8'));
    return (await fetch(lb + '/healthz')).ok;
  });

  // launch starts Chromium with a fresh temporary --user-data-dir of its own.
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await Promise.all([...procs].map((p) => { p.kill('SIGTERM'); return p.exited; }));
  // nginx's logs say which upstream answered what, and when it gave up on one.
  for (const log of ['error.log', 'access.log']) {
    const from = join(work, 'nginx', log);
    if (existsSync(from)) copyFileSync(from, join(artifacts, `nginx-${log}`));
  }
  rmSync(work, { recursive: true, force: true });
});

// Page helpers. On a phone the rooms, people and connection details live in
// a drawer behind the ☰ button.

async function menu(page, open) {
  if (!(await page.isVisible('#menu'))) return;
  const isOpen = await page.evaluate(() => document.body.classList.contains('menu-open'));
  if (isOpen !== open) await page.click('#menu');
}

async function login(page, user, rooms) {
  await page.fill('#user', user);
  await page.fill('#initial-rooms', rooms);
  await page.click('#connect');
}

async function openRoom(page, room) {
  await menu(page, true);
  await page.click(`#rooms li[data-room="${room}"]`);
  await poll(`${room} to be open`, () => page.evaluate(() => !document.body.classList.contains('menu-open')));
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

const texts = (page) => page.$$eval('#messages .msg .text', (els) => els.map((e) => e.textContent));

/** shown waits until the open conversation shows want (and nothing else), in order. */
async function shown(page, who, want) {
  try {
    await page.waitForFunction((n) => document.querySelectorAll('#messages .msg').length >= n, want.length);
  } catch (err) {
    throw new Error(`${who}: ${err.message}; shows ${JSON.stringify(await texts(page))}, want ${JSON.stringify(want)}`);
  }
  assert.deepEqual(await texts(page), want, `${who} shows each message once, in order`);
}

/** apiPublish publishes through nginx and the HTTP API, retrying with the same key what did not get an answer. */
async function apiPublish(body, stats) {
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const res = await fetch(lb + '/api/publish', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (res.ok) return res.json();
      if (res.status < 500) throw Object.assign(new Error(`API publish: ${res.status} ${await res.text()}`), { final: true });
      stats.retried.push(String(res.status));
    } catch (err) {
      if (err.final) throw err;
      stats.retried.push(err.cause?.code ?? err.message);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`API publish: no answer after 100 attempts (${stats.retried.slice(-100).join(' ')})`);
}

async function scenario(t, tag, viewport) {
  const contexts = await Promise.all([browser.newContext({ viewport }), browser.newContext({ viewport })]);
  const [pageA, pageB] = await Promise.all(contexts.map((c) => c.newPage()));
  const errors = [];
  for (const [name, page] of [['A', pageA], ['B', pageB]]) {
    page.setDefaultTimeout(15000);
    page.on('pageerror', (err) => errors.push(`page ${name}: ${err.message}`));
    // Every status the page shows, however briefly.
    await page.addInitScript(() => {
      window.statusLog = [];
      addEventListener('DOMContentLoaded', () => {
        const el = document.getElementById('status');
        new MutationObserver(() => window.statusLog.push(el.className)).observe(el, { attributes: true, childList: true });
      });
    });
  }
  const alice = `alice-${tag}`;
  const bob = `bob-${tag}`;
  const room = `lobby-${tag}`;
  try {
    await Promise.all([pageA.goto(lb + '/'), pageB.goto(lb + '/')]);
    const icon = await pageA.evaluate(async () => { const r = await fetch('/favicon.ico'); return [r.status, r.headers.get('content-type')]; });
    assert.deepEqual(icon, [200, 'image/x-icon'], '/favicon.ico');

    // A name the server would refuse: the page says why and tries nothing.
    await login(pageA, 'not a name', room);
    await pageA.waitForSelector('#login-error');
    assert.match(await pageA.textContent('#login-error'), /not a valid user id/);
    assert.equal(await pageA.getAttribute('#status', 'class'), 'disconnected');
    assert.ok(await pageA.isVisible('#login'), 'still on the login form');

    await login(pageA, alice, room);
    await pageA.waitForSelector('#status.connected');
    await login(pageB, bob, room);
    await pageB.waitForSelector('#status.connected');
    await Promise.all([pageA, pageB].map((p) => p.waitForSelector(`#rooms li[data-room="${room}"]`, { state: 'attached' })));

    // Presence follows a join at once (the page's join announcement), not
    // after the 15 s refresh.
    await pageA.waitForSelector(`#presence li[data-user="${bob}"]`, { state: 'attached', timeout: 5000 });
    await pageB.waitForSelector(`#presence li[data-user="${alice}"]`, { state: 'attached', timeout: 5000 });

    // A join the server refuses (another user's inbox) is not listed.
    await menu(pageA, true);
    await pageA.fill('#newroom', '@' + bob);
    await pageA.press('#newroom', 'Enter');
    await pageA.waitForSelector('#join-error');
    assert.match(await pageA.textContent('#join-error'), /forbidden/);
    assert.equal(await pageA.$$eval('#rooms li', (els) => els.length), 1, 'the refused room is not in the list');
    await menu(pageA, false);

    const chat = ['hello from alice', 'hello from bob'];
    await say(pageA, chat[0]);
    await shown(pageB, 'page B', chat.slice(0, 1));
    await say(pageB, chat[1]);
    await shown(pageA, 'page A', chat);
    await shown(pageB, 'page B', chat);

    // A direct message: the recipient sees it under its sender, the sender
    // in its own conversation with the recipient.
    await menu(pageB, true);
    await pageB.fill('#dm-to', alice);
    await pageB.press('#dm-to', 'Enter');
    await say(pageB, 'psst, alice');
    await shown(pageB, 'page B (its DM)', ['psst, alice']);
    await pageA.waitForSelector(`#dms li[data-peer="${bob}"] .badge`, { state: 'attached' });
    await menu(pageA, true);
    await pageA.click(`#dms li[data-peer="${bob}"]`);
    await shown(pageA, 'page A (the DM)', ['psst, alice']);
    await openRoom(pageA, room);
    await openRoom(pageB, room);
    await shown(pageA, 'page A', chat);

    // Failover: drain the instance of page A while a backend publishes.
    const before = await pageA.textContent('#instance');
    const victim = instances.find((i) => i.id === before);
    assert.ok(victim, `page A shows instance ${before}, which is neither of ${instances.map((i) => i.id)}`);
    await pageA.evaluate(() => { window.statusLog.length = 0; });
    victim.proc.kill('SIGTERM');
    const stats = { retried: [] };
    const api = [];
    for (let i = 0; i < 20; i++) {
      const text = `from the backend #${i}`;
      await apiPublish({ room, data: { text }, key: `${tag}-${i}` }, stats);
      api.push(text);
      await new Promise((r) => setTimeout(r, 40)); // spread over the drain and the reconnect
    }
    assert.equal(await victim.proc.exited, 0, 'the drained instance exits 0');
    await pageA.waitForFunction((old) => {
      const inst = document.getElementById('instance').textContent;
      return inst !== '' && inst !== old && document.getElementById('status').className === 'connected';
    }, before);
    const after = await pageA.textContent('#instance');
    assert.ok(instances.some((i) => i.id === after && i !== victim), `page A moved to the other instance (${after})`);
    const log = await pageA.evaluate(() => window.statusLog);
    assert.ok(log.includes('disconnected') || log.includes('connecting'), `page A showed the reconnect: ${log}`);
    assert.match(await pageA.textContent('#banner'), new RegExp(`Reconnected to instance ${after} \\(was ${before}\\)`));

    // One more message from page B marks the end: per room, nothing can
    // arrive after it that was published before it.
    await say(pageB, 'and we are back');
    const want = [...chat, ...api, 'and we are back'];
    await shown(pageA, 'page A after the failover', want);
    await shown(pageB, 'page B after the failover', want);
    await say(pageA, 'alice is back');
    await shown(pageB, 'page B', [...want, 'alice is back']);
    await pageA.screenshot({ path: join(artifacts, `failover-${tag}.png`) });
    t.diagnostic(`${tag}: page A moved from ${before} to ${after}; ${api.length} API publishes through nginx, ${stats.retried.length} attempts retried with their key (${stats.retried.join(' ') || 'none'})`);

    await startInstance(victim);
  } catch (err) {
    for (const [name, page] of [['A', pageA], ['B', pageB]]) {
      await page.screenshot({ path: join(artifacts, `failure-${tag}-${name}.png`) }).catch(() => undefined);
    }
    throw err;
  } finally {
    await Promise.all(contexts.map((c) => c.close()));
  }
  assert.deepEqual(errors, [], 'no errors in the pages');
}

test('desktop: chat, direct messages, presence, and a drain with zero loss', (t) => scenario(t, 'desktop', { width: 1280, height: 800 }));

test('phone (390 × 844): the same', (t) => scenario(t, 'phone', { width: 390, height: 844 }));

/**
 * session opens a WebSocket session through nginx as user and resolves to
 * it with the instance its welcome names, or rejects with why it could not.
 */
function session(user) {
  return new Promise((res, rej) => {
    const ws = new WebSocket(lb.replace('http', 'ws') + '/ws');
    const timer = setTimeout(() => { ws.close(); rej(new Error(`${user}: no welcome after 5 s`)); }, 5000);
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', user }));
    ws.onmessage = (ev) => {
      const frame = JSON.parse(String(ev.data).split('\n')[0]);
      clearTimeout(timer);
      if (frame.type === 'welcome') res({ ws, instance: frame.instance });
      else rej(new Error(`${user}: ${ev.data}`));
    };
    ws.onerror = () => { clearTimeout(timer); rej(new Error(`${user}: the upgrade through nginx failed`)); };
  });
}

// A rolling restart as deploy/README.md describes it: drain the first
// instance, restart it, wait until it has been ready for nginx's
// fail_timeout, drain the second. While the second drains, new sessions and
// API publishes must find the first at once. (A WebSocket session is an
// hour-long request to nginx: had it been the one request nginx lets through
// to an instance it saw fail, nginx would keep that instance out of rotation
// until the session ended, and answer 502 to everything once the second was
// gone too.)
test('rolling restart behind nginx: the instance restarted first takes new sessions and API calls while the second drains', async (t) => {
  const [first, second] = instances;
  const open = [];
  // deploy/README.md: ready for nginx's fail_timeout (5 s), counted in whole seconds.
  const failTimeout = () => new Promise((r) => setTimeout(r, 6500));
  try {
    await failTimeout(); // the cases before restarted an instance last
    first.proc.kill('SIGTERM');
    assert.equal(await first.proc.exited, 0, `${first.id} drains and exits 0`);
    // A session and an API call while the first is down: nginx, trying the
    // first, may see it refuse.
    const stats = { retried: [] };
    open.push(await session('roll-while-down'));
    await apiPublish({ room: 'roll', data: { n: 0 }, key: 'roll-0' }, stats);
    await startInstance(first);
    await failTimeout();
    // The restarted instance holds the fewest sessions, so it gets the next.
    const probe = await session('roll-probe');
    open.push(probe);
    assert.equal(probe.instance, first.id, 'a new session goes to the restarted instance, which holds none');

    second.proc.kill('SIGTERM');
    const exited = second.proc.exited;
    let gone = false;
    exited.then(() => { gone = true; });
    const seen = new Set();
    for (let i = 1; !gone || i < 5; i++) {
      const s = await session(`roll-${i}`);
      open.push(s);
      seen.add(s.instance);
      await apiPublish({ room: 'roll', data: { n: i }, key: `roll-${i}` }, stats);
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(await exited, 0, `${second.id} drains and exits 0`);
    assert.deepEqual([...seen], [first.id], 'every session opened during the drain went to the restarted instance');
    // A POST that nginx had sent to the draining instance as it closed its
    // connections comes back 502 and is retried with its key; never more than
    // a few.
    assert.ok(stats.retried.length <= 3, `API publishes retried ${stats.retried.length} times (${stats.retried.join(' ')})`);
    t.diagnostic(`API publishes retried with their key: ${stats.retried.join(' ') || 'none'}`);
  } finally {
    for (const s of open) s.ws.close();
    await Promise.all(instances.filter((i) => !procs.has(i.proc)).map(startInstance));
  }
});


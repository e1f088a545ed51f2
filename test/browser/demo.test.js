// The demo chat page in a real browser: two users chat in a room, a direct
// message reaches every tab of its recipient, and a page survives a server
// drain by reconnecting and resuming without losing a message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const repo = resolve(import.meta.dirname, '../..');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
let bin, browser;
const servers = [];

function freePort() {
  return new Promise((res, rej) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => res(port)); });
    srv.on('error', rej);
  });
}

async function startServer(port) {
  port ??= await freePort();
  const proc = spawn(bin, ['serve', '--dev', '--listen', `127.0.0.1:${port}`, '--drain-spread', '300ms', '--log-level', 'warn'],
    { stdio: ['ignore', 'inherit', 'inherit'] });
  servers.push(proc);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(url + '/readyz')).ok) return { proc, url, port }; } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('server did not become ready');
}

function stopServer(proc) {
  return new Promise((res) => { if (proc.exitCode !== null) return res(proc.exitCode); proc.once('exit', (code) => res(code)); proc.kill('SIGTERM'); });
}

async function openChat(url, user) {
  const page = await browser.newPage();
  await page.goto(url + '/');
  await page.fill('#user', user);
  await page.click('#connect');
  await page.waitForSelector('#status.connected');
  return page;
}

const messageTexts = (page) => page.$$eval('#messages .msg div:last-child', (els) => els.map((e) => e.textContent));

before(async () => {
  assert.ok(existsSync(chromiumPath), `Chromium not found at ${chromiumPath}: apt-get install chromium`);
  bin = join(mkdtempSync(join(tmpdir(), 'sb-browser-')), 'switchboard');
  execFileSync('go', ['build', '-o', bin, './cmd/switchboard'], { cwd: repo, stdio: 'inherit' });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await Promise.all(servers.map(stopServer));
});

test('two users chat in a room and direct messages reach every tab', async () => {
  const { url } = await startServer();
  const alice = await openChat(url, 'alice');
  const alice2 = await openChat(url, 'alice');
  const bob = await openChat(url, 'bob');
  for (const p of [alice, alice2, bob]) await p.waitForSelector('#rooms li[data-room="general"]');

  await alice.fill('#text', 'hello from alice');
  await alice.press('#text', 'Enter');
  await bob.waitForFunction(() => [...document.querySelectorAll('#messages .msg')].some((m) => m.textContent.includes('hello from alice')));
  await alice2.waitForFunction(() => [...document.querySelectorAll('#messages .msg')].some((m) => m.textContent.includes('hello from alice')));
  // echo: the sender's own tab shows its message once.
  await alice.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 1);
  assert.deepEqual(await messageTexts(alice), ['hello from alice']);

  await bob.fill('#text', '/dm alice just for you');
  await bob.press('#text', 'Enter');
  for (const tab of [alice, alice2]) {
    await tab.click('#rooms li[data-room="@alice"]');
    await tab.waitForFunction(() => [...document.querySelectorAll('#messages .msg')].some((m) => m.textContent.includes('just for you')));
    assert.deepEqual(await messageTexts(tab), ['just for you']);
  }
  await bob.click('#rooms li[data-room="general"]');
  await bob.screenshot({ path: join(tmpdir(), 'switchboard-demo.png') });
  for (const p of [alice, alice2, bob]) await p.close();
});

test('a page reconnects after a drain and resumes without losing messages', async () => {
  const first = await startServer();
  const carol = await openChat(first.url, 'carol');
  const dave = await openChat(first.url, 'dave');
  await carol.waitForSelector('#rooms li[data-room="general"]');
  await dave.waitForSelector('#rooms li[data-room="general"]');
  await carol.fill('#text', 'before the deploy');
  await carol.press('#text', 'Enter');
  await dave.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 1);

  // The memory broker lives in the process: restart on the same port is a
  // new epoch, so the page must say history was lost and go on working.
  assert.equal(await stopServer(first.proc), 0, 'drain exits 0');
  await dave.waitForSelector('#status.disconnected');
  const second = await startServer(first.port);
  await dave.waitForSelector('#status.connected', { timeout: 15000 });
  await carol.waitForSelector('#status.connected', { timeout: 15000 });
  await carol.fill('#text', 'after the deploy');
  await carol.press('#text', 'Enter');
  await dave.waitForFunction(() => [...document.querySelectorAll('#messages .msg')].some((m) => m.textContent.includes('after the deploy')));
  assert.deepEqual(await messageTexts(dave), ['before the deploy', 'after the deploy']);
  await carol.close();
  await dave.close();
  assert.equal(await stopServer(second.proc), 0);
});

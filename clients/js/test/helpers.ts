// Helpers of the client's tests: waiting with a deadline, recording a
// client's events, a fake server for the unit tests, real redis-server and
// switchboard processes for the end-to-end tests, and a TCP proxy that cuts
// or stalls connections.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { Client, type ClientOptions, type Left, type Message, type Reset, type State } from '../src/index.js';

/** waitFor polls cond until it holds, failing after timeout ms with what. */
export async function waitFor(what: string, cond: () => boolean, timeout = 15_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Everything a client reported, in order. */
export class Recorder {
  readonly messages: Message[] = [];
  readonly resets: Reset[] = [];
  readonly lefts: Left[] = [];
  /** Messages and resets of every room, in the order delivered. */
  readonly stream: Array<Message | (Reset & { reset: true })> = [];
  readonly states: State[] = [];
  readonly errors: Array<Error | undefined> = [];

  attach(c: Client): Client {
    c.on('message', (m) => {
      this.messages.push(m);
      this.stream.push(m);
    });
    c.on('reset', (r) => {
      this.resets.push(r);
      this.stream.push({ ...r, reset: true });
    });
    c.on('left', (l) => this.lefts.push(l));
    c.on('state', (s, err) => {
      this.states.push(s);
      this.errors.push(err);
    });
    return c;
  }

  /** connects counts the connections that reached welcome. */
  connects(): number {
    return this.states.filter((s) => s === 'connected').length;
  }

  of(room: string): Message[] {
    return this.messages.filter((m) => m.room === room);
  }
}

const clients: Client[] = [];

/** newClient creates a client on ws's WebSocket with a recorder; it is closed when the process's tests end. */
export function newClient(opts: Omit<ClientOptions, 'WebSocket'>): { c: Client; rec: Recorder } {
  const c = new Client({ ...opts, WebSocket });
  clients.push(c);
  const rec = new Recorder();
  rec.attach(c);
  return { c, rec };
}

/** closeClients closes every client made by newClient. */
export async function closeClients(): Promise<void> {
  await Promise.all(clients.splice(0).map((c) => c.close()));
}

/** checkStream fails unless msgs holds exactly the messages of room at offsets 1..n of one epoch, in order. */
export function checkStream(who: string, msgs: readonly Message[], room: string, n: number): void {
  const mine = msgs.filter((m) => m.room === room);
  const epochs = new Set(mine.map((m) => m.epoch));
  if (epochs.size > 1) throw new Error(`${who}: messages of ${room} in ${epochs.size} epochs`);
  mine.forEach((m, i) => {
    if (m.offset !== i + 1) {
      throw new Error(`${who}: offsets of ${room} = ${mine.slice(Math.max(0, i - 3), i + 3).map((x) => x.offset).join(',')}..., want 1..${n} each once in order (first wrong at index ${i})`);
    }
  });
  if (mine.length !== n) throw new Error(`${who}: ${mine.length} messages of ${room}, want ${n}`);
}

/** freePort returns a loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

// A fake server for the unit tests.

/** One connection to the fake server. */
export class FakeConn {
  readonly frames: Array<Record<string, unknown>> = [];
  closed = false;
  /** answerPings makes the connection answer each ping frame with a pong as it arrives. */
  answerPings = false;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const f = JSON.parse(String(data)) as Record<string, unknown>;
      this.frames.push(f);
      if (this.answerPings && f.type === 'ping') this.send({ type: 'pong' });
    });
    ws.on('close', () => {
      this.closed = true;
    });
  }

  send(...frames: object[]): void {
    this.ws.send(frames.map((f) => JSON.stringify(f)).join('\n'));
  }

  /** welcome answers hello as a server would. */
  welcome(user = 'u', extra: Record<string, unknown> = {}): void {
    this.send({ type: 'welcome', session: 's_' + Math.random().toString(36).slice(2), user, instance: 'i_fake', heartbeat: 25000, inbox: { room: '@' + user, epoch: 'e', offset: 0 }, ...extra });
  }

  /** next waits for the n-th frame (0-based) of the client and returns it. */
  async frame(n: number, what = `frame ${n}`): Promise<Record<string, unknown>> {
    await waitFor(what, () => this.frames.length > n);
    return this.frames[n]!;
  }

  /** find waits for a frame of type and returns it. */
  async find(type: string): Promise<Record<string, unknown>> {
    await waitFor(`a ${type} frame`, () => this.frames.some((f) => f.type === type));
    return this.frames.find((f) => f.type === type)!;
  }
}

/** A WebSocket server on a loopback port that the test scripts frame by frame. */
export class FakeServer {
  readonly conns: FakeConn[] = [];
  readonly url: string;
  private constructor(private readonly wss: WebSocketServer, port: number) {
    this.url = `ws://127.0.0.1:${port}/ws`;
    wss.on('connection', (ws) => this.conns.push(new FakeConn(ws)));
  }

  static async start(): Promise<FakeServer> {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    const srv = new FakeServer(wss, (wss.address() as net.AddressInfo).port);
    servers.add(srv);
    return srv;
  }

  /** conn waits for the n-th connection (0-based). */
  async conn(n: number): Promise<FakeConn> {
    await waitFor(`connection ${n}`, () => this.conns.length > n);
    return this.conns[n]!;
  }

  async close(): Promise<void> {
    if (!servers.delete(this)) return;
    for (const c of this.wss.clients) c.terminate();
    await new Promise((r) => this.wss.close(r));
  }
}

const servers = new Set<FakeServer>();

/**
 * closeServers closes every fake server a test left open: one whose test
 * failed before its own close would keep the test process alive for good.
 */
export async function closeServers(): Promise<void> {
  await Promise.all([...servers].map((s) => s.close()));
}

// Real processes for the end-to-end tests.

const procs = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of procs) p.kill('SIGKILL');
});

function track(p: ChildProcess): ChildProcess {
  procs.add(p);
  p.on('exit', () => procs.delete(p));
  return p;
}

/** A redis-server on a free loopback port, without persistence. */
export class Redis {
  private constructor(readonly proc: ChildProcess, readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(): Promise<Redis> {
    const port = await freePort();
    const proc = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }));
    const r = new Redis(proc, port);
    const deadline = Date.now() + 10_000;
    while (!(await r.ping())) {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error('redis-server did not start');
      await new Promise((res) => setTimeout(res, 20));
    }
    return r;
  }

  private async ping(): Promise<boolean> {
    return new Promise((resolve) => {
      const s = net.connect(this.port, '127.0.0.1');
      s.on('connect', () => s.write('PING\r\n'));
      s.on('data', (d) => {
        resolve(String(d).startsWith('+PONG'));
        s.destroy();
      });
      s.on('error', () => resolve(false));
    });
  }

  stop(): void {
    this.proc.kill('SIGKILL');
  }
}

/** The switchboard binary that npm test built. */
export function binary(): string {
  const bin = process.env.SWITCHBOARD_BIN;
  if (!bin) throw new Error('SWITCHBOARD_BIN is not set: run the tests with npm test, which builds switchboard');
  return bin;
}

/** A `switchboard serve --dev` process on a loopback port. */
export class Instance {
  proc!: ChildProcess;
  exited!: Promise<number | null>;
  private log = '';
  private constructor(readonly id: string, readonly port: number, private readonly args: string[]) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get ws(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** start runs an instance with id and extra serve flags (e.g. --redis) and waits until it is ready. */
  static async start(id: string, args: string[] = []): Promise<Instance> {
    const in_ = new Instance(id, await freePort(), args);
    await in_.run();
    return in_;
  }

  /** restart runs the instance again on the same port, after it exited. */
  async restart(): Promise<void> {
    await this.run();
  }

  private async run(): Promise<void> {
    this.proc = track(spawn(binary(), ['serve', '--dev', '--listen', `127.0.0.1:${this.port}`, '--instance-id', this.id,
      '--drain-spread', '300ms', '--log-level', 'warn', ...this.args], { stdio: ['ignore', 'ignore', 'pipe'] }));
    this.proc.stderr!.on('data', (d) => {
      this.log = (this.log + String(d)).slice(-4000);
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (this.proc.exitCode !== null) throw new Error(`${this.id} exited at start: ${this.log}`);
      try {
        if ((await fetch(this.url + '/readyz')).ok) return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`${this.id} did not become ready: ${this.log}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** signal sends sig and, for SIGKILL, waits for the exit. */
  async kill(sig: NodeJS.Signals): Promise<number | null> {
    this.proc.kill(sig);
    return this.exited;
  }

  /** publish publishes through the HTTP API. */
  async publish(room: string, data: unknown, key?: string): Promise<{ room: string; epoch: string; offset: number }> {
    const res = await fetch(this.url + '/api/publish', { method: 'POST', body: JSON.stringify({ room, data, key }) });
    if (!res.ok) throw new Error(`API publish: ${res.status} ${await res.text()}`);
    return (await res.json()) as { room: string; epoch: string; offset: number };
  }

  stderr(): string {
    return this.log;
  }
}

/**
 * A TCP proxy in front of a server: cut drops every connection through it
 * (as a network fault would, without a close frame); stall drops the
 * server's bytes instead of passing them on, so that its answers are lost
 * (cut the connections before passing bytes again).
 */
export class Proxy {
  private readonly sockets = new Set<net.Socket>();
  private stalled = false;
  private constructor(private readonly server: net.Server, readonly port: number) {}

  get ws(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  static async start(target: number): Promise<Proxy> {
    const server = net.createServer();
    const p: Proxy = await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(new Proxy(server, (server.address() as net.AddressInfo).port))));
    server.on('connection', (down) => {
      const up = net.connect(target, '127.0.0.1');
      for (const s of [down, up]) {
        p.sockets.add(s);
        s.on('close', () => p.sockets.delete(s));
        s.on('error', () => undefined);
      }
      down.on('data', (d) => up.write(d));
      up.on('data', (d) => {
        if (!p.stalled) down.write(d);
      });
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    });
    return p;
  }

  /** stall stops (or resumes) passing the server's bytes to the clients. */
  stall(on: boolean): void {
    this.stalled = on;
  }

  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

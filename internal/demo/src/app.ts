// The demo chat page that `switchboard serve --dev` shows at /, built on
// the TypeScript client (clients/js) and bundled into ../static/app.js by
// `npm run build:demo` in clients/js.
//
// Presence: the protocol answers presence requests but sends no presence
// events. The page asks for a room's presence when it opens the room, after
// every (re)connection, when a message arrives from someone not listed, and
// when a member announces itself: the page publishes {"kind":"presence",
// "event":"join"|"leave"} to a room when its user joins or leaves it (or
// closes the tab). What no announcement covers (a crashed tab, a lost
// network) is caught by a slower refresh every 15 s while the page is
// visible.
import { Client, CloseError, ConnectionError, ServerError, type Message, type State } from '../../../clients/js/src/index.js';

const presenceEvery = 15_000;

/** Shown as the sender of messages published through the HTTP API without "from" (not a valid user id, so no user's name). */
const apiSender = 'HTTP API';

/** A conversation: a room, or the direct messages with one user. */
interface Conversation {
  /** "room:<name>" or "dm:<user>". */
  readonly key: string;
  readonly title: string;
  readonly items: Item[];
  unread: number;
  /** For a room: who is in it. */
  presence: Array<{ user: string; sessions: number }>;
}

type Item =
  | { kind: 'msg'; from: string; text: string; ts: number; offset?: number; epoch?: string; mine: boolean; status: 'sent' | 'pending' | 'failed'; error?: string }
  | { kind: 'notice'; text: string; warn: boolean };

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

let client: Client | null = null;
let me = '';
let current = '';
const conversations = new Map<string, Conversation>();
let lastInstance = '';
let reconnects = 0;
let presenceTimer: ReturnType<typeof setInterval> | undefined;
const presenceSoon = new Map<string, ReturnType<typeof setTimeout>>();

// Login.

$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const user = $<HTMLInputElement>('user').value.trim();
  const rooms = $<HTMLInputElement>('initial-rooms').value.split(/[\s,]+/).filter(Boolean);
  void start(user, rooms);
});
$<HTMLInputElement>('user').value = localStorage.getItem('switchboard-demo-user') ?? '';

async function start(user: string, rooms: string[]): Promise<void> {
  showLoginError('');
  let c: Client;
  try {
    c = new Client({ url: '/ws', user });
  } catch (err) {
    showLoginError(message(err).replace(/^options\.user: /, '')); // an invalid name never reaches the server
    return;
  }
  client = c;
  c.on('state', (s, err) => onState(c, s, err));
  c.on('message', onMessage);
  c.on('reset', (r) => {
    const conv = r.room.startsWith('@') ? undefined : conversations.get('room:' + r.room);
    const text = `The server could not keep ${r.room} continuous for this page (its history was lost or expired): earlier messages may be missing.`;
    if (conv) addItem(conv, { kind: 'notice', text, warn: true });
    else banner(text, 'warn');
  });
  c.on('left', (l) => {
    const conv = conversations.get('room:' + l.room);
    if (conv) addItem(conv, { kind: 'notice', text: `You are no longer in ${l.room}: ${l.error ? message(l.error) : 'removed by the server'}`, warn: true });
    renderLists();
  });
  $<HTMLButtonElement>('connect').disabled = true;
  try {
    await c.connect();
  } catch (err) {
    // Refused at hello (4003 for a name the server does not accept) or
    // stopped: say why and stay on the login form; nothing retries.
    $<HTMLButtonElement>('connect').disabled = false;
    client = null;
    showLoginError(`The server refused the connection: ${describe(err)}`);
    return;
  } finally {
    $<HTMLButtonElement>('connect').disabled = false;
  }
  me = c.user;
  localStorage.setItem('switchboard-demo-user', me);
  $('whoami').textContent = 'signed in as ' + me;
  $('login-view').hidden = true;
  $('chat-view').hidden = false;
  document.body.classList.add('signed-in');
  for (const room of rooms.length > 0 ? rooms : ['general']) await joinRoom(room, false);
  if (!current && conversations.size > 0) select([...conversations.keys()][0]!);
  presenceTimer = setInterval(() => {
    if (document.visibilityState === 'visible' && current.startsWith('room:')) void refreshPresence(current.slice(5));
  }, presenceEvery);
}

function showLoginError(text: string): void {
  const el = $('login-error');
  el.textContent = text;
  el.hidden = text === '';
}

$('logout').addEventListener('click', () => {
  void signOut();
});

async function signOut(): Promise<void> {
  const c = client;
  client = null;
  clearInterval(presenceTimer);
  if (c) {
    for (const conv of conversations.values()) if (conv.key.startsWith('room:')) announce(c, conv.key.slice(5), 'leave');
    await c.close();
  }
  conversations.clear();
  current = '';
  $('chat-view').hidden = true;
  $('login-view').hidden = false;
  document.body.classList.remove('signed-in', 'menu-open');
  $('instance').textContent = '';
  $('whoami').textContent = '';
  banner('', 'ok');
  setStatus('disconnected', 'disconnected');
}

// A closing tab tells the rooms it leaves; the session ends with the page.
addEventListener('pagehide', () => {
  if (!client) return;
  for (const conv of conversations.values()) if (conv.key.startsWith('room:')) announce(client, conv.key.slice(5), 'leave');
});

// Connection state.

function onState(c: Client, s: State, err: Error | undefined): void {
  if (c !== client) return;
  switch (s) {
    case 'connected': {
      const inst = c.instance;
      if (lastInstance && inst !== lastInstance) {
        reconnects++;
        banner(`Reconnected to instance ${inst} (was ${lastInstance}); every room resumed from the last message received.`, 'ok');
        $('instance').classList.add('changed');
      } else if (lastInstance) {
        reconnects++;
        banner(`Reconnected to instance ${inst}; every room resumed from the last message received.`, 'ok');
      }
      lastInstance = inst;
      setStatus('connected', 'connected');
      $('instance').textContent = inst;
      $('conn-instance').textContent = inst;
      $('conn-session').textContent = c.session;
      $('conn-reconnects').textContent = String(reconnects);
      event(`connected to ${inst}`);
      for (const conv of conversations.values()) if (conv.key.startsWith('room:')) void refreshPresence(conv.key.slice(5));
      return;
    }
    case 'connecting':
      setStatus('connecting', 'connecting…');
      return;
    case 'disconnected': {
      const why = describe(err);
      setStatus('disconnected', 'reconnecting…');
      $('instance').classList.remove('changed');
      banner(`${why}. Reconnecting…`, 'warn');
      event(why);
      return;
    }
    case 'closed': {
      const why = describe(err);
      setStatus('closed', 'closed');
      if (err) banner(`${why}. Not reconnecting: sign out and in again.`, 'bad');
      event(err ? why : 'closed');
    }
  }
}

/** describe says in words why a connection ended. */
function describe(err: unknown): string {
  if (err instanceof CloseError) {
    const reason = err.reason ? `: ${err.reason}` : '';
    switch (err.code) {
      case 1006: return 'Connection lost (1006: the network or the server went away without closing)';
      case 4001: return `The server is restarting (4001${reason}); moving to another instance`;
      case 4003: return `Not authorized (4003${reason})`;
      case 4004: return `Disconnected by the server's API (4004${reason})`;
      case 4008: return `The page fell behind and the server dropped it (4008${reason})`;
      case 4029: return `Rate limited (4029${reason})`;
      case 1000: return `Closed by the server (1000${reason})`;
      case 1001: return `The server stopped hearing from this page (1001${reason})`;
      case 1008: return `Closed by the server: policy violation (1008${reason})`;
      case 1009: return `Closed by the server: a frame was too large (1009${reason})`;
      case 1013: return `The server is busy (1013${reason})`;
      default: return `Closed with code ${err.code}${reason}`;
    }
  }
  if (err instanceof ConnectionError) return err.message.replace(/^switchboard: /, 'Gave up the connection: ');
  return err ? message(err) : 'Disconnected';
}

function message(err: unknown): string {
  if (err instanceof ServerError) return err.message;
  if (err instanceof Error) return err.message.replace(/^switchboard: /, '');
  return String(err);
}

function setStatus(cls: State, text: string): void {
  const el = $('status');
  el.className = cls;
  el.textContent = text;
}

function banner(text: string, kind: 'ok' | 'warn' | 'bad'): void {
  const el = $('banner');
  el.textContent = text;
  el.className = kind;
  el.hidden = text === '';
}

function event(text: string): void {
  $('conn-event').textContent = `${new Date().toLocaleTimeString()} ${text}`;
}

// Rooms and direct messages.

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('newroom');
  const room = input.value.trim();
  if (!room) return;
  input.value = '';
  void joinRoom(room, true);
});

/** joinRoom joins room; it enters the list only once the server said joined. */
async function joinRoom(room: string, open: boolean): Promise<void> {
  const c = client;
  if (!c) return;
  const err = $('join-error');
  err.hidden = true;
  try {
    await c.join(room);
  } catch (e) {
    err.textContent = `Could not join ${room}: ${message(e)}`;
    err.hidden = false;
    return;
  }
  const conv = conversation('room:' + room, '#' + room);
  if (open) select(conv.key);
  renderLists();
  announce(c, room, 'join');
  void refreshPresence(room);
}

async function leaveRoom(room: string): Promise<void> {
  const c = client;
  if (!c) return;
  announce(c, room, 'leave');
  try {
    await c.leave(room);
  } catch (e) {
    banner(`Could not leave ${room}: ${message(e)}`, 'warn');
    return;
  }
  conversations.delete('room:' + room);
  if (current === 'room:' + room) {
    current = '';
    const next = [...conversations.keys()][0];
    if (next) select(next);
    else renderConversation();
  }
  renderLists();
}

$('dm-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('dm-to');
  const user = input.value.trim().replace(/^@/, '');
  const err = $('dm-error');
  err.hidden = true;
  if (!user) return;
  if (!/^[!-z|~]{1,127}$/.test(user)) {
    err.textContent = `${user} is not a valid user id`;
    err.hidden = false;
    return;
  }
  input.value = '';
  select(conversation('dm:' + user, '@' + user).key);
});

/** announce tells a room that this user joined or left it (see the comment at the top). */
function announce(c: Client, room: string, event: 'join' | 'leave'): void {
  c.publish(room, { kind: 'presence', event }).catch(() => undefined);
}

function conversation(key: string, title: string): Conversation {
  let conv = conversations.get(key);
  if (!conv) {
    conv = { key, title, items: [], unread: 0, presence: [] };
    conversations.set(key, conv);
  }
  return conv;
}

function onMessage(m: Message): void {
  if (m.room.startsWith('@')) {
    // The inbox: a direct message to this user, filed under its sender.
    const peer = m.from ?? apiSender;
    addItem(conversation('dm:' + peer, '@' + peer), msgItem(m));
    renderLists();
    return;
  }
  const conv = conversations.get('room:' + m.room);
  if (!conv) return;
  const d = m.data as { kind?: unknown; event?: unknown } | null;
  if (d && typeof d === 'object' && d.kind === 'presence') {
    addItem(conv, { kind: 'notice', text: `${m.from ?? 'someone'} ${d.event === 'leave' ? 'left' : 'joined'}`, warn: false });
    schedulePresence(m.room);
    return;
  }
  if (m.from && !conv.presence.some((p) => p.user === m.from)) schedulePresence(m.room);
  addItem(conv, msgItem(m));
  renderLists();
}

function msgItem(m: Message): Item {
  const item: Item = { kind: 'msg', from: m.from ?? apiSender, text: textOf(m.data), ts: m.ts ?? Date.now(), offset: m.offset, epoch: m.epoch, mine: m.from === me, status: 'sent' };
  return item;
}

function textOf(data: unknown): string {
  if (data && typeof data === 'object' && typeof (data as { text?: unknown }).text === 'string') return (data as { text: string }).text;
  return JSON.stringify(data);
}

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('text');
  const text = input.value.trim();
  const c = client;
  if (!text || !c || !current) return;
  input.value = '';
  const conv = conversations.get(current)!;
  // The sender's own messages are acked, not delivered back: show them now
  // and mark them sent with their position when the ack comes.
  const item: Item & { kind: 'msg' } = { kind: 'msg', from: me, text, ts: Date.now(), mine: true, status: 'pending' };
  addItem(conv, item);
  const sent = current.startsWith('dm:') ? c.send(current.slice(3), { text }) : c.publish(current.slice(5), { text });
  sent.then((ack) => {
    item.status = 'sent';
    item.offset = ack.offset;
    item.epoch = ack.epoch;
  }, (err: unknown) => {
    item.status = 'failed';
    item.error = message(err);
  }).finally(() => {
    if (current === conv.key) renderConversation();
  });
});

// Presence.

function schedulePresence(room: string): void {
  if (presenceSoon.has(room)) return;
  presenceSoon.set(room, setTimeout(() => {
    presenceSoon.delete(room);
    void refreshPresence(room);
  }, 150));
}

async function refreshPresence(room: string): Promise<void> {
  const c = client;
  if (!c || c.state !== 'connected') return;
  try {
    const p = await c.presence(room, { signal: AbortSignal.timeout(10_000) });
    const conv = conversations.get('room:' + room);
    if (!conv) return;
    conv.presence = [...p.users];
    if (current === conv.key) {
      renderPresence(conv);
      renderHead(conv);
    }
  } catch {
    // Disconnected meanwhile: the next connection asks again.
  }
}

// Rendering.

function select(key: string): void {
  current = key;
  const conv = conversations.get(key);
  if (conv) conv.unread = 0;
  document.body.classList.remove('menu-open');
  $('menu').setAttribute('aria-expanded', 'false');
  renderLists();
  renderConversation();
  if (key.startsWith('room:')) void refreshPresence(key.slice(5));
  $('text').focus({ preventScroll: true });
}

$('menu').addEventListener('click', () => {
  const open = document.body.classList.toggle('menu-open');
  $('menu').setAttribute('aria-expanded', String(open));
});

function addItem(conv: Conversation, item: Item): void {
  conv.items.push(item);
  if (conv.key === current) appendItem(item);
  else if (item.kind === 'msg') conv.unread++;
}

function renderLists(): void {
  for (const [id, prefix] of [['rooms', 'room:'], ['dms', 'dm:']] as const) {
    const ul = $(id);
    ul.textContent = '';
    for (const conv of conversations.values()) {
      if (!conv.key.startsWith(prefix)) continue;
      const name = conv.key.slice(prefix.length);
      const li = document.createElement('li');
      if (prefix === 'room:') li.dataset.room = name;
      else li.dataset.peer = name;
      if (conv.key === current) li.className = 'active';
      const label = document.createElement('span');
      label.className = 'name';
      label.textContent = conv.title;
      li.append(label);
      if (conv.unread > 0) {
        const b = document.createElement('span');
        b.className = 'badge';
        b.textContent = String(conv.unread);
        li.append(b);
      }
      if (prefix === 'room:') {
        const x = document.createElement('button');
        x.className = 'leave';
        x.type = 'button';
        x.title = `leave ${name}`;
        x.textContent = '×';
        x.addEventListener('click', (ev) => {
          ev.stopPropagation();
          void leaveRoom(name);
        });
        li.append(x);
      }
      li.addEventListener('click', () => select(conv.key));
      ul.append(li);
    }
  }
}

function renderConversation(): void {
  const box = $('messages');
  box.textContent = '';
  const conv = conversations.get(current);
  if (!conv) {
    $('title').textContent = '';
    $('subtitle').textContent = '';
    $('presence').textContent = '';
    return;
  }
  for (const item of conv.items) appendItem(item);
  renderHead(conv);
  renderPresence(conv);
  $<HTMLInputElement>('text').placeholder = `message ${conv.title}`;
}

function renderHead(conv: Conversation): void {
  $('title').textContent = conv.title;
  $('subtitle').textContent = conv.key.startsWith('room:')
    ? `· ${conv.presence.length} online`
    : '· direct messages';
}

function renderPresence(conv: Conversation): void {
  const ul = $('presence');
  ul.textContent = '';
  for (const p of conv.presence) {
    const li = document.createElement('li');
    li.dataset.user = p.user;
    li.textContent = p.user + (p.user === me ? ' (you)' : '') + (p.sessions > 1 ? ` · ${p.sessions} tabs` : '');
    ul.append(li);
  }
}

function appendItem(item: Item): void {
  const box = $('messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const el = document.createElement('div');
  if (item.kind === 'notice') {
    el.className = 'notice' + (item.warn ? ' warn' : '');
    el.textContent = item.text;
  } else {
    el.className = 'msg' + (item.mine ? ' mine' : '') + (item.status !== 'sent' ? ' ' + item.status : '');
    if (item.offset !== undefined) el.dataset.offset = String(item.offset);
    el.dataset.from = item.from;
    const meta = document.createElement('div');
    meta.className = 'meta';
    const when = new Date(item.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const state = item.status === 'pending' ? ' · sending…' : item.status === 'failed' ? ` · not sent: ${item.error ?? ''}` : '';
    meta.textContent = `${item.from} · ${when}${item.offset !== undefined ? ' · #' + item.offset : ''}${state}`;
    const text = document.createElement('div');
    text.className = 'text';
    text.textContent = item.text;
    el.append(meta, text);
  }
  box.append(el);
  if (atBottom || item.kind === 'msg' && item.mine) box.scrollTop = box.scrollHeight;
}

// A TEST DOUBLE of a Matrix homeserver: the Client-Server API endpoints that the matrix module
// (matrix-js-sdk in Node) and the remote party (matrix-js-sdk in Chromium) use, written from
// the Matrix Client-Server API specification (v1.10), on loopback only. No federation, no
// E2EE, no media repository; rooms and users are made by the test through /_double/.
//
//   GET  /_matrix/client/versions
//   GET  /_matrix/client/v3/account/whoami                       (Bearer token or ?access_token)
//   POST /_matrix/client/v3/join/{roomIdOrAlias}, /rooms/{roomId}/join
//   GET  /_matrix/client/v3/sync?since&timeout&filter            long-poll, stream tokens "s<N>"
//   PUT  /_matrix/client/v3/rooms/{roomId}/send/{type}/{txnId}   idempotent per (token, txnId)
//   POST/GET /_matrix/client/v3/user/{userId}/filter[/{id}]
//   GET  /_matrix/client/v3/pushrules/, /capabilities, /voip/turnServer, /profile/{userId},
//        /rooms/{roomId}/members, /rooms/{roomId}/joined_members; PUT /presence/{userId}/status
//   anything else: 404 M_UNRECOGNIZED (what the spec asks for unknown endpoints)
// Errors are the spec's JSON {errcode, error}: 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN,
// 403 M_FORBIDDEN, 404 M_NOT_FOUND, 429 M_LIMIT_EXCEEDED with retry_after_ms and Retry-After.
// CORS headers on every answer, OPTIONS answered (spec: "Web Browser Clients").
//
// Test control (JSON over HTTP on the same loopback port, never part of Matrix):
//   POST /_double/users   {user_id, token}                 add a user with an access token
//   POST /_double/rooms   {room_id, alias?, invite: [user_id...]}   a room the invited may join
//   POST /_double/revoke  {token} / /_double/restore {token}          401 M_UNKNOWN_TOKEN on/off
//   POST /_double/kick    {room_id, user_id}                  the room's admin removes the user
//   POST /_double/fault   {path, status, count, retry_after_ms?}      the next `count` requests
//                          whose path contains `path` get `status` (429 or 5xx)
//   GET  /_double/events?room_id=&type=                 events sent so far (what the module sent)
//   POST /_double/send    {user_id, room_id, type, content}  send as a user (a scripted party)
//
// CLI: node matrix-homeserver.js --port N [--host ADDR] [--ready-fd 3]: prints "listening <port>" on stdout
// (ADDR: 127.0.0.1 unless given).

import http from 'node:http';
import { randomBytes } from 'node:crypto';

const SPEC_VERSIONS = ['v1.1', 'v1.2', 'v1.3', 'v1.4', 'v1.5', 'v1.6', 'v1.7', 'v1.8', 'v1.9', 'v1.10'];

class MatrixHttpError extends Error {
  constructor(status, errcode, error, extra = {}) {
    super(error);
    this.status = status;
    this.body = { errcode, error, ...extra };
  }
}

export class MatrixHomeserverDouble {
  constructor({ serverName = 'double.test' } = {}) {
    this.serverName = serverName;
    this.users = new Map(); // user_id -> {token}
    this.tokens = new Map(); // token -> user_id
    this.revoked = new Set();
    this.rooms = new Map(); // room_id -> {alias, invite:Set, members: Map(user->membership), state: Map(key->event)}
    this.aliases = new Map();
    this.events = []; // the room event stream, in order
    this.pos = 0;
    this.txns = new Map(); // token + txnId -> event_id
    this.filters = new Map();
    this.faults = [];
    this.waiters = new Set();
    this.requests = []; // [method, path] log for tests
    this.server = null;
    this.port = 0;
    this.sockets = new Set();
  }

  // ---- test control ----

  addUser(userId, token) {
    this.users.set(userId, { token });
    this.tokens.set(token, userId);
  }

  addRoom(roomId, { alias = null, invite = [], creator = '@admin:' + this.serverName } = {}) {
    const room = { alias, invite: new Set(invite), members: new Map(), state: new Map() };
    this.rooms.set(roomId, room);
    if (alias)
      this.aliases.set(alias, roomId);
    this.appendEvent(roomId, creator, 'm.room.create', { creator, room_version: '10' }, '');
    this.appendEvent(roomId, creator, 'm.room.member', { membership: 'join' }, creator);
    room.members.set(creator, 'join');
    for (const u of invite)
      this.appendEvent(roomId, creator, 'm.room.member', { membership: 'invite' }, u);
  }

  /** The room's admin removes a user (m.room.member leave); they stay invited, so may join again. */
  kick(roomId, userId) {
    const admin = [...this.rooms.get(roomId).members.entries()].find(([u, m]) => m === 'join' && u !== userId)?.[0];
    this.appendEvent(roomId, admin || userId, 'm.room.member', { membership: 'leave', reason: 'kicked' }, userId);
  }

  fault(path, status, count = 1, retryAfterMs = null) {
    this.faults.push({ path, status, count, retryAfterMs });
  }

  // ---- the event stream ----

  appendEvent(roomId, sender, type, content, stateKey = undefined, txn = null) {
    const ev = { room_id: roomId, event_id: `$${++this.pos}-${randomBytes(6).toString('hex')}`, type, sender,
      content, origin_server_ts: Date.now(), pos: this.pos };
    if (stateKey !== undefined) {
      ev.state_key = stateKey;
      this.rooms.get(roomId).state.set(`${type}\u0000${stateKey}`, ev);
      if (type === 'm.room.member')
        this.rooms.get(roomId).members.set(stateKey, content.membership);
    }
    if (txn)
      ev.txn = txn; // {token, txnId}: unsigned.transaction_id for the sender's own syncs
    this.events.push(ev);
    for (const w of this.waiters)
      w();
    return ev;
  }

  clientEvent(ev, token) {
    const out = { event_id: ev.event_id, type: ev.type, sender: ev.sender, content: ev.content,
      origin_server_ts: ev.origin_server_ts, room_id: ev.room_id,
      unsigned: { age: Math.max(0, Date.now() - ev.origin_server_ts) } };
    if (ev.state_key !== undefined)
      out.state_key = ev.state_key;
    if (ev.txn && ev.txn.token === token)
      out.unsigned.transaction_id = ev.txn.txnId;
    return out;
  }

  membership(roomId, userId) {
    return this.rooms.get(roomId)?.members.get(userId) || 'leave';
  }

  // ---- HTTP ----

  async start(port = 0, host = '127.0.0.1') {
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, resolve);
    });
    this.port = this.server.address().port;
    return this.port;
  }

  /** Go away: close the listener and every connection (a homeserver that is down). */
  async stop() {
    if (!this.server)
      return;
    const s = this.server;
    this.server = null;
    for (const w of this.waiters)
      w();
    for (const sock of this.sockets)
      sock.destroy();
    await new Promise((resolve) => s.close(resolve));
  }

  get url() { return `http://127.0.0.1:${this.port}`; }

  send(res, status, body, headers = {}) {
    const data = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data),
      'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Methods': 'GET, POST, PUT, DELETE, OPTIONS',
      'Access-Control-Allow-Headers': 'X-Requested-With, Content-Type, Authorization', ...headers });
    res.end(data);
  }

  async body(req) {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
      size += c.length;
      if (size > 1024 * 1024)
        throw new MatrixHttpError(413, 'M_TOO_LARGE', 'request too large');
      chunks.push(c);
    }
    if (!size)
      return {};
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new MatrixHttpError(400, 'M_NOT_JSON', 'body is not JSON');
    }
  }

  auth(req, url) {
    const h = req.headers.authorization || '';
    const token = h.startsWith('Bearer ') ? h.slice(7) : url.searchParams.get('access_token');
    if (!token)
      throw new MatrixHttpError(401, 'M_MISSING_TOKEN', 'Missing access token');
    const user = this.tokens.get(token);
    if (!user || this.revoked.has(token))
      throw new MatrixHttpError(401, 'M_UNKNOWN_TOKEN', 'Unrecognised access token', { soft_logout: false });
    return { user, token };
  }

  async handle(req, res) {
    const url = new URL(req.url, 'http://double');
    const p = url.pathname;
    this.requests.push([req.method, p]);
    try {
      if (req.method === 'OPTIONS')
        return this.send(res, 200, {});
      if (p.startsWith('/_double/'))
        return this.send(res, 200, await this.control(req, url));
      const decoded = decodeURIComponent(p);
      const f = this.faults.find((x) => x.count > 0 && decoded.includes(x.path));
      if (f) {
        f.count--;
        if (f.status === 429) {
          const ms = f.retryAfterMs ?? 1000;
          return this.send(res, 429, { errcode: 'M_LIMIT_EXCEEDED', error: 'Too many requests', retry_after_ms: ms },
            { 'Retry-After': String(Math.ceil(ms / 1000)) });
        }
        return this.send(res, f.status, { errcode: 'M_UNKNOWN', error: `injected ${f.status}` });
      }
      const [status, body] = await this.route(req, url, p);
      return this.send(res, status, body);
    } catch (e) {
      if (e instanceof MatrixHttpError)
        return this.send(res, e.status, e.body);
      return this.send(res, 500, { errcode: 'M_UNKNOWN', error: String(e.message) });
    }
  }

  async control(req, url) {
    const p = url.pathname;
    if (req.method === 'GET' && p === '/_double/events')
      return { events: this.events.filter((e) => (!url.searchParams.get('room_id') || e.room_id === url.searchParams.get('room_id')) &&
        (!url.searchParams.get('type') || e.type === url.searchParams.get('type'))).map((e) => this.clientEvent(e, null)) };
    if (req.method === 'GET' && p === '/_double/requests')
      return { requests: this.requests };
    const b = await this.body(req);
    switch (p) {
    case '/_double/users': this.addUser(b.user_id, b.token); return {};
    case '/_double/rooms': this.addRoom(b.room_id, { alias: b.alias, invite: b.invite || [] }); return {};
    case '/_double/revoke':
      // Like a real server, the token stops working at once: pending long-polls end now, and
      // the client's next request gets 401.
      this.revoked.add(b.token);
      for (const w of [...this.waiters])
        w(true);
      return {};
    case '/_double/restore': this.revoked.delete(b.token); return {};
    case '/_double/fault': this.fault(b.path, b.status, b.count ?? 1, b.retry_after_ms ?? null); return {};
    case '/_double/kick': this.kick(b.room_id, b.user_id); return {};
    case '/_double/send': {
      if (!this.rooms.has(b.room_id))
        throw new MatrixHttpError(404, 'M_NOT_FOUND', 'no such room');
      return { event_id: this.appendEvent(b.room_id, b.user_id, b.type, b.content).event_id };
    }
    default: throw new MatrixHttpError(404, 'M_UNRECOGNIZED', 'unknown control endpoint');
    }
  }

  resolveRoom(idOrAlias) {
    const id = idOrAlias.startsWith('#') ? this.aliases.get(idOrAlias) : idOrAlias;
    if (!id || !this.rooms.has(id))
      throw new MatrixHttpError(404, 'M_NOT_FOUND', `Room ${idOrAlias} not found`);
    return id;
  }

  requireJoined(roomId, user) {
    if (!this.rooms.has(roomId))
      throw new MatrixHttpError(404, 'M_NOT_FOUND', 'Unknown room');
    if (this.membership(roomId, user) !== 'join')
      throw new MatrixHttpError(403, 'M_FORBIDDEN', `User ${user} not in room ${roomId}`);
  }

  async route(req, url, p) {
    const m = req.method;
    if (m === 'GET' && p === '/_matrix/client/versions')
      return [200, { versions: SPEC_VERSIONS, unstable_features: {} }];
    if (!p.startsWith('/_matrix/client/'))
      throw new MatrixHttpError(404, 'M_UNRECOGNIZED', 'Unrecognized request');
    const rest = p.replace(/^\/_matrix\/client\/(v3|r0)/, '');
    const seg = rest.split('/').slice(1).map(decodeURIComponent);
    const { user, token } = this.auth(req, url);

    if (m === 'GET' && rest === '/account/whoami')
      return [200, { user_id: user, device_id: `DEV${token.slice(0, 6).toUpperCase()}`, is_guest: false }];
    if (m === 'GET' && rest === '/capabilities')
      return [200, { capabilities: { 'm.change_password': { enabled: false } } }];
    if (m === 'GET' && rest.startsWith('/pushrules'))
      return [200, { global: { override: [], content: [], room: [], sender: [], underride: [] } }];
    if (m === 'GET' && rest === '/voip/turnServer')
      return [200, {}]; // no TURN server configured (what Synapse answers then)
    if (seg[0] === 'presence')
      return [200, {}];
    if (m === 'GET' && seg[0] === 'profile')
      return [200, { displayname: seg[1] }];
    if (seg[0] === 'user' && seg[2] === 'filter') {
      if (seg[1] !== user)
        throw new MatrixHttpError(403, 'M_FORBIDDEN', 'Cannot use filters of another user');
      if (m === 'POST') {
        const id = String(this.filters.size + 1);
        this.filters.set(id, await this.body(req));
        return [200, { filter_id: id }];
      }
      if (m === 'GET' && this.filters.has(seg[3]))
        return [200, this.filters.get(seg[3])];
      throw new MatrixHttpError(404, 'M_NOT_FOUND', 'No such filter');
    }
    if (m === 'POST' && (seg[0] === 'join' || (seg[0] === 'rooms' && seg[2] === 'join'))) {
      await this.body(req);
      const roomId = this.resolveRoom(seg[1]);
      const room = this.rooms.get(roomId);
      const now = this.membership(roomId, user);
      if (now !== 'join') {
        if (!room.invite.has(user) && now !== 'invite')
          throw new MatrixHttpError(403, 'M_FORBIDDEN', `You are not invited to this room.`);
        this.appendEvent(roomId, user, 'm.room.member', { membership: 'join' }, user);
      }
      return [200, { room_id: roomId }];
    }
    if (m === 'PUT' && seg[0] === 'rooms' && seg[2] === 'send' && seg.length === 5) {
      const [, roomId, , type, txnId] = seg;
      const content = await this.body(req);
      this.requireJoined(roomId, user);
      const key = `${token}\u0000${txnId}`;
      if (!this.txns.has(key))
        this.txns.set(key, this.appendEvent(roomId, user, type, content, undefined, { token, txnId }).event_id);
      return [200, { event_id: this.txns.get(key) }];
    }
    if (m === 'GET' && seg[0] === 'rooms' && (seg[2] === 'members' || seg[2] === 'joined_members')) {
      this.requireJoined(seg[1], user);
      const room = this.rooms.get(seg[1]);
      const members = [...room.state.values()].filter((e) => e.type === 'm.room.member');
      if (seg[2] === 'joined_members')
        return [200, { joined: Object.fromEntries(members.filter((e) => e.content.membership === 'join').map((e) => [e.state_key, {}])) }];
      return [200, { chunk: members.map((e) => this.clientEvent(e, token)) }];
    }
    if (m === 'GET' && rest === '/sync')
      return [200, await this.sync(user, token, url)];
    throw new MatrixHttpError(404, 'M_UNRECOGNIZED', 'Unrecognized request');
  }

  timelineLimit(url) {
    const f = url.searchParams.get('filter');
    let filter = null;
    if (f && f.startsWith('{')) {
      try { filter = JSON.parse(f); } catch { filter = null; }
    } else if (f) {
      filter = this.filters.get(f) || null;
    }
    return Math.max(1, Math.min(100, filter?.room?.timeline?.limit ?? 20));
  }

  async sync(user, token, url) {
    const since = url.searchParams.get('since');
    const from = since && /^s[0-9]+$/.test(since) ? Number(since.slice(1)) : null;
    const timeout = Math.min(Number(url.searchParams.get('timeout') || 0), 30000);
    const visible = (e) => this.membership(e.room_id, user) === 'join' ||
      (e.type === 'm.room.member' && e.state_key === user);
    if (from !== null && timeout > 0 && !this.events.some((e) => e.pos > from && visible(e))) {
      await new Promise((resolve) => {
        const done = () => { clearTimeout(t); this.waiters.delete(w); resolve(); };
        const w = (force = false) => { if (force || !this.server || this.events.some((e) => e.pos > from && visible(e))) done(); };
        const t = setTimeout(done, timeout);
        this.waiters.add(w);
      });
      if (!this.server)
        throw new MatrixHttpError(503, 'M_UNKNOWN', 'shutting down');
    }
    const limit = this.timelineLimit(url);
    const rooms = { join: {}, invite: {}, leave: {} };
    for (const [roomId, room] of this.rooms) {
      const ms = room.members.get(user);
      if (ms === 'invite' && from === null) {
        rooms.invite[roomId] = { invite_state: { events: [...room.state.values()].map((e) => ({ type: e.type,
          state_key: e.state_key, sender: e.sender, content: e.content })) } };
        continue;
      }
      if (ms !== 'join') {
        // Left or kicked since `since`: the room's events up to the leave, under rooms.leave.
        const left = from === null ? [] : this.events.filter((e) => e.room_id === roomId && e.pos > from);
        const at = left.findIndex((e) => e.type === 'm.room.member' && e.state_key === user &&
          (e.content.membership === 'leave' || e.content.membership === 'ban'));
        if (at >= 0)
          rooms.leave[roomId] = { state: { events: [] }, account_data: { events: [] },
            timeline: { events: left.slice(0, at + 1).map((e) => this.clientEvent(e, token)), limited: false } };
        continue;
      }
      const newer = this.events.filter((e) => e.room_id === roomId && (from === null || e.pos > from));
      // A room joined since `since` (or an initial sync) gets its whole state.
      const joinedNow = from === null || newer.some((e) => e.type === 'm.room.member' && e.state_key === user);
      const timeline = from === null ? newer.slice(-limit) : newer;
      if (!joinedNow && timeline.length === 0)
        continue;
      const inTimeline = new Set(timeline.map((e) => e.event_id));
      const state = joinedNow ? [...room.state.values()].filter((e) => !inTimeline.has(e.event_id)) : [];
      rooms.join[roomId] = {
        state: { events: state.map((e) => this.clientEvent(e, token)) },
        timeline: { events: timeline.map((e) => this.clientEvent(e, token)), limited: from === null && newer.length > limit,
          prev_batch: `s${Math.max(0, (timeline[0]?.pos ?? this.pos) - 1)}` },
        ephemeral: { events: [] }, account_data: { events: [] },
        unread_notifications: { highlight_count: 0, notification_count: 0 },
        summary: {},
      };
    }
    return { next_batch: `s${this.pos}`, rooms, presence: { events: [] }, account_data: { events: [] },
      to_device: { events: [] }, device_lists: { changed: [], left: [] }, device_one_time_keys_count: {} };
  }
}

// ---- CLI ----

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? process.argv[i + 1] : dflt;
  };
  const hs = new MatrixHomeserverDouble({ serverName: arg('--server-name', 'double.test') });
  hs.start(Number(arg('--port', '0')), arg('--host', '127.0.0.1')).then((port) => {
    process.stdout.write(`listening ${port}\n`);
  }, (e) => {
    process.stderr.write(`matrix-homeserver double: ${e.message}\n`);
    process.exit(1);
  });
  for (const sig of ['SIGTERM', 'SIGINT'])
    process.on(sig, () => hs.stop().then(() => process.exit(0)));
}

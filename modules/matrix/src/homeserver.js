// The matrix module's connection to its homeserver, on matrix-js-sdk.
//
// It checks the access token (whoami), joins the configured rooms, syncs, hands m.call.*
// events of those rooms to its owner and sends events for it. Every failure becomes a status
// with a reason ("status" and "room" events) and is retried with back-off; nothing here
// throws out of the event loop, so a homeserver problem never crashes the module:
//   unreachable      retried 1 s, 2 s, 4 s ... 60 s (during sync: matrix-js-sdk's keep-alive)
//   401 (token)      retried 5 s, 10 s ... 5 min; a new configuration retries at once
//   429 (rate limit) retried after the server's retry-after (header or retry_after_ms)
//   room not joined  per room, retried 5 s ... 5 min

import { EventEmitter } from 'node:events';

import * as sdk from 'matrix-js-sdk';
import { logger as sdkLogger } from 'matrix-js-sdk/lib/logger.js';

/** Exponential back-off: next() gives base, 2 base, 4 base ... max. */
export class Backoff {
  constructor(baseMs, maxMs) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
    this.attempt = 0;
  }

  next() {
    const ms = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return ms;
  }

  reset() { this.attempt = 0; }
}

/** What went wrong, for users: {kind: 'unreachable'|'token'|'ratelimit'|'forbidden'|'other', reason, retryAfterMs}. */
export function classifyError(e) {
  const status = e?.httpStatus;
  const code = e?.errcode;
  if (status === 401 || code === 'M_UNKNOWN_TOKEN' || code === 'M_MISSING_TOKEN')
    return { kind: 'token', reason: `access token refused by the homeserver (${status || 401} ${code || 'M_UNKNOWN_TOKEN'})` };
  if (status === 429 || code === 'M_LIMIT_EXCEEDED') {
    let after = null;
    try {
      after = typeof e.getRetryAfterMs === 'function' ? e.getRetryAfterMs() : null;
    } catch {
      after = null;
    }
    return { kind: 'ratelimit', reason: `rate limited by the homeserver (429 ${code || 'M_LIMIT_EXCEEDED'})`, retryAfterMs: after };
  }
  if (status === 403 || code === 'M_FORBIDDEN')
    return { kind: 'forbidden', reason: `forbidden (${status || 403} ${code || 'M_FORBIDDEN'}): ${e.data?.error || e.message}` };
  if (status === 404 || code === 'M_NOT_FOUND')
    return { kind: 'forbidden', reason: `not found (${status || 404} ${code || 'M_NOT_FOUND'}): ${e.data?.error || e.message}` };
  if (status && status >= 400)
    return { kind: 'other', reason: `homeserver error ${status}${code ? ` ${code}` : ''}: ${e.data?.error || e.message}` };
  // fetch failures: ConnectionError, TypeError('fetch failed') with a cause (ECONNREFUSED ...)
  const cause = e?.cause?.code || e?.cause?.cause?.code || e?.cause?.message || e?.message || String(e);
  return { kind: 'unreachable', reason: `homeserver unreachable (${cause})` };
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

/**
 * Events:
 *   'status' {ok, reason, retryInMs}        the link as a whole (whoami, sync)
 *   'room'   name, {joined, roomId, reason}  one configured room
 *   'call'   roomId, {type, content, sender, ageMs}   an m.call.* event from the room's timeline
 */
export class HomeserverLink extends EventEmitter {
  constructor(config, { log, createClient = sdk.createClient, backoff = {} } = {}) {
    super();
    this.config = config;
    this.log = log;
    this.createClientFn = createClient;
    this.backoff = {
      unreachable: new Backoff(backoff.unreachableMs ?? 1000, 60000),
      token: new Backoff(backoff.tokenMs ?? 5000, 300000),
      room: backoff.roomMs ?? 5000,
    };
    this.client = null;
    this.abort = new AbortController();
    this.rooms = new Map(); // name -> {room, roomId, joined, reason, backoff, timer}
    this.ok = false;
    this.reason = 'connecting';
    this.stopped = false;
    this.generation = 0;
    routeSdkLogging(log);
  }

  setStatus(ok, reason, retryInMs = null) {
    if (ok === this.ok && reason === this.reason)
      return;
    this.ok = ok;
    this.reason = reason;
    this.emit('status', { ok, reason, retryInMs });
  }

  setRoom(name, patch) {
    const r = this.rooms.get(name);
    Object.assign(r, patch);
    this.emit('room', name, { joined: r.joined, roomId: r.roomId, reason: r.reason });
  }

  roomIdOf(name) {
    const r = this.rooms.get(name);
    return r && r.joined ? r.roomId : null;
  }

  roomNameOf(roomId) {
    for (const [name, r] of this.rooms)
      if (r.joined && r.roomId === roomId)
        return name;
    return null;
  }

  get userId() { return this.config.user_id; }

  start() {
    for (const r of this.config.rooms)
      this.rooms.set(r.name, { room: r.room, roomId: r.room.startsWith('!') ? r.room : null, joined: false,
        reason: 'not joined yet', backoff: new Backoff(this.backoff.room, 300000), timer: null });
    this.connect();
  }

  /** (Re)connect from scratch: whoami, joins, sync. One attempt chain per generation. */
  async connect() {
    const gen = ++this.generation;
    const live = () => !this.stopped && gen === this.generation;
    this.teardownClient();
    for (;;) {
      if (!live())
        return;
      this.client = this.createClientFn({
        baseUrl: this.config.homeserver, userId: this.config.user_id, accessToken: this.config.access_token,
        timelineSupport: false, useAuthorizationHeader: true, localTimeoutMs: 30000,
        logger: quietLogger(this.log),
      });
      try {
        const who = await this.client.whoami();
        if (who.user_id !== this.config.user_id)
          throw Object.assign(new Error(`the access token belongs to ${who.user_id}, not ${this.config.user_id}`),
            { httpStatus: 401, errcode: 'M_UNKNOWN_TOKEN' });
        break;
      } catch (e) {
        if (!live())
          return;
        const c = classifyError(e);
        const wait = c.kind === 'ratelimit' ? (c.retryAfterMs ?? this.backoff.unreachable.next())
          : c.kind === 'token' ? this.backoff.token.next() : this.backoff.unreachable.next();
        this.log.warn(`${c.reason}; retrying in ${(wait / 1000).toFixed(1)} s`);
        this.setStatus(false, `${c.reason}; retrying in ${Math.ceil(wait / 1000)} s`, wait);
        this.teardownClient();
        await sleep(wait, this.abort.signal);
      }
    }
    this.backoff.token.reset();
    this.backoff.unreachable.reset();
    this.wireClient(gen);
    for (const name of this.rooms.keys())
      this.joinRoom(name, gen);
    await this.client.startClient({ initialSyncLimit: 1, lazyLoadMembers: true });
  }

  wireClient(gen) {
    const client = this.client;
    client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (gen !== this.generation)
        return;
      if (state === 'PREPARED' || state === 'SYNCING' || state === 'CATCHUP') {
        this.backoff.unreachable.reset();
        this.setStatus(true, 'connected');
      } else if (state === 'ERROR' || state === 'RECONNECTING') {
        const c = data?.error ? classifyError(data.error) : { kind: 'unreachable', reason: 'homeserver unreachable' };
        if (c.kind !== 'token')
          this.setStatus(false, `${c.reason}; matrix-js-sdk is reconnecting`);
      }
    });
    client.on(sdk.HttpApiEvent.SessionLoggedOut, (err) => {
      if (gen !== this.generation)
        return;
      // The token was revoked while we were running: start over, slowly.
      const c = classifyError(err);
      const wait = this.backoff.token.next();
      this.log.warn(`${c.reason}; retrying in ${(wait / 1000).toFixed(1)} s`);
      this.setStatus(false, `${c.reason}; retrying in ${Math.ceil(wait / 1000)} s`, wait);
      for (const name of this.rooms.keys())
        this.setRoom(name, { joined: false, reason: 'the homeserver refused our access token' });
      this.teardownClient();
      sleep(wait, this.abort.signal).then(() => {
        if (gen === this.generation && !this.stopped)
          this.connect();
      });
    });
    client.on(sdk.RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
      if (gen !== this.generation || toStartOfTimeline || !room)
        return;
      const type = event.getType();
      if (type === 'm.room.member' && event.getStateKey() === this.config.user_id) {
        const name = this.roomNameOf(room.roomId);
        const membership = event.getContent()?.membership;
        if (name && membership !== 'join') {
          this.log.warn(`left room ${name} (${membership}); joining again`);
          this.setRoom(name, { joined: false, reason: `membership is now '${membership}'` });
          this.scheduleJoin(name, gen);
        }
        return;
      }
      if (!type.startsWith('m.call.'))
        return;
      this.emit('call', room.roomId, { type, content: event.getContent(), sender: event.getSender(),
        ageMs: event.getLocalAge() });
    });
  }

  async joinRoom(name, gen) {
    const r = this.rooms.get(name);
    if (!r || gen !== this.generation || this.stopped)
      return;
    try {
      const room = await this.client.joinRoom(r.room);
      if (gen !== this.generation)
        return;
      r.backoff.reset();
      this.setRoom(name, { joined: true, roomId: room.roomId, reason: '' });
      this.log.info(`joined room ${name} (${room.roomId})`);
    } catch (e) {
      if (gen !== this.generation || this.stopped)
        return;
      const c = classifyError(e);
      this.setRoom(name, { joined: false, reason: `cannot join ${r.room}: ${c.reason}` });
      this.scheduleJoin(name, gen, c.kind === 'ratelimit' ? c.retryAfterMs : null);
    }
  }

  scheduleJoin(name, gen, afterMs = null) {
    const r = this.rooms.get(name);
    clearTimeout(r.timer);
    const wait = afterMs ?? r.backoff.next();
    this.log.warn(`room ${name}: ${r.reason}; retrying in ${(wait / 1000).toFixed(1)} s`);
    r.timer = setTimeout(() => this.joinRoom(name, gen), wait);
  }

  /**
   * Send an event to a room; 429 answers are waited out (the server's retry-after) and the
   * send repeated with the same transaction id, until deadlineMs has passed. Throws
   * {reason} on failure.
   */
  async send(roomId, type, content, { deadlineMs = 10000 } = {}) {
    const end = Date.now() + deadlineMs;
    const txnId = `ca${Date.now()}.${Math.random().toString(36).slice(2)}`;
    for (;;) {
      if (!this.client)
        throw new Error('not connected to the homeserver');
      try {
        // The SDK's HTTP API, without its local-echo machinery (a retry reuses the txn id).
        return await this.client.http.authedRequest(sdk.Method.Put,
          `/rooms/${encodeURIComponent(roomId)}/send/${encodeURIComponent(type)}/${encodeURIComponent(txnId)}`,
          undefined, content);
      } catch (e) {
        const c = classifyError(e);
        const wait = c.kind === 'ratelimit' ? (c.retryAfterMs ?? 1000) : null;
        if (wait === null || Date.now() + wait > end)
          throw Object.assign(new Error(`cannot send ${type}: ${c.reason}`), { kind: c.kind });
        this.log.info(`${type}: ${c.reason}; sending again in ${(wait / 1000).toFixed(1)} s`);
        await sleep(wait, this.abort.signal);
        if (this.stopped)
          throw new Error(`cannot send ${type}: the module is stopping`);
      }
    }
  }

  teardownClient() {
    if (this.client) {
      this.client.removeAllListeners();
      this.client.stopClient();
      this.client = null;
    }
  }

  stop() {
    this.stopped = true;
    this.abort.abort();
    for (const r of this.rooms.values())
      clearTimeout(r.timer);
    this.teardownClient();
  }
}

/** matrix-js-sdk's own logging (loglevel, to the console by default) goes to our debug level:
 *  its lines are for developers, and our own lines say what matters to users. */
export function routeSdkLogging(log) {
  sdkLogger.methodFactory = (level) => (...args) => log.debug(`matrix-js-sdk ${level}:`,
    ...args.map((a) => (typeof a === 'string' ? a : a?.message ?? String(a))));
  sdkLogger.rebuild();
}

function quietLogger(log) {
  const fwd = (level) => (...args) => log.debug(`matrix-js-sdk ${level}:`, ...args.map((a) => (typeof a === 'string' ? a : a?.message ?? JSON.stringify(a))));
  const logger = { trace: fwd('trace'), debug: fwd('debug'), info: fwd('info'), warn: fwd('warn'), error: fwd('error'),
    getChild: () => logger };
  return logger;
}
